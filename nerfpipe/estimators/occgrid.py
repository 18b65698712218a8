"""The occupancy grid: which cells of a bounded scene hold anything, refreshed from the model's density
while it trains (nerfacc's `OccGridEstimator`, Li et al. 2023, "NerfAcc: Efficient Sampling Accelerates
NeRFs"; the density grid of Instant-NGP, Mueller et al. 2022, sec. 4).

The grid covers the axis-aligned box `aabb` with G^3 cells (flat index `(ix * G + iy) * G + iz`). Each
cell keeps a running occupancy `occ` (the optical thickness `sigma * step_size` of one marching step at
a jittered point of the cell, decayed and max-pooled over time) and a binary flag
`occ > min(mean(occ), threshold)`. An update, every `update_every` iterations, evaluates the density at
one jittered point of each chosen cell and sets

    occ[c] = max(decay * occ[c], sigma(x_c) * step_size)

for every chosen cell: all cells during the warm-up (`iteration < warmup_iterations`, while the field
is still changing everywhere), afterwards G^3/4 uniformly drawn cells plus up to G^3/4 of the occupied
ones (nerfacc's `_sample_uniform_and_occupied_cells`). Cells drawn twice take the larger value, so the
result does not depend on the order of the writes. Every random number is a counter-based hash of the
update's key (nerfpipe.random_keys), so an update is a pure function of (grid, model, key): a resumed
run, whose checkpoint carries the grid as buffers, repeats it bit for bit.

Before the first update every cell is occupied (the dense grid: marching then samples the whole box).
nerfacc also marks cells that no training camera sees as never occupied; that is left out here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from nerfpipe.ext_backend import require_ext, use_ext
from nerfpipe.random_keys import derive_key, hash_index, hash_uniform, key_seeds

# Points per density evaluation during an update (bounds the memory of the MLP's activations).
UPDATE_CHUNK = 1 << 16
# Sub-streams of an update's key: the cells' jitter, the uniform cells, the occupied cells.
_JITTER, _UNIFORM, _OCCUPIED = 1, 2, 3


def draw_indices(key: int, n: int, size: int, device: torch.device | str) -> Tensor:
    """[n] int64 in [0, size): `floor(hash(key, i) * size / 2^32)` (Lemire's multiply-shift)."""
    h = hash_index(key_seeds(key), torch.arange(n, dtype=torch.int64, device=device))
    return (h * size) >> 32


class OccupancyGrid(nn.Module):
    """G^3 occupancy over `aabb` [6] = (x0, y0, z0, x1, y1, z1); buffers `occ` [G^3] float32 and
    `occupied` [G^3] bool (both in the model's state_dict, so model.pt and checkpoints carry them)."""

    def __init__(self, aabb: Sequence[float], resolution: int, threshold: float = 0.01,
                 ema_decay: float = 0.95, warmup_iterations: int = 256, update_every: int = 16) -> None:
        super().__init__()
        aabb_t = torch.as_tensor(list(aabb), dtype=torch.float32)
        if aabb_t.shape != (6,) or not bool((aabb_t[:3] < aabb_t[3:]).all()):
            raise ValueError(f"occupancy grid: aabb must be (x0, y0, z0, x1, y1, z1) with x0 < x1, y0 < y1, "
                             f"z0 < z1, got {list(aabb)}")
        if resolution < 1 or update_every < 1:
            raise ValueError(f"occupancy grid: resolution and update_every must be >= 1, got {resolution} "
                             f"and {update_every}")
        self.resolution = int(resolution)
        self.threshold = float(threshold)
        self.ema_decay = float(ema_decay)
        self.warmup_iterations = int(warmup_iterations)
        self.update_every = int(update_every)
        self.register_buffer("aabb", aabb_t, persistent=False)
        self.register_buffer("occ", torch.zeros(self.resolution**3))
        self.register_buffer("occupied", torch.ones(self.resolution**3, dtype=torch.bool))

    @property
    def n_cells(self) -> int:
        return self.resolution**3

    def cell_points(self, cells: Tensor, jitter: Tensor) -> Tensor:
        """World points `lo + (ijk + jitter) / G (hi - lo)` of cells [K] (flat) at jitter [K, 3] in [0, 1)."""
        g = self.resolution
        ijk = torch.stack([cells // (g * g), (cells // g) % g, cells % g], dim=-1).to(jitter.dtype)
        lo, hi = self.aabb[:3].to(jitter.dtype), self.aabb[3:].to(jitter.dtype)
        return lo + (ijk + jitter) / g * (hi - lo)

    def cells_to_update(self, iteration: int, key: int) -> Tensor:
        """[K] flat cell indices of the update at `iteration`: all cells during the warm-up, then
        n/4 uniform cells followed by n/4 occupied ones (all occupied ones when fewer)."""
        device = self.occ.device
        if iteration < self.warmup_iterations:
            return torch.arange(self.n_cells, device=device)
        quarter = max(self.n_cells // 4, 1)
        uniform = draw_indices(derive_key(key, _UNIFORM), quarter, self.n_cells, device)
        occupied = torch.nonzero(self.occupied)[:, 0]
        if occupied.numel() > quarter:
            occupied = occupied[draw_indices(derive_key(key, _OCCUPIED), quarter, occupied.numel(), device)]
        return torch.cat([uniform, occupied])

    def due(self, iteration: int) -> bool:
        """Whether the training step at `iteration` refreshes the grid (every `update_every`-th, from 0)."""
        return iteration % self.update_every == 0

    @torch.no_grad()
    def update(self, density_fn: Callable[[Tensor], Tensor], iteration: int, key: int,
               step_size: float) -> None:
        """Refresh the grid from `density_fn` (points [K, 3] -> sigma [K]) at training `iteration`
        with the counter-based `key` (see the module docstring)."""
        cells = self.cells_to_update(iteration, key)
        index = torch.arange(cells.numel() * 3, dtype=torch.int64, device=cells.device).reshape(-1, 3)
        jitter = hash_uniform(key_seeds(derive_key(key, _JITTER)), index)
        points = self.cell_points(cells, jitter)
        sigma = torch.cat([density_fn(chunk).float().reshape(-1) for chunk in points.split(UPDATE_CHUNK)])
        self.apply_update(cells, sigma, step_size)

    @torch.no_grad()
    def apply_update(self, cells: Tensor, sigma: Tensor, step_size: float) -> None:
        """The EMA step of `update` once the density is known: cells [K] int64 (duplicates allowed), sigma
        [K] -> `occ[c] = max over c's duplicates of max(decay * occ_old[c], sigma * step_size)` (every
        duplicate reads the OLD value), then `occupied = occ > min(mean(occ), threshold)`. The extension's
        kernel (race-free max, so order-independent) runs when `use_ext` holds and occ and sigma are
        float32 (the buffers' dtype); the torch reference otherwise."""
        if (use_ext(self.occ.device) and self.occ.dtype == sigma.dtype == torch.float32
                and cells.dtype == torch.int64 and self.occ.is_contiguous()
                and self.occupied.is_contiguous()):
            self.apply_update_ext(cells, sigma, step_size)
        else:
            self.apply_update_torch(cells, sigma, step_size)

    @torch.no_grad()
    def apply_update_ext(self, cells: Tensor, sigma: Tensor, step_size: float) -> None:
        """`apply_update` by the extension (`nerfpipe._ext.occ_grid_update`, in place)."""
        require_ext().occ_grid_update(self.occ, self.occupied, cells.contiguous(), sigma.contiguous(),
                                      self.ema_decay, float(step_size), self.threshold)

    @torch.no_grad()
    def apply_update_torch(self, cells: Tensor, sigma: Tensor, step_size: float) -> None:
        """The torch reference of `apply_update` (scatter_reduce amax without the old values: duplicates
        take the larger of their values, whatever the order of the writes)."""
        value = torch.maximum(self.occ[cells] * self.ema_decay, sigma * step_size)
        self.occ.scatter_reduce_(0, cells, value, reduce="amax", include_self=False)
        self.occupied.copy_(self.occ > torch.clamp(self.occ.mean(), max=self.threshold))

    def extra_repr(self) -> str:
        return (f"resolution={self.resolution}, aabb={self.aabb.tolist()}, threshold={self.threshold}, "
                f"ema_decay={self.ema_decay}, warmup_iterations={self.warmup_iterations}, "
                f"update_every={self.update_every}")
