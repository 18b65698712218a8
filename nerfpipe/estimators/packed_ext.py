"""Volume rendering of packed samples on the extension: autograd Functions around the kernels of
`nerfpipe._ext` (packed_weights_* and packed_composite_*, ext/csrc/occgrid.h), one thread / task per ray
summing its segment in order, so forward and backward are deterministic without atomics (nerfacc's packed
rendering, Li et al. 2023, "NerfAcc: Efficient Sampling Accelerates NeRFs").

The torch references, which define the semantics, are `packed_weights_torch` and `packed_composite_torch`
in nerfpipe.estimators.packed; these Functions take plain tensors (no PackedSamples), so this module
imports nothing of the package but the extension handle.

Gradients (derived for the backward kernels, checked against torch autograd of the references in
tests/test_occgrid_ext.py), with `s_i = sigma_i delta_i`, `T_i = exp(-sum_{j<i} s_j)` and
`w_i = T_i (1 - e^{-s_i})`:

    dL/dsigma_i = delta_i (gw_i T_i e^{-s_i} - sum_{k>i} (gw_k w_k + gT_k T_k))   (reverse cumulative sum)
    dL/dw_i     = g_acc + g_rgb . (c_i - bg) + g_depth' (t_mid_i - depth_raw) / max(acc, eps)
    dL/dc_i     = w_i g_rgb,   dL/dbg = g_rgb (1 - acc)

(g_depth' is zero where the depth was clipped to [near, far]). The t's, near, far and the directions are
constants here: the public functions fall back to the torch reference when one of them needs a gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from nerfpipe.ext_backend import require_ext

EXT_DTYPES = (torch.float32, torch.float64)


def exact_cast_dtype(anchor: Tensor, *others: Tensor) -> torch.dtype | None:
    """`anchor`'s dtype when it is float32/64 and every other tensor converts to it exactly (so that casting
    them first gives the reference's type promotion, bit for bit); else None (use the torch reference)."""
    dtype = anchor.dtype
    if dtype not in EXT_DTYPES:
        return None
    for t in others:
        if not t.is_floating_point() or torch.promote_types(t.dtype, dtype) != dtype:
            return None
    return dtype


class PackedWeights(torch.autograd.Function):
    """(density [S], t_starts [S], t_ends [S], packed_info [R, 2], dir_norm [R]) -> weights, transmittance
    [S]; differentiable in density."""

    @staticmethod
    def forward(ctx, density: Tensor, t_starts: Tensor, t_ends: Tensor, packed_info: Tensor,
                dir_norm: Tensor) -> tuple[Tensor, Tensor]:
        ext = require_ext()
        weights, trans = ext.packed_weights_forward(density, t_starts, t_ends, packed_info, dir_norm)
        ctx.save_for_backward(density, t_starts, t_ends, packed_info, dir_norm, weights, trans)
        return weights, trans

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_weights: Tensor | None, grad_trans: Tensor | None):
        density, t_starts, t_ends, packed_info, dir_norm, weights, trans = ctx.saved_tensors
        grad_weights = torch.zeros_like(weights) if grad_weights is None else grad_weights.contiguous()
        grad_trans = torch.zeros_like(trans) if grad_trans is None else grad_trans.contiguous()
        grad = require_ext().packed_weights_backward(density, t_starts, t_ends, packed_info, dir_norm,
                                                     weights, trans, grad_weights, grad_trans)
        return grad, None, None, None, None


class PackedComposite(torch.autograd.Function):
    """(weights [S], rgb [S, 3], t_starts, t_ends [S], packed_info [R, 2], near, far [R], background [R, 3],
    eps) -> rgb [R, 3], acc [R], depth [R]; differentiable in weights, rgb and background."""

    @staticmethod
    def forward(ctx, weights: Tensor, rgb: Tensor, t_starts: Tensor, t_ends: Tensor, packed_info: Tensor,
                near: Tensor, far: Tensor, background: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        color, acc, depth = require_ext().packed_composite_forward(weights, rgb, t_starts, t_ends,
                                                                   packed_info, near, far, background, eps)
        ctx.save_for_backward(weights, rgb, t_starts, t_ends, packed_info, near, far, background, acc)
        ctx.eps = eps
        return color, acc, depth

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_color: Tensor | None, grad_acc: Tensor | None, grad_depth: Tensor | None):
        weights, rgb, t_starts, t_ends, packed_info, near, far, background, acc = ctx.saved_tensors
        rays = packed_info.shape[0]
        grad_color = weights.new_zeros(rays, 3) if grad_color is None else grad_color.contiguous()
        grad_acc = weights.new_zeros(rays) if grad_acc is None else grad_acc.contiguous()
        grad_depth = weights.new_zeros(rays) if grad_depth is None else grad_depth.contiguous()
        grad_w = grad_rgb = grad_bg = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            grad_w, grad_rgb = require_ext().packed_composite_backward(
                weights, rgb, t_starts, t_ends, packed_info, near, far, background, ctx.eps, grad_color,
                grad_acc, grad_depth)
        if ctx.needs_input_grad[7]:
            grad_bg = grad_color * (1 - acc[:, None])
        return grad_w, grad_rgb, None, None, None, None, None, grad_bg, None
