"""Ray tracing of the embedded synthetic scenes: first hits of rays, and whole supersampled views.

Per view the tracer shoots a SUPERSAMPLE x SUPERSAMPLE grid of rays per pixel (sub-pixel centres
at `(k + 0.5) / SUPERSAMPLE`): alpha is the covered fraction and the colour the coverage-weighted
mean (straight alpha). Ground-truth z-depth and world-space normals come from the middle
sub-sample, which is the pixel centre. Each primitive is intersected only with the rays inside
the image rectangle that bounds its bounding sphere.
"""

from __future__ import annotations

import math

import numpy as np

from nerfpipe.data.synthetic_primitives import Array, unit
from nerfpipe.data.synthetic_scenes import Scene
from nerfpipe.data.synthetic_shading import shade

SUPERSAMPLE = 3  # odd, so the middle sub-sample is the pixel centre


def _tangent_range(a: float, z: float, r: float) -> tuple[float, float] | None:
    """Range of a/z over the disk of radius r centred at (a, z) in a plane through the eye.

    z is the depth in front of the camera. Returns None when the disk lies behind the camera and
    (-inf, inf) when it reaches the camera plane. Used to bound a sphere's footprint in the image:
    a ball projects orthogonally onto the camera's xz- (or yz-) plane as such a disk.
    """
    dist = math.hypot(a, z)
    if dist <= r:
        return -math.inf, math.inf
    theta, delta = math.atan2(a, z), math.asin(r / dist)
    lo, hi = theta - delta, theta + delta
    if hi <= -0.5 * math.pi or lo >= 0.5 * math.pi:
        return None
    if lo <= -0.5 * math.pi or hi >= 0.5 * math.pi:
        return -math.inf, math.inf
    return math.tan(lo), math.tan(hi)


def _shade_hits(scene: Scene, origin: Array, t: Array, owner: Array, viewdirs: Array) -> tuple[Array, Array]:
    """Normals and colours of the hits: t, owner (primitive index, -1 = miss) [M]; viewdirs [M, 3]."""
    normals = np.zeros((len(owner), 3))
    rgb = np.zeros((len(owner), 3))
    hit_idx = np.flatnonzero(owner >= 0)
    order = hit_idx[np.argsort(owner[hit_idx], kind="stable")]
    counts = np.bincount(owner[hit_idx], minlength=len(scene.primitives))
    for k, idx in enumerate(np.split(order, np.cumsum(counts)[:-1])):
        if idx.size == 0:
            continue
        prim = scene.primitives[k]
        pts = origin + t[idx, None] * viewdirs[idx]
        n = unit(prim.normal(pts))
        normals[idx] = n
        rgb[idx] = shade(scene, prim, pts, n, viewdirs[idx])
    return normals, rgb


def trace_rays(scene: Scene, origin: Array, viewdirs: Array) -> tuple[Array, Array, Array]:
    """First hits of rays from one origin [3] along unit viewdirs [M, 3] (no culling; for tests and probes).

    Returns t [M] (inf on a miss), normals [M, 3] and rgb [M, 3] (0 on a miss).
    """
    t_best = np.full(len(viewdirs), np.inf)
    owner = np.full(len(viewdirs), -1, dtype=np.int64)
    for k, prim in enumerate(scene.primitives):
        t = prim.intersect(origin, viewdirs)
        closer = t < t_best
        t_best[closer] = t[closer]
        owner[closer] = k
    normals, rgb = _shade_hits(scene, origin, t_best, owner, viewdirs)
    return t_best, normals, rgb


