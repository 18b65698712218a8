"""Volume rendering of packed, ragged samples: S samples of R rays stored flat, sorted by ray and then
by distance, with each ray's segment given by `packed_info` (nerfacc's layout, Li et al. 2023,
"NerfAcc: Efficient Sampling Accelerates NeRFs").

Notation (docs/architecture.md): `t` is the distance along the unnormalised direction (camera z-depth);
sample i of the flat arrays covers `[t_starts[i], t_ends[i]]` on ray `ray_indices[i]`; the samples of
ray r are `packed_info[r, 0] : packed_info[r, 0] + packed_info[r, 1]`. Samples of one ray need not be
contiguous: the gaps between them are empty space (the occupancy grid skipped them).

The formulas are NeRF's eq. 3, as `nerfpipe.render.compute_weights` and `render.composite` write them:
`alpha_i = 1 - exp(-sigma_i delta_i)`, `T_i = exp(-sum_{j<i} sigma_j delta_j)`, `w_i = T_i alpha_i`,
colour `sum_i w_i c_i + bg (1 - acc)`. The per-ray sums run on a zero-padded [R, L] copy (L the longest
segment) so that they are the same row-wise cumulative sums as the dense renderer's, differentiable,
and free of atomics (deterministic on every device); padding adds zeros. Those are the torch references
(`packed_weights_torch`, `packed_composite_torch`); `packed_weights` and `packed_composite` run the
extension's per-ray kernels instead (nerfpipe.estimators.packed_ext, forward and backward) when
`nerfpipe.ext_backend.use_ext` holds for the tensors' device and dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nerfpipe.estimators.packed_ext import PackedComposite, PackedWeights, exact_cast_dtype
from nerfpipe.ext_backend import use_ext
from nerfpipe.render import DEPTH_ACC_EPS


@dataclass
class PackedSamples:
    """Ragged samples of R rays.

    ray_indices: [S] int64, non-decreasing; t_starts, t_ends: [S] interval ends (t units);
    packed_info: [R, 2] int64 (first sample, number of samples) per ray.
    """

    ray_indices: Tensor
    t_starts: Tensor
    t_ends: Tensor
    packed_info: Tensor

    def __len__(self) -> int:
        return self.ray_indices.shape[0]

    @property
    def n_rays(self) -> int:
        return self.packed_info.shape[0]

    def select(self, keep: Tensor) -> PackedSamples:
        """The samples where `keep` [S] (bool) holds; order kept, packed_info recomputed."""
        ray = self.ray_indices[keep]
        return PackedSamples(ray, self.t_starts[keep], self.t_ends[keep], packed_info_from(ray, self.n_rays))


def packed_info_from(ray_indices: Tensor, n_rays: int) -> Tensor:
    """[S] sorted ray indices -> packed_info [R, 2] int64: (first sample, count) per ray."""
    counts = torch.bincount(ray_indices, minlength=n_rays) if ray_indices.numel() else \
        torch.zeros(n_rays, dtype=torch.int64, device=ray_indices.device)
    starts = torch.cumsum(counts, 0) - counts
    return torch.stack([starts, counts], dim=-1)


@dataclass
class Padding:
    """Where each packed sample sits in a zero-padded [R, L] layout: row `ray` [S], column `pos` [S]."""

    ray: Tensor
    pos: Tensor
    n_rays: int
    length: int

    @staticmethod
    def of(packed: PackedSamples) -> Padding:
        info = packed.packed_info
        ray = packed.ray_indices
        pos = torch.arange(ray.shape[0], device=ray.device) - info[ray, 0]
        length = int(info[:, 1].max()) if info.shape[0] else 0
        return Padding(ray, pos, info.shape[0], length)

    def pad(self, values: Tensor, fill: float = 0.0) -> Tensor:
        """[S, ...] -> [R, L, ...], `fill` where a ray has no sample; differentiable in `values`."""
        out = values.new_full((self.n_rays, self.length, *values.shape[1:]), fill)
        return out.index_put((self.ray, self.pos), values)

    def unpad(self, padded: Tensor) -> Tensor:
        """[R, L, ...] -> [S, ...]."""
        return padded[self.ray, self.pos]


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def packed_weights(density: Tensor, packed: PackedSamples, directions: Tensor,
                   padding: Padding | None = None) -> tuple[Tensor, Tensor]:
    """Volume-rendering weights of packed samples (NeRF eq. 3).

    Args:
        density: [S] sigma >= 0 of each sample.
        packed: the S samples of R rays.
        directions: [R, 3] unnormalised ray directions (`delta_i = (t_end - t_start) |d|`).
        padding: the [R, L] layout of the torch reference (`Padding.of(packed)` when None; unused by the
            extension).

    Returns:
        weights [S] `w_i = T_i alpha_i`; transmittance [S] `T_i`, the light reaching the start of sample i
        (gaps between samples are empty, so they do not attenuate). Differentiable in density; the extension
        runs when `use_ext` holds, the t's and directions share a float32/64 dtype that density converts to
        exactly, and none of them needs a gradient.
    """
    dtype = exact_cast_dtype(packed.t_starts, packed.t_ends, directions, density)
    if (use_ext(density.device) and dtype is not None and packed.t_ends.dtype == dtype
            and directions.dtype == dtype and not _needs_grad(packed.t_starts, packed.t_ends, directions)):
        return packed_weights_ext(density, packed, directions)
    return packed_weights_torch(density, packed, directions, padding)


def packed_weights_ext(density: Tensor, packed: PackedSamples, directions: Tensor) -> tuple[Tensor, Tensor]:
    """`packed_weights` by the extension (forward and backward kernels; no padded layout)."""
    dtype = packed.t_starts.dtype
    norm = torch.linalg.vector_norm(directions.detach(), dim=-1)  # as the reference computes |d|
    return PackedWeights.apply(density.to(dtype).contiguous(), packed.t_starts.detach().contiguous(),
                               packed.t_ends.detach().contiguous(), packed.packed_info.contiguous(),
                               norm.contiguous())


def packed_weights_torch(density: Tensor, packed: PackedSamples, directions: Tensor,
                         padding: Padding | None = None) -> tuple[Tensor, Tensor]:
    """The torch reference of `packed_weights` (same arguments and results)."""
    pad = padding or Padding.of(packed)
    norm = torch.linalg.vector_norm(directions, dim=-1)
    delta = (packed.t_ends - packed.t_starts) * norm[packed.ray_indices]
    density_delta = pad.pad(density * delta)  # [R, L]
    alpha = 1 - torch.exp(-density_delta)
    optical_depth = torch.cumsum(density_delta[..., :-1], dim=-1)
    transmittance = torch.exp(-torch.cat([torch.zeros_like(density_delta[..., :1]), optical_depth], dim=-1))
    return pad.unpad(alpha * transmittance), pad.unpad(transmittance)


def packed_composite(weights: Tensor, rgb: Tensor, packed: PackedSamples, near: Tensor, far: Tensor,
                     background: Tensor, padding: Padding | None = None) -> dict[str, Tensor]:
    """Composite packed samples into pixels over a background (NeRF eq. 3 + `bg (1 - acc)`).

    Args:
        weights: [S]; rgb: [S, 3] per-sample colour; near, far: [R] the rays' ranges;
        background: [3] or [R, 3].
        padding: the [R, L] layout of the torch reference (unused by the extension).

    Returns:
        "rgb" [R, 3] `sum_i w_i c_i + bg (1 - acc)`; "acc" [R] `sum_i w_i`; "depth" [R] expected sample
        midpoint `sum_i w_i t_mid_i / acc`, clipped to [near, far] (a ray with acc = 0 gets `near`).
        Differentiable in weights, rgb and background; the extension runs when `use_ext` holds, every input
        converts exactly to the t's float32/64 dtype, and the t's, near and far need no gradient.
    """
    rays = packed.n_rays
    dtype = exact_cast_dtype(packed.t_starts, packed.t_ends, weights, rgb, near, far, background)
    if (use_ext(weights.device) and dtype is not None and packed.t_ends.dtype == weights.dtype == dtype
            and rgb.shape == (len(packed), 3) and background.dim() <= 2
            and torch.broadcast_shapes(background.shape, (rays, 3)) == (rays, 3)
            and not _needs_grad(packed.t_starts, packed.t_ends, near, far)):
        return packed_composite_ext(weights, rgb, packed, near, far, background)
    return packed_composite_torch(weights, rgb, packed, near, far, background, padding)


def packed_composite_ext(weights: Tensor, rgb: Tensor, packed: PackedSamples, near: Tensor, far: Tensor,
                         background: Tensor) -> dict[str, Tensor]:
    """`packed_composite` by the extension (forward and backward kernels; no padded layout)."""
    dtype, rays = packed.t_starts.dtype, packed.n_rays
    bg = torch.broadcast_to(background.to(dtype), (rays, 3)).contiguous()
    color, acc, depth = PackedComposite.apply(
        weights.to(dtype).contiguous(), rgb.to(dtype).contiguous(), packed.t_starts.detach().contiguous(),
        packed.t_ends.detach().contiguous(), packed.packed_info.contiguous(),
        near.detach().to(dtype).contiguous(), far.detach().to(dtype).contiguous(), bg, DEPTH_ACC_EPS)
    return {"rgb": color, "acc": acc, "depth": depth}


def packed_composite_torch(weights: Tensor, rgb: Tensor, packed: PackedSamples, near: Tensor, far: Tensor,
                           background: Tensor, padding: Padding | None = None) -> dict[str, Tensor]:
    """The torch reference of `packed_composite` (same arguments and results)."""
    pad = padding or Padding.of(packed)
    w = pad.pad(weights)
    acc = w.sum(dim=-1)
    color = (w[..., None] * pad.pad(rgb)).sum(dim=-2) + background * (1 - acc[..., None])
    t_mid = pad.pad((packed.t_starts + packed.t_ends) / 2)
    depth = (w * t_mid).sum(dim=-1) / torch.clamp_min(acc, DEPTH_ACC_EPS)
    depth = torch.minimum(torch.maximum(depth, near.to(depth.dtype)), far.to(depth.dtype))
    return {"rgb": color, "acc": acc, "depth": depth}


def packed_sum(values: Tensor, weights: Tensor, padding: Padding) -> Tensor:
    """`sum_i w_i v_i` per ray: values [S, C], weights [S] -> [R, C] (e.g. composited normals)."""
    return (padding.pad(weights)[..., None] * padding.pad(values)).sum(dim=-2)


def packed_histogram(packed: PackedSamples, weights: Tensor, near: Tensor,
                     padding: Padding | None = None) -> tuple[Tensor, Tensor]:
    """A dense step-function view of packed samples, for code that reads per-ray `t` [R, N+1] and
    `weights` [R, N] (the evaluation's weight profiles): endpoints `[s_0, e_0, s_1, e_1, ...]` with the
    samples' weights on `[s_i, e_i]` and 0 on the gaps `[e_i, s_{i+1}]` (zero-width where samples touch).
    Rows are padded with the ray's last end (its `near` when it has no sample) and weight 0.

    Returns t [R, 2L] sorted and weights [R, 2L - 1] (L = max(1, longest segment)), detached.
    """
    pad = padding or Padding.of(packed)
    count = packed.packed_info[:, 1]
    if pad.length == 0:
        t = torch.stack([near, near], dim=-1)
        return t, t.new_zeros(t.shape[0], 1)
    last = packed.t_ends[torch.clamp_min(packed.packed_info[:, 0] + count - 1, 0)] if len(packed) else near
    fill = torch.where(count > 0, last, near.to(packed.t_ends.dtype))
    valid = torch.arange(pad.length, device=count.device)[None, :] < count[:, None]
    starts = torch.where(valid, pad.pad(packed.t_starts), fill[:, None])
    ends = torch.where(valid, pad.pad(packed.t_ends), fill[:, None])
    t = torch.stack([starts, ends], dim=-1).reshape(pad.n_rays, 2 * pad.length)
    w = pad.pad(weights.detach())
    w = torch.stack([w, torch.zeros_like(w)], dim=-1).reshape(pad.n_rays, 2 * pad.length)[:, :-1]
    return t.detach(), w
