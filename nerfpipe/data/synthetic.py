"""Embedded synthetic scenes: a small deterministic numpy ray tracer writing Blender-format datasets.

Each scene is a union of analytic primitives (spheres, oriented boxes, capsules) inside a radius
of about 1.3 around the origin, on a transparent background. Per view the tracer shoots a 3x3
grid of rays per pixel (sub-pixel centres at `(k + 0.5) / 3`): alpha is the covered fraction and
the colour the coverage-weighted mean (straight alpha). Ground-truth z-depth and world-space
normals come from the middle sub-sample, which is the pixel centre. The dataset layout follows
NeRF-synthetic: `transforms_{train,val,test}.json` with `camera_angle_x` and `frames`, each frame
with `file_path` ("./train/r_0", no extension), `transform_matrix`, and the extra keys
`depth_path` / `normal_path` naming float32 .npy files next to the PNG.

Scenes:
- "diffuse": textured sphere, box and striped pillar; Lambertian shading baked in (view-independent).
- "glossy": reflective objects lit by a procedural environment (sky gradient, coloured bands,
  sun disc): colour = (1 - F) * diffuse + F * tint * env(reflected direction), Schlick's F,
  so colour depends on the view direction (the case Ref-NeRF is built for).
- "thin": a cube frame of thin capsules around a tilted ring with spokes (thin structures that
  occlude each other).

Cameras sit on the upper hemisphere at radius 4 looking at the origin (world up +z): train and
val views are independent seeded draws, test views an orbit with varying elevation and a seeded
azimuth offset; no val/test camera coincides with a train camera. Same seed, same bytes.

Before anything is allocated, `generate_scene` estimates the memory the data stage needs for the
scene (`estimate_scene_bytes`: tracing one view, then the decoded dataset) and refuses settings
above MAX_SCENE_BYTES (environment override NERFPIPE_MAX_SCENE_BYTES). A failed write (disk
full, permissions) is reported as a NerfpipeError naming the file.
"""

from __future__ import annotations

import io
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nerfpipe import io as nio
from nerfpipe.cameras import focal_from_fov, look_at
from nerfpipe.data.blender import byte_limit, format_bytes, short_repr
from nerfpipe.errors import NerfpipeError
from nerfpipe.io import make_temp_dir, replace_dir

SCENES = ("diffuse", "glossy", "thin")

CAMERA_ANGLE_X = 0.6911112  # NeRF-synthetic's horizontal field of view (radians)
CAMERA_RADIUS = 4.0
SUPERSAMPLE = 3  # odd, so the middle sub-sample is the pixel centre
# Train/val cameras: uniform on the band z/r in [MIN_Z, MAX_Z] of the upper hemisphere
# (avoid grazing horizon views and the look-at singularity at the zenith).
CAMERA_MIN_Z, CAMERA_MAX_Z = 0.05, 0.95
# Two cameras closer than this (world units) count as the same camera.
SAME_CAMERA_TOL = 1e-3
# Intersections closer than this along the ray are ignored (none occur: cameras are outside).
T_MIN = 1e-6
# Memory limit of a generated scene (see estimate_scene_bytes); NERFPIPE_MAX_SCENE_BYTES overrides it.
MAX_SCENE_BYTES = 4 * 2**30
MAX_SCENE_BYTES_ENV = "NERFPIPE_MAX_SCENE_BYTES"
# Peak bytes per traced ray of `render_view` (measured with tracemalloc: 190-235 for the three
# scenes at 32-128 pixels, rounded up).
TRACE_BYTES_PER_RAY = 256
# Bytes per pixel of a decoded view: rgba (4) + depth (1) + normals (3) float32.
DECODED_BYTES_PER_PIXEL = (4 + 1 + 3) * 4

Array = np.ndarray
AlbedoFn = Callable[[Any, Array], Array]  # (primitive, points [M,3]) -> rgb [M,3]


def _unit(v: Array) -> Array:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _rot(axis: str, deg: float) -> Array:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


# ----------------------------------------------------------------------------- primitives
# Every intersect(o, v) takes one ray origin o [3] (a pinhole camera) and unit directions
# v [M, 3] and returns the distance t [M] to the first hit in front of o (inf on a miss).


@dataclass
class Material:
    albedo: AlbedoFn
    f0: float = 0.0  # Schlick reflectance at normal incidence (0 = purely diffuse)
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # colour of the specular reflection


