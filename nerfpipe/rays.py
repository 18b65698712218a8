"""Camera model (Blender convention), pixel-centre rays, cone radii and the training-ray cache.

Notation (fixed for the whole package, see docs/architecture.md):

- `c2w [..., 3 or 4, 4]` camera-to-world matrices; the camera looks down its -z axis with +y up
  and +x to the right (Blender / OpenGL convention).
- `focal = 0.5 * W / tan(0.5 * camera_angle_x)` in pixels, the same for x and y.
- Pixel `(x, y)` = (column, row) has its centre at `(x + 0.5, y + 0.5)`; row 0 is the top row.
- `directions` are **unnormalised** with camera-space z component -1, so the ray parameter `t`
  of a point is its camera z-depth; `viewdirs` are the normalised directions.
- `radii` is the base radius of the pixel's cone at unit camera depth (mip-NeRF, Sec. 3.1).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nerfpipe import io as nio
from nerfpipe.errors import NerfpipeError
from nerfpipe.guard import check_output_dir, write_marker

# Below this norm the look-at "up" vector is treated as parallel to the viewing direction.
LOOK_AT_PARALLEL_EPS = 1e-6

RAY_CACHE_WIDTHS = {"origins": 3, "directions": 3, "viewdirs": 3, "radii": 1, "rgba": 4}
RAY_CACHE_ARRAYS = tuple(RAY_CACHE_WIDTHS)
RAY_CACHE_FILES = tuple(f"{k}.npy" for k in RAY_CACHE_ARRAYS)
RAY_CACHE_FORMAT = 1  # bump when the arrays' meaning changes: every cache's fingerprint changes
# Free space kept beside a new ray cache (the old cache is still there until the swap).
DISK_HEADROOM_BYTES = 64 << 20


def _check_disk_space(out_dir: Path, needed: int) -> None:
    """Refuse to start a ray cache that cannot fit on the output's file system."""
    probe = Path(out_dir).resolve()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + DISK_HEADROOM_BYTES > free:
        raise NerfpipeError(f"{out_dir}: the ray cache needs {needed / 2**30:.2f} GiB but only "
                            f"{free / 2**30:.2f} GiB are free on its file system")


def focal_from_fov(width: int, camera_angle_x: float) -> float:
    """Focal length in pixels from the horizontal field of view (radians), Blender's convention."""
    if width <= 0 or not (0.0 < camera_angle_x < math.pi):
        raise ValueError(f"focal_from_fov: need width > 0 and 0 < camera_angle_x < pi, "
                         f"got width={width}, camera_angle_x={camera_angle_x}")
    return 0.5 * width / math.tan(0.5 * camera_angle_x)


