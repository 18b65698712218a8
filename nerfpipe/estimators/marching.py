"""Ray marching through an occupancy grid: fixed steps that keep only the samples in occupied cells
(nerfacc's `OccGridEstimator.sampling`, Li et al. 2023, "NerfAcc: Efficient Sampling Accelerates NeRFs";
the occupancy-grid marching of Instant-NGP, Mueller et al. 2022).

`march_rays_torch` is the pure-torch reference of the marching op (the definition of its semantics,
vectorised over every fixed step of every ray); `march_rays_ext` runs the extension's kernel
(`nerfpipe._ext.occ_march`, ext/csrc/occgrid.h), which walks each ray's steps in order and jumps over
empty cells, with exactly the reference's output on the CPU: the same formulas in the same operation
order, no FMA contraction, the direction norms computed by the same torch call, and a jump taken only
once the step it lands on is checked to lie in the same empty cell (every rounded operation is monotone
in the step index, so all the steps in between do too). `march_rays` dispatches on
`nerfpipe.ext_backend.use_ext`.

Rays are clipped to the grid's axis-aligned box and to their `[near, far]`; along the clipped range
`[t0, t1]` of ray r, step j covers

    [t0 + (j + u_r) dt_r,  min(t0 + (j + 1 + u_r) dt_r, t1)],   j = 0 .. n_r - 1,
    dt_r = step_size / |d_r|,   n_r = max(0, floor((t1 - t0) / dt_r - u_r)),

`step_size` being a world-space length (the unnormalised direction `d_r` makes `t` camera z-depth) and
`u_r` the ray's jitter: `hash(key, r)` (nerfpipe.random_keys) when randomized, 0 otherwise. A step is
kept when the grid cell holding its midpoint is occupied. Samples come out sorted by ray, then by t.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nerfpipe.estimators.packed import PackedSamples, packed_info_from
from nerfpipe.ext_backend import require_ext, use_ext
from nerfpipe.random_keys import hash_uniform, key_seeds

_EXT_DTYPES = (torch.float32, torch.float64)


def ray_aabb(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances of rays through a box (the slab method).

    origins, directions: [R, 3]; aabb: [6] (x0, y0, z0, x1, y1, z1) -> t_min, t_max: [R], in units of
    `directions`; a ray that misses the box has t_min > t_max. A zero direction component keeps the
    ray inside that slab for all t when its origin lies in it, and outside for all t otherwise.
    """
    lo, hi = aabb[:3].to(origins.dtype), aabb[3:].to(origins.dtype)
    zero = directions == 0
    safe = torch.where(zero, torch.ones_like(directions), directions)
    ta, tb = (lo - origins) / safe, (hi - origins) / safe
    inside = (origins >= lo) & (origins <= hi)
    inf = torch.full_like(ta, float("inf"))
    near = torch.where(zero, torch.where(inside, -inf, inf), torch.minimum(ta, tb))
    far = torch.where(zero, torch.where(inside, inf, -inf), torch.maximum(ta, tb))
    return near.amax(dim=-1), far.amin(dim=-1)


def cell_index(points: Tensor, aabb: Tensor, resolution: int) -> Tensor:
    """Flat index `(ix * G + iy) * G + iz` of the grid cell holding each point: [..., 3] -> [...] int64,
    `i = floor((x - lo) / (hi - lo) * G)` clamped to [0, G - 1]."""
    lo, hi = aabb[:3].to(points.dtype), aabb[3:].to(points.dtype)
    ijk = torch.floor((points - lo) / (hi - lo) * resolution).to(torch.int64).clamp_(0, resolution - 1)
    return (ijk[..., 0] * resolution + ijk[..., 1]) * resolution + ijk[..., 2]


def _check_march_args(occupied: Tensor, resolution: int, step_size: float, randomized: bool,
                      key: int | None) -> None:
    if not step_size > 0:
        raise ValueError(f"march_rays: step_size must be > 0, got {step_size}")
    if occupied.numel() != resolution**3:
        raise ValueError(f"march_rays: occupied has {occupied.numel()} cells, expected {resolution}^3")
    if randomized and key is None:
        raise ValueError("march_rays: randomized marching needs an integer key, got None")