@dataclass
class Sphere:
    centre: Array
    radius: float
    material: Material

    def bound(self) -> tuple[Array, float]:
        return self.centre, self.radius

    def intersect(self, o: Array, v: Array) -> Array:
        oc = o - self.centre
        b = v @ oc
        disc = b * b - (oc @ oc - self.radius**2)
        root = np.sqrt(np.maximum(disc, 0.0))
        t = np.where(-b - root > T_MIN, -b - root, -b + root)
        return np.where((disc >= 0) & (t > T_MIN), t, np.inf)

    def normal(self, p: Array) -> Array:
        return (p - self.centre) / self.radius


@dataclass
class Box:
    centre: Array
    rotation: Array  # [3, 3], columns are the box axes in world space
    half: Array  # [3] half extents
    material: Material

    def bound(self) -> tuple[Array, float]:
        return self.centre, float(np.linalg.norm(self.half))

    def local(self, p: Array) -> Array:
        return (p - self.centre) @ self.rotation

    def intersect(self, o: Array, v: Array) -> Array:
        ol = (o - self.centre) @ self.rotation
        vl = v @ self.rotation
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / vl
            t1 = (-self.half - ol) * inv
            t2 = (self.half - ol) * inv
        t_near = np.nanmax(np.minimum(t1, t2), axis=-1)
        t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
        hit = (t_far >= t_near) & (t_near > T_MIN)
        return np.where(hit, t_near, np.inf)

    def normal(self, p: Array) -> Array:
        q = self.local(p) / self.half  # the face hit has |q_axis| = 1
        axis = np.argmax(np.abs(q), axis=-1)
        n_local = np.zeros_like(q)
        rows = np.arange(len(q))
        n_local[rows, axis] = np.sign(q[rows, axis])
        return n_local @ self.rotation.T


@dataclass
class Capsule:
    a: Array
    b: Array
    radius: float
    material: Material

    def bound(self) -> tuple[Array, float]:
        return 0.5 * (self.a + self.b), 0.5 * float(np.linalg.norm(self.b - self.a)) + self.radius

    def axial(self, p: Array) -> Array:
        """Position of the closest axis point, 0 at `a` .. 1 at `b`. p: [M, 3] -> [M]."""
        ba = self.b - self.a
        return np.clip((p - self.a) @ ba / (ba @ ba), 0.0, 1.0)

    def intersect(self, o: Array, v: Array) -> Array:
        # Infinite cylinder around the axis, then the hemispherical end caps.
        ba = self.b - self.a
        oa = o - self.a
        baba, baoa, oaoa = ba @ ba, ba @ oa, oa @ oa
        bard = v @ ba
        rdoa = v @ oa
        qa = baba - bard * bard
        qb = baba * rdoa - baoa * bard
        qc = baba * oaoa - baoa * baoa - self.radius**2 * baba
        h = qb * qb - qa * qc
        with np.errstate(divide="ignore", invalid="ignore"):
            t_body = (-qb - np.sqrt(np.maximum(h, 0.0))) / qa
        y = baoa + t_body * bard
        body_ok = (h >= 0) & (qa > 0) & (y > 0) & (y < baba) & (t_body > T_MIN)
        # Cap sphere on the side the cylinder hit lies; oc = o - cap centre is one of two vectors.
        ob = o - self.b
        cap_is_a = y <= 0
        cb = np.where(cap_is_a, rdoa, v @ ob)
        cc = np.where(cap_is_a, oaoa, ob @ ob) - self.radius**2
        ch = cb * cb - cc
        t_cap = -cb - np.sqrt(np.maximum(ch, 0.0))
        cap_ok = (h >= 0) & (ch > 0) & (t_cap > T_MIN)
        return np.where(body_ok, t_body, np.where(cap_ok, t_cap, np.inf))

    def normal(self, p: Array) -> Array:
        s = self.axial(p)
        return (p - (self.a + s[:, None] * (self.b - self.a))) / self.radius


Primitive = Sphere | Box | Capsule


# ----------------------------------------------------------------------------- textures


def _mix(mask: Array, c_true: tuple[float, ...], c_false: tuple[float, ...]) -> Array:
    return np.where(mask[:, None], np.asarray(c_true), np.asarray(c_false))


