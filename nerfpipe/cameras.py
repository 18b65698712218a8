"""Camera model (Blender convention) and pixel-centre rays.

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
from collections.abc import Sequence

import numpy as np
import torch

# Below this norm the look-at "up" vector is treated as parallel to the viewing direction.
LOOK_AT_PARALLEL_EPS = 1e-6


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