def camera_directions(height: int, width: int, focal: float, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Camera-space ray directions through pixel centres.

    Returns `d_cam [H, W, 3]` with `d_cam[y, x] = ((x + 0.5 - W/2)/f, -(y + 0.5 - H/2)/f, -1)`.
    """
    x = torch.arange(width, dtype=dtype, device=device) + 0.5
    y = torch.arange(height, dtype=dtype, device=device) + 0.5
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([(xx - 0.5 * width) / focal, -(yy - 0.5 * height) / focal,
                        -torch.ones_like(xx)], dim=-1)


def camera_rays(height: int, width: int, focal: float,
                c2w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through the pixel centres of a pinhole camera.

    c2w: [..., 3 or 4, 4] camera-to-world matrices (float64 stays float64, anything else -> float32).
    Returns `origins, directions`, both `[..., H, W, 3]`; directions are unnormalised with
    camera-space z = -1 (`d = R d_cam`, `o = c2w[:3, 3]`), so `t` along a ray is camera z-depth.
    """
    c2w = torch.as_tensor(c2w)
    if c2w.dim() < 2 or c2w.shape[-1] != 4 or c2w.shape[-2] not in (3, 4):
        raise ValueError(f"camera_rays: c2w must have shape [..., 3 or 4, 4], got {tuple(c2w.shape)}")
    dtype = torch.float64 if c2w.dtype == torch.float64 else torch.float32
    c2w = c2w.to(dtype)
    d_cam = camera_directions(height, width, focal, dtype=dtype, device=c2w.device)
    rot = c2w[..., :3, :3]
    batch = rot.shape[:-2]
    # d[..., h, w, i] = sum_j R[..., i, j] d_cam[h, w, j]
    directions = torch.einsum("...ij,hwj->...hwi", rot, d_cam)
    origins = c2w[..., None, None, :3, 3].expand(*batch, height, width, 3)
    return origins, directions


def pixel_radii(height: int, width: int, focal: float) -> float:
    """mip-NeRF base radius of a pixel's cone at unit camera depth: `2/sqrt(12) * (1/focal)`.

    mip-NeRF (Barron et al. 2021, Sec. 3.1) sets the cone's radius at the image plane to the
    pixel width scaled by 2/sqrt(12), so the cone's variance in the image plane matches that of
    a box of one pixel's width. multinerf computes the pixel width as `dx`, the distance
    between the (unnormalised, z = -1) directions of horizontally neighbouring pixels; with
    `d_cam` as above those differ by exactly `(1/f, 0, 0)` rotated, so `dx = 1/focal` for
    every pixel and the radius is the same scalar everywhere (height/width do not enter).
    """
    del height, width  # kept in the signature: the radius is resolution-independent given focal
    return 2.0 / math.sqrt(12.0) / focal


def look_at(eye: Sequence[float] | np.ndarray, target: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
            up: Sequence[float] | np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world matrix [4, 4] (float64) of a camera at `eye` looking at `target`.

    Blender convention: the camera looks down its -z axis, +y is up, +x right; the camera's
    +x stays horizontal (perpendicular to `up`). Where the view direction is parallel to `up`
    (a camera at the zenith), world +y serves as the up vector instead.
    """
    eye = np.asarray(eye, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    forward = target - eye
    norm = np.linalg.norm(forward)
    if norm < LOOK_AT_PARALLEL_EPS:
        raise ValueError(f"look_at: eye {eye.tolist()} coincides with target {target.tolist()}")
    forward = forward / norm
    right = np.cross(forward, up)
    if np.linalg.norm(right) < LOOK_AT_PARALLEL_EPS:
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right = right / np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0] = right
    c2w[:3, 1] = cam_up
    c2w[:3, 2] = -forward
    c2w[:3, 3] = eye
    return c2w


def orbit_poses(n_frames: int, elevation_deg: float, radius: float) -> torch.Tensor:
    """`n_frames` cameras evenly spaced in azimuth (starting on +x) at one elevation, looking at the origin.

    Returns c2w [n, 4, 4] float32; world up is +z, Blender camera convention.
    """
    el = math.radians(elevation_deg)
    poses = []
    for k in range(n_frames):
        az = 2.0 * math.pi * k / n_frames
        eye = radius * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        poses.append(look_at(eye))
    return torch.from_numpy(np.stack(poses).reshape(n_frames, 4, 4)).to(torch.float32)


def build_ray_cache(data_dir: Path, out_dir: Path) -> None:
    """Rays stage: one ray per training pixel, written as memory-mappable float32 .npy files.

    Writes to `out_dir`: origins, directions (unnormalised), viewdirs (normalised) `[P, 3]`,
    radii `[P, 1]`, rgba `[P, 4]` (straight alpha) with `P = n_images * H * W` and
    `index = image * H * W + y * W + x`, plus meta.json {height, width, n_images, focal, near, far}.
    Built in a temporary sibling directory and renamed into place.
    """
    from nerfpipe.data.prepare import load_split  # the data layer imports this module

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    split = load_split(data_dir, "train", mmap=True)
    meta = split["meta"]
    rgba, poses = split["rgba"], split["poses"]
    n, height, width = rgba.shape[:3]
    focal = float(meta["focal"])
    n_pix = height * width
    total = n * n_pix
    radius = pixel_radii(height, width, focal)
    if "fingerprint" not in meta:
        raise NerfpipeError(f"{data_dir / 'meta.json'}: no content fingerprint (written by an older "
                            "nerfpipe); rerun the data stage")
    check_output_dir(out_dir, "rays", inputs=[data_dir], legacy_names=(*RAY_CACHE_FILES, "meta.json"))
    _check_disk_space(out_dir, total * sum(RAY_CACHE_WIDTHS.values()) * 4)

    tmp_dir = nio.make_temp_dir(out_dir)
    try:
        shapes = RAY_CACHE_WIDTHS
        arrays = {k: np.lib.format.open_memmap(tmp_dir / f"{k}.npy", mode="w+", dtype=np.float32,
                                               shape=(total, c)) for k, c in shapes.items()}
        for i in range(n):
            o, d = camera_rays(height, width, focal, torch.tensor(np.asarray(poses[i]), dtype=torch.float32))
            d = d.reshape(n_pix, 3)
            sl = slice(i * n_pix, (i + 1) * n_pix)
            arrays["origins"][sl] = o.reshape(n_pix, 3).numpy()
            arrays["directions"][sl] = d.numpy()
            arrays["viewdirs"][sl] = (d / torch.linalg.norm(d, dim=-1, keepdim=True)).numpy()
            arrays["rgba"][sl] = np.asarray(rgba[i], np.float32).reshape(n_pix, 4)
        arrays["radii"][:] = radius
        for arr in arrays.values():
            arr.flush()
        arrays.clear()  # drop the memory maps before syncing and renaming
        for k in shapes:
            with open(tmp_dir / f"{k}.npy", "rb+") as f:
                os.fsync(f.fileno())
        cache_meta = {"height": int(height), "width": int(width), "n_images": int(n), "focal": focal,
                      "near": float(meta["near"]), "far": float(meta["far"]),
                      "data_fingerprint": meta["fingerprint"]}
        # The rays are a pure function of the data: their identity is the data's plus the format.
        cache_meta["fingerprint"] = nio.fingerprint({"rays_format": RAY_CACHE_FORMAT, **cache_meta})
        nio.write_json(tmp_dir / "meta.json", cache_meta)
        write_marker(tmp_dir, "rays")
        nio.replace_dir(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def load_ray_cache(rays_dir: Path) -> dict:
    """Memory-map a ray cache written by `build_ray_cache`.

    Returns {"origins", "directions", "viewdirs": [P, 3], "radii": [P, 1], "rgba": [P, 4]}
    (read-only np.memmap, float32) plus "meta" (the dict of meta.json).
    """
    rays_dir = Path(rays_dir)
    if not rays_dir.is_dir():
        raise NerfpipeError(f"{rays_dir}: ray cache folder not found (run the rays stage)")
    meta = nio.read_json(rays_dir / "meta.json")
    out: dict = {"meta": meta}
    n_rays = int(meta["n_images"]) * int(meta["height"]) * int(meta["width"])
    widths = RAY_CACHE_WIDTHS
    for key in RAY_CACHE_ARRAYS:
        path = rays_dir / f"{key}.npy"
        if not path.is_file():
            raise NerfpipeError(f"{path}: missing from the ray cache")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise NerfpipeError(f"{path}: cannot read ({exc})") from exc
        if arr.shape != (n_rays, widths[key]):
            raise NerfpipeError(f"{path}: shape {arr.shape}, expected {(n_rays, widths[key])} from meta.json")
        out[key] = arr
    return out