def _sphere_checker(centre: Array, radius: float, n_phi: int, n_theta: int,
                    c0: tuple[float, ...], c1: tuple[float, ...]) -> AlbedoFn:
    def albedo(prim: Any, p: Array) -> Array:
        q = (p - centre) / radius
        phi = np.arctan2(q[:, 1], q[:, 0])
        theta = np.arccos(np.clip(q[:, 2], -1.0, 1.0))
        cell = np.floor((phi + math.pi) / (2 * math.pi) * n_phi) + np.floor(theta / math.pi * n_theta)
        base = _mix(cell % 2 == 0, c0, c1)
        # fine meridian lines for extra high-frequency detail
        lines = np.abs(np.sin(phi * n_phi * 1.5)) < 0.12
        return np.where(lines[:, None], 0.15 * base + 0.05, base)

    return albedo


def _box_checker(cell: float) -> AlbedoFn:
    face_colours = np.array([[0.20, 0.35, 0.85], [0.25, 0.75, 0.35], [0.92, 0.90, 0.85]])

    def albedo(box: Any, p: Array) -> Array:
        q = box.local(p)
        axis = np.argmax(np.abs(q / box.half), axis=-1)
        # cells centred on the origin, so that no cell boundary lies on a face (no float ties)
        checker = np.sum(np.floor(q / cell + 0.5), axis=-1) % 2 == 0
        base = face_colours[axis]
        return np.where(checker[:, None], base, 0.3 * base + np.array([0.25, 0.05, 0.0]))

    return albedo


def _stripes(n_stripes: int, c0: tuple[float, ...], c1: tuple[float, ...]) -> AlbedoFn:
    def albedo(capsule: Any, p: Array) -> Array:
        s = capsule.axial(p)
        return _mix(np.floor(s * n_stripes) % 2 == 0, c0, c1)

    return albedo


def _constant(c: tuple[float, ...]) -> AlbedoFn:
    def albedo(prim: Any, p: Array) -> Array:
        return np.broadcast_to(np.asarray(c, dtype=np.float64), p.shape).copy()

    return albedo


# ----------------------------------------------------------------------------- scenes


@dataclass
class Scene:
    primitives: list[Primitive] = field(default_factory=list)
    glossy: bool = False


def _diffuse_scene() -> Scene:
    sc, sr = np.array([0.30, 0.25, 0.15]), 0.55
    sphere = Sphere(sc, sr, Material(_sphere_checker(sc, sr, 12, 8, (0.85, 0.20, 0.15), (0.95, 0.85, 0.30))))
    box = Box(np.array([-0.35, -0.30, -0.20]), _rot("z", 30.0) @ _rot("x", 10.0),
              np.array([0.40, 0.35, 0.45]), Material(_box_checker(0.15)))
    pillar = Capsule(np.array([0.45, -0.55, -0.75]), np.array([0.45, -0.55, 0.65]), 0.12,
                     Material(_stripes(10, (0.55, 0.20, 0.70), (0.95, 0.95, 0.95))))
    return Scene([sphere, box, pillar])


def _glossy_scene() -> Scene:
    sc, sr = np.array([0.15, 0.10, 0.25]), 0.65

    def sphere_albedo(prim: Any, p: Array) -> Array:
        q = (p - sc) / sr
        bands = np.floor((q[:, 2] + 1.0) * 3.0) % 2 == 0
        return _mix(bands, (0.05, 0.10, 0.35), (0.10, 0.25, 0.45))

    sphere = Sphere(sc, sr, Material(sphere_albedo, f0=0.55, tint=(1.0, 1.0, 1.0)))
    pill = Capsule(np.array([-0.80, 0.50, -0.55]), np.array([0.60, -0.70, -0.55]), 0.22,
                   Material(_stripes(6, (0.60, 0.45, 0.10), (0.45, 0.30, 0.05)), f0=0.35,
                            tint=(1.0, 0.8, 0.45)))
    box = Box(np.array([-0.45, -0.35, 0.35]), _rot("z", 35.0) @ _rot("y", 20.0), np.array([0.25, 0.25, 0.25]),
              Material(_box_checker(0.125), f0=0.08, tint=(1.0, 1.0, 1.0)))
    return Scene([sphere, pill, box], glossy=True)


