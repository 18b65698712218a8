"""The training-ray cache (results/rays/{scene}) as the training stage reads it: the memory-mapped
arrays, and `RayStore`, which serves ray batches from memory or from the memory map.

nerfpipe.stages.rays writes the cache; the rays themselves come from nerfpipe.cameras.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from nerfpipe import io as nio
from nerfpipe.errors import NerfpipeError

log = logging.getLogger(__name__)

RAY_CACHE_WIDTHS = {"origins": 3, "directions": 3, "viewdirs": 3, "radii": 1, "rgba": 4}
RAY_CACHE_ARRAYS = tuple(RAY_CACHE_WIDTHS)
RAY_CACHE_FILES = tuple(f"{k}.npy" for k in RAY_CACHE_ARRAYS)
RAY_CACHE_FORMAT = 1  # bump when the arrays' meaning changes: every cache's fingerprint changes
# Arrays only a multiscale cache has (meta "multiscale": true): lossmult [P, 1], each ray's loss weight,
# its pixel's area in full-resolution pixels (mip-NeRF sec. 5; nerfpipe.data.multiscale).
RAY_CACHE_OPTIONAL_WIDTHS = {"lossmult": 1}
# Ray caches above this size are gathered from the memory map batch by batch instead of loaded
# (default of --max-in-memory; $NERFPIPE_MAX_IN_MEMORY_BYTES overrides it).
MAX_IN_MEMORY_BYTES = 2 << 30
MAX_IN_MEMORY_ENV = "NERFPIPE_MAX_IN_MEMORY_BYTES"


def max_in_memory_bytes(value: int | None = None) -> int:
    """The size above which the ray cache is read batch by batch from its memory map: `value`,
    else $NERFPIPE_MAX_IN_MEMORY_BYTES, else MAX_IN_MEMORY_BYTES."""
    source = "--max-in-memory"
    if value is None:
        text = os.environ.get(MAX_IN_MEMORY_ENV, "").strip()
        if not text:
            return MAX_IN_MEMORY_BYTES
        source = MAX_IN_MEMORY_ENV
        try:
            value = int(text)
        except ValueError:
            value = text
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NerfpipeError(f"{source}: expected a number of bytes >= 0, got {value!r}")
    return value


def load_ray_cache(rays_dir: Path) -> dict:
    """Memory-map a ray cache written by `build_ray_cache`.

    Returns {"origins", "directions", "viewdirs": [P, 3], "radii": [P, 1], "rgba": [P, 4]}, with a
    multiscale cache also "lossmult": [P, 1] (read-only np.memmap, float32), plus "meta" (the dict of
    meta.json). P = n_images * H * W, or meta "n_rays" for a multiscale cache (images of several sizes).
    """
    rays_dir = Path(rays_dir)
    if not rays_dir.is_dir():
        raise NerfpipeError(f"{rays_dir}: ray cache folder not found (run the rays stage)")
    meta = nio.read_json(rays_dir / "meta.json")
    out: dict = {"meta": meta}
    n_rays = int(meta["n_images"]) * int(meta["height"]) * int(meta["width"])
    widths = RAY_CACHE_WIDTHS
    keys = RAY_CACHE_ARRAYS
    if meta.get("multiscale"):
        n_rays = int(meta["n_rays"])
        widths = {**RAY_CACHE_WIDTHS, **RAY_CACHE_OPTIONAL_WIDTHS}
        keys = tuple(widths)
    for key in keys:
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


class RayStore:
    """The training rays of a scene, from the ray cache (results/rays/{scene}): loaded onto the
    device when they fit in `max_in_memory` bytes, else gathered from the memory map batch by batch
    (the same rays in the same order either way, so the weights do not depend on the limit)."""

    def __init__(self, rays_dir: Path, device: torch.device, max_in_memory: int | None = None) -> None:
        cache = load_ray_cache(rays_dir)
        self.meta = cache["meta"]
        self.arrays = {k: cache[k] for k in (*RAY_CACHE_ARRAYS, *RAY_CACHE_OPTIONAL_WIDTHS) if k in cache}
        self.n_rays = self.arrays["origins"].shape[0]
        total = sum(a.nbytes for a in self.arrays.values())
        self.device = device
        self.tensors = None
        self.in_memory = total <= max_in_memory_bytes(max_in_memory)
        if self.in_memory:
            self.tensors = {k: torch.from_numpy(np.array(a)).to(device) for k, a in self.arrays.items()}
        log.debug("ray cache %s: %d rays, %.1f MB, %s", rays_dir, self.n_rays, total / 1e6,
                  "in memory" if self.in_memory else "read batch by batch from its memory map")

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.tensors is not None:
            idx = indices.to(self.device)
            return {k: v[idx] for k, v in self.tensors.items()}
        # Read in ascending order (sequential pages), then put the rays back in the batch's order.
        idx = indices.cpu().numpy()
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        out = {}
        for k, a in self.arrays.items():
            rows = np.empty((len(idx), *a.shape[1:]), dtype=a.dtype)
            rows[order] = a[sorted_idx]
            out[k] = torch.from_numpy(rows).to(self.device)
        return out
