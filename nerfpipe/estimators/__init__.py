"""Sample estimators beyond stratified + hierarchical sampling: the occupancy grid (nerfacc's design,
Li et al. 2023), its ray marching and volume rendering of the packed, ragged samples it produces.

- `occgrid`: the grid of a bounded scene (buffers of the model), refreshed from the model's density.
- `marching`: ray-box clipping and fixed-step marching that keeps the samples in occupied cells.
- `packed`: weights, transmittance and compositing of packed samples (`ray_indices`, `packed_info`).
"""

from __future__ import annotations

from nerfpipe.estimators.marching import cell_index, march_rays, ray_aabb
from nerfpipe.estimators.occgrid import OccupancyGrid
from nerfpipe.estimators.packed import (
    PackedSamples,
    Padding,
    packed_composite,
    packed_histogram,
    packed_info_from,
    packed_sum,
    packed_weights,
)

__all__ = ["OccupancyGrid", "PackedSamples", "Padding", "cell_index", "march_rays", "packed_composite",
           "packed_histogram", "packed_info_from", "packed_sum", "packed_weights", "ray_aabb"]