def _thin_scene() -> Scene:
    prims: list[Primitive] = []
    # cube frame: 12 edges of a rotated cube
    rot = _rot("z", 25.0) @ _rot("x", 15.0)
    half, r_edge = 0.70, 0.035
    corners = [np.array([sx, sy, sz]) * half for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    edge_colours = [(0.85, 0.25, 0.20), (0.25, 0.70, 0.30), (0.25, 0.40, 0.90)]
    for i, ci in enumerate(corners):
        for cj in corners[i + 1:]:
            diff = cj - ci
            if np.count_nonzero(diff) != 1:
                continue
            axis = int(np.flatnonzero(diff)[0])
            prims.append(Capsule(rot @ ci, rot @ cj, r_edge,
                                 Material(_stripes(8, edge_colours[axis], (0.9, 0.9, 0.85)))))
    # tilted ring (24 straight segments) with six spokes to a hub
    ring_axis = _unit(np.array([0.3, -0.2, 1.0]))
    u = _unit(np.cross(ring_axis, [1.0, 0.0, 0.0]))
    w = np.cross(ring_axis, u)
    r_ring, n_seg = 0.50, 24
    pts = [r_ring * (math.cos(2 * math.pi * j / n_seg) * u + math.sin(2 * math.pi * j / n_seg) * w)
           for j in range(n_seg)]
    for j in range(n_seg):
        colour = (0.95, 0.80, 0.15) if j % 2 == 0 else (0.90, 0.45, 0.10)
        prims.append(Capsule(pts[j], pts[(j + 1) % n_seg], 0.04, Material(_constant(colour))))
    for j in range(0, n_seg, 4):
        prims.append(Capsule(np.zeros(3), pts[j], 0.025,
                             Material(_stripes(4, (0.85, 0.85, 0.90), (0.35, 0.35, 0.40)))))
    prims.append(Sphere(np.zeros(3), 0.10, Material(_constant((0.80, 0.20, 0.60)))))
    return Scene(prims)


_SCENE_BUILDERS = {"diffuse": _diffuse_scene, "glossy": _glossy_scene, "thin": _thin_scene}


def build_scene(kind: str) -> Scene:
    """The primitives and materials of one of SCENES."""
    if kind not in _SCENE_BUILDERS:
        raise NerfpipeError(f"synthetic scene {kind!r}: unknown, expected one of {', '.join(SCENES)}")
    return _SCENE_BUILDERS[kind]()


# ----------------------------------------------------------------------------- lighting

_KEY_LIGHT = _unit(np.array([0.5, 0.3, 0.8]))
_FILL_LIGHT = _unit(np.array([-0.6, -0.4, 0.2]))
_SUN = _unit(np.array([-0.4, 0.6, 0.55]))


def lambert(albedo: Array, normals: Array) -> Array:
    """View-independent shading: ambient + key + fill directional lights. [M,3], [M,3] -> [M,3]."""
    key = np.clip(normals @ _KEY_LIGHT, 0.0, None)
    fill = np.clip(normals @ _FILL_LIGHT, 0.0, None)
    return albedo * (0.30 + 0.60 * key + 0.25 * fill)[:, None]


def environment(dirs: Array) -> Array:
    """Procedural environment radiance along unit directions [M, 3] -> [M, 3] (>= 0, the sun exceeds 1).

    Sky gradient above the horizon, alternating coloured bands just above it, a dark
    checkered ground below it, and a bright sun disc with a soft halo.
    """
    z = dirs[:, 2]
    phi = np.arctan2(dirs[:, 1], dirs[:, 0])
    zen = np.sqrt(np.clip(z, 0.0, 1.0))[:, None]
    sky = (1 - zen) * np.array([0.90, 0.85, 0.75]) + zen * np.array([0.20, 0.40, 0.85])
    band_on = (z > 0.05) & (z < 0.35)
    band_idx = np.floor((phi + math.pi) / (2 * math.pi) * 8).astype(np.int64) % 4
    band_colours = np.array([[0.95, 0.20, 0.15], [0.15, 0.85, 0.25], [0.95, 0.85, 0.10], [0.60, 0.15, 0.85]])
    sky = np.where(band_on[:, None], band_colours[band_idx], sky)
    ground_checker = (np.floor(phi * 4) + np.floor(np.clip(-z, 0, 1) * 6)) % 2 == 0
    ground = np.where(ground_checker[:, None], np.array([0.30, 0.22, 0.15]), np.array([0.12, 0.10, 0.08]))
    env = np.where((z >= 0)[:, None], sky, ground)
    cos_sun = dirs @ _SUN
    sun = 4.0 * np.exp((cos_sun - 1.0) / 0.002) + 0.6 * np.exp((cos_sun - 1.0) / 0.05)
    return env + sun[:, None] * np.array([1.0, 0.92, 0.75])


def shade(scene: Scene, prim: Primitive, points: Array, normals: Array, viewdirs: Array) -> Array:
    """Colour of surface points of one primitive seen along unit `viewdirs` (camera -> point). [M,3] each."""
    mat = prim.material
    albedo = mat.albedo(prim, points)
    diffuse = lambert(albedo, normals)
    if not scene.glossy or mat.f0 <= 0.0:
        return np.clip(diffuse, 0.0, 1.0)
    cos_o = np.clip(-np.sum(viewdirs * normals, axis=-1), 0.0, 1.0)
    fresnel = (mat.f0 + (1.0 - mat.f0) * (1.0 - cos_o) ** 5)[:, None]  # Schlick's approximation
    reflected = viewdirs - 2.0 * np.sum(viewdirs * normals, axis=-1, keepdims=True) * normals
    spec = np.asarray(mat.tint) * environment(reflected)
    return np.clip((1.0 - fresnel) * diffuse + fresnel * spec, 0.0, 1.0)


# ----------------------------------------------------------------------------- tracing


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
        n = _unit(prim.normal(pts))
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
    """Render one view with `supersample`^2 rays per pixel.

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


# ----------------------------------------------------------------------------- cameras


def _random_eyes(rng: np.random.Generator, n: int, radius: float) -> Array:
    z = rng.uniform(CAMERA_MIN_Z, CAMERA_MAX_Z, size=n)  # uniform in area on the band
    phi = rng.uniform(0.0, 2 * math.pi, size=n)
    rho = np.sqrt(1.0 - z * z)
    return radius * np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=-1)


def _orbit_eyes(rng: np.random.Generator, n: int, radius: float) -> Array:
    offset = rng.uniform(0.0, 2 * math.pi)
    az = offset + 2 * math.pi * np.arange(n) / max(n, 1)
    el = np.radians(35.0 + 15.0 * np.sin(2.0 * az))
    return radius * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def camera_eyes(n_train: int, n_val: int, n_test: int, seed: int,
                radius: float = CAMERA_RADIUS) -> dict[str, Array]:
    """Camera positions per split: train/val random on the upper hemisphere, test an orbit."""
    eyes = {"train": _random_eyes(np.random.default_rng([seed, 0]), n_train, radius),
            "val": _random_eyes(np.random.default_rng([seed, 1]), n_val, radius),
            "test": _orbit_eyes(np.random.default_rng([seed, 2]), n_test, radius)}
    for split in ("val", "test"):
        if len(eyes[split]) and len(eyes["train"]):
            gap = np.linalg.norm(eyes[split][:, None] - eyes["train"][None], axis=-1).min()
            if gap < SAME_CAMERA_TOL:
                raise RuntimeError(f"a {split} camera coincides with a train camera (seed {seed})")
    return eyes


# ----------------------------------------------------------------------------- dataset


def _png_bytes(rgba: Array) -> bytes:
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", (np.clip(rgba, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), extension=".png")


def _npy_bytes(array: Array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def estimate_scene_bytes(resolution: int, n_train: int, n_val: int, n_test: int) -> tuple[int, int]:
    """Peak memory of the data stage for a generated scene: (tracing one view, the decoded dataset).

    `render_view` traces resolution^2 x SUPERSAMPLE^2 rays at once (TRACE_BYTES_PER_RAY each);
    afterwards the data stage holds every split decoded (DECODED_BYTES_PER_PIXEL per pixel).
    The two phases do not overlap, so the peak is the larger of the two.
    """
    pixels = int(resolution) ** 2
    trace = pixels * SUPERSAMPLE**2 * TRACE_BYTES_PER_RAY
    dataset = (int(n_train) + int(n_val) + int(n_test)) * pixels * DECODED_BYTES_PER_PIXEL
    return trace, dataset


def _check_scene_size(kind: str, resolution: int, n_train: int, n_val: int, n_test: int) -> None:
    trace, dataset = estimate_scene_bytes(resolution, n_train, n_val, n_test)
    limit = byte_limit(MAX_SCENE_BYTES_ENV, MAX_SCENE_BYTES)
    if max(trace, dataset) <= limit:
        return
    res, views = short_repr(resolution, 20), short_repr(int(n_train) + int(n_val) + int(n_test), 20)
    if trace >= dataset:
        need = (f"resolution: {res} needs about {format_bytes(trace)} to trace one view "
                f"({res}^2 pixels x {SUPERSAMPLE**2} rays x {TRACE_BYTES_PER_RAY} bytes)")
    else:
        counts = ", ".join(f"{k} {short_repr(v, 20)}" for k, v in
                           (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)))
        need = (f"resolution: {res} with {views} views ({counts}) needs about {format_bytes(dataset)} "
                "for the decoded dataset")
    raise NerfpipeError(f"synthetic scene {kind!r}: {need}, more than the limit of {format_bytes(limit)} "
                        f"(MAX_SCENE_BYTES; set {MAX_SCENE_BYTES_ENV} to change it)")


def _write_failed(path: Path, exc: OSError) -> NerfpipeError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return NerfpipeError(f"{path}: cannot write the generated scene ({reason})")


def _write_file(tmp: Path, out_dir: Path, rel: str, data: bytes) -> None:
    """Write tmp/rel; an OSError (disk full, ...) is reported under the final name out_dir/rel."""
    try:
        (tmp / rel).write_bytes(data)
    except OSError as exc:
        raise _write_failed(out_dir / rel, exc) from exc


def generate_scene(kind: str, out_dir: Path, resolution: int = 64, n_train: int = 100, n_val: int = 10,
                   n_test: int = 20, seed: int = 0) -> None:
    """Render scene `kind` and write it to `out_dir` as a Blender-format dataset.

    Writes transforms_{train,val,test}.json, {split}/r_{i}.png (RGBA 8-bit, straight alpha),
    {split}/r_{i}_depth.npy [H, W] float32 z-depth and {split}/r_{i}_normal.npy [H, W, 3] float32
    world-space normals. Deterministic: the same arguments give the same bytes.

    The dataset is built in a temporary sibling folder and renamed onto `out_dir` (replacing an
    older one) when complete. Its hundreds of small files are written without a per-file fsync
    (which would cost more than the rendering); the folder as a whole is the atomic unit.
    Settings whose estimated memory (`estimate_scene_bytes`) exceeds MAX_SCENE_BYTES are refused
    before anything is allocated or written.
    """
    if kind not in _SCENE_BUILDERS:
        raise NerfpipeError(f"synthetic scene {kind!r}: unknown, expected one of {', '.join(SCENES)}")
    if int(resolution) < 1:
        raise NerfpipeError(f"synthetic scene {kind!r}: resolution must be >= 1, got {resolution}")
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if int(n) < 1:
            raise NerfpipeError(f"synthetic scene {kind!r}: {name} must be >= 1, got {n}")
    _check_scene_size(kind, int(resolution), int(n_train), int(n_val), int(n_test))
    out_dir = Path(out_dir)
    scene = build_scene(kind)
    height = width = int(resolution)
    focal = focal_from_fov(width, CAMERA_ANGLE_X)
    eyes = camera_eyes(int(n_train), int(n_val), int(n_test), int(seed))
    try:
        tmp = make_temp_dir(out_dir)
    except OSError as exc:
        raise _write_failed(out_dir, exc) from exc
    try:
        for split, split_eyes in eyes.items():
            try:
                (tmp / split).mkdir()
            except OSError as exc:
                raise _write_failed(out_dir / split, exc) from exc
            frames = []
            for i, eye in enumerate(split_eyes):
                c2w = look_at(eye)
                rgba, depth, normals = render_view(scene, c2w, height, width, focal)
                stem = f"{split}/r_{i}"
                _write_file(tmp, out_dir, f"{stem}.png", _png_bytes(rgba))
                _write_file(tmp, out_dir, f"{stem}_depth.npy", _npy_bytes(depth.astype(np.float32)))
                _write_file(tmp, out_dir, f"{stem}_normal.npy", _npy_bytes(normals.astype(np.float32)))
                frames.append({"file_path": f"./{stem}", "transform_matrix": c2w.tolist(),
                               "depth_path": f"./{stem}_depth.npy", "normal_path": f"./{stem}_normal.npy"})
            name = f"transforms_{split}.json"
            try:
                nio.write_json(tmp / name, {"camera_angle_x": CAMERA_ANGLE_X, "frames": frames})
            except OSError as exc:
                raise _write_failed(out_dir / name, exc) from exc
        try:
            replace_dir(tmp, out_dir)
        except OSError as exc:
            raise _write_failed(out_dir, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