def trace(scene: Scene, c2w: Array, focal: float, width: int, height: int, xs: Array, ys: Array,
          viewdirs: Array) -> tuple[Array, Array, Array, Array]:
    """First hits of a pinhole camera's rays.

    c2w: [4, 4]; xs: [A] and ys: [B] ascending image coordinates of the sample columns and rows;
    viewdirs: [B, A, 3] unit directions of the rays through (xs, ys).
    Returns t [B, A] (distance along the unit direction, inf on a miss), hit [B, A] bool,
    normals [B, A, 3] (outward unit normals, 0 on a miss) and rgb [B, A, 3] (0 on a miss).
    """
    origin, rot = c2w[:3, 3], c2w[:3, :3]
    shape = viewdirs.shape[:2]
    t_best = np.full(shape, np.inf)
    owner = np.full(shape, -1, dtype=np.int64)
    for k, prim in enumerate(scene.primitives):
        # Only the rays inside the image rectangle bounding the primitive's bounding sphere.
        centre, radius = prim.bound()
        cam = (centre - origin) @ rot  # camera coordinates, the camera looks down -z
        range_x = _tangent_range(cam[0], -cam[2], radius)
        range_y = _tangent_range(cam[1], -cam[2], radius)
        if range_x is None or range_y is None:
            continue
        c0 = int(np.searchsorted(xs, focal * range_x[0] + 0.5 * width, side="left"))
        c1 = int(np.searchsorted(xs, focal * range_x[1] + 0.5 * width, side="right"))
        r0 = int(np.searchsorted(ys, 0.5 * height - focal * range_y[1], side="left"))
        r1 = int(np.searchsorted(ys, 0.5 * height - focal * range_y[0], side="right"))
        if c1 <= c0 or r1 <= r0:
            continue
        t = prim.intersect(origin, viewdirs[r0:r1, c0:c1].reshape(-1, 3)).reshape(r1 - r0, c1 - c0)
        t_view, owner_view = t_best[r0:r1, c0:c1], owner[r0:r1, c0:c1]
        closer = t < t_view
        t_view[closer] = t[closer]
        owner_view[closer] = k
    hit = owner >= 0
    normals, rgb = _shade_hits(scene, origin, t_best.reshape(-1), owner.reshape(-1), viewdirs.reshape(-1, 3))
    return t_best, hit, normals.reshape(*shape, 3), rgb.reshape(*shape, 3)


def render_view(scene: Scene, c2w: Array, height: int, width: int, focal: float,
                supersample: int = SUPERSAMPLE) -> tuple[Array, Array, Array]:
    """Render one view of camera c2w [4, 4] with `supersample`^2 rays per pixel.

    Returns rgba [H, W, 4] (straight alpha), depth [H, W] (camera z-depth at the pixel centre,
    0 = background) and normals [H, W, 3] (world-space unit normals at the pixel centre, 0 = background).
    """
    if supersample % 2 != 1:
        raise ValueError("supersample must be odd so that the pixel centre is one of the samples")
    s = supersample
    offsets = (np.arange(s) + 0.5) / s
    xs = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1)  # [W*s] ascending
    ys = (np.arange(height)[:, None] + offsets[None, :]).reshape(-1)  # [H*s] ascending
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    d_cam = np.stack([(xx - 0.5 * width) / focal, -(yy - 0.5 * height) / focal, -np.ones_like(xx)], -1)
    d = d_cam @ c2w[:3, :3].T  # [H*s, W*s, 3], camera z = -1
    d_norm = np.linalg.norm(d, axis=-1)
    viewdirs = d / d_norm[..., None]
    t, hit, normals, rgb = trace(scene, c2w, focal, width, height, xs, ys, viewdirs)
    hit_f = hit.astype(np.float64).reshape(height, s, width, s)
    alpha = hit_f.mean(axis=(1, 3))
    premult = (rgb.reshape(height, s, width, s, 3) * hit_f[..., None]).mean(axis=(1, 3))
    colour = np.where(alpha[..., None] > 0, premult / np.maximum(alpha, 1e-12)[..., None], 0.0)
    rgba = np.concatenate([colour, alpha[..., None]], axis=-1)
    c = s // 2
    z_depth = np.where(hit, t / d_norm, 0.0).reshape(height, s, width, s)[:, c, :, c]
    n_centre = normals.reshape(height, s, width, s, 3)[:, c, :, c]
    return rgba, z_depth, n_centre