def march_rays(origins: Tensor, directions: Tensor, near: Tensor, far: Tensor, occupied: Tensor,
               aabb: Tensor, resolution: int, step_size: float, randomized: bool,
               key: int | None = None) -> PackedSamples:
    """Fixed-step samples of each ray inside occupied cells (see the module docstring).

    Args:
        origins, directions: [R, 3] (directions unnormalised); near, far: [R].
        occupied: [G^3] bool, the grid (flat index of `cell_index`); aabb: [6]; resolution: G.
        step_size: world-space step length (> 0).
        randomized: jitter the first step of each ray by `u_r = hash(key, r)`; else `u_r = 0`.

    Returns:
        PackedSamples with S kept samples: ray_indices [S], t_starts [S], t_ends [S], packed_info [R, 2].
        The extension runs when `use_ext(origins.device)` holds, origins and directions share a float32 /
        float64 dtype and no input needs a gradient (the kernel's t are not differentiable); otherwise, and
        for other dtypes, the torch reference.
    """
    inputs = (origins, directions, near, far)
    differentiable = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    if (use_ext(origins.device) and origins.dtype in _EXT_DTYPES and directions.dtype == origins.dtype
            and occupied.dtype in (torch.bool, torch.uint8) and not differentiable):
        return march_rays_ext(*inputs, occupied, aabb, resolution, step_size, randomized, key)
    return march_rays_torch(*inputs, occupied, aabb, resolution, step_size, randomized, key)


def march_rays_ext(origins: Tensor, directions: Tensor, near: Tensor, far: Tensor, occupied: Tensor,
                   aabb: Tensor, resolution: int, step_size: float, randomized: bool,
                   key: int | None = None) -> PackedSamples:
    """`march_rays` by the extension's kernel (shapes as there; origins and directions float32 or float64 of
    one dtype; near, far and aabb are cast to it, as the reference does)."""
    _check_march_args(occupied, resolution, step_size, randomized, key)
    dtype = origins.dtype
    seeds = key_seeds(key) if randomized else (0, 0)
    # |d| by the reference's own call: its reduction order (an FMA chain on AVX CPUs) is torch's to choose.
    norm = torch.linalg.vector_norm(directions, dim=-1)
    ray, starts, ends, info = require_ext().occ_march(
        origins.detach().contiguous(), directions.detach().contiguous(), norm.detach().contiguous(),
        near.detach().to(dtype).contiguous(), far.detach().to(dtype).contiguous(), occupied.contiguous(),
        aabb.detach().to(dtype).contiguous(), int(resolution), float(step_size), bool(randomized), *seeds)
    return PackedSamples(ray, starts, ends, info)


def march_rays_torch(origins: Tensor, directions: Tensor, near: Tensor, far: Tensor, occupied: Tensor,
                     aabb: Tensor, resolution: int, step_size: float, randomized: bool,
                     key: int | None = None) -> PackedSamples:
    """The torch reference of `march_rays` (same arguments and result)."""
    _check_march_args(occupied, resolution, step_size, randomized, key)
    n_rays, device = origins.shape[0], origins.device
    t_in, t_out = ray_aabb(origins, directions, aabb)
    t0 = torch.maximum(near.to(t_in.dtype), t_in)
    t1 = torch.minimum(far.to(t_in.dtype), t_out)
    dt = step_size / torch.linalg.vector_norm(directions, dim=-1)
    if randomized:
        u = hash_uniform(key_seeds(key), torch.arange(n_rays, dtype=torch.int64, device=device)).to(t0.dtype)
    else:
        u = torch.zeros_like(t0)
    steps = torch.floor((t1 - t0) / dt - u)
    counts = torch.where(t1 > t0, steps, torch.zeros_like(steps)).clamp_min(0).to(torch.int64)
    ray = torch.repeat_interleave(torch.arange(n_rays, device=device), counts)
    j = torch.arange(ray.shape[0], device=device) - (torch.cumsum(counts, 0) - counts)[ray]
    j = j.to(t0.dtype)
    t0r, dtr, ur = t0[ray], dt[ray], u[ray]
    starts = t0r + (j + ur) * dtr
    ends = torch.minimum(t0r + (j + 1 + ur) * dtr, t1[ray])
    mids = (starts + ends) / 2
    points = origins[ray] + mids[:, None] * directions[ray]
    keep = occupied[cell_index(points, aabb, resolution)]
    ray = ray[keep]
    return PackedSamples(ray, starts[keep], ends[keep], packed_info_from(ray, n_rays))
