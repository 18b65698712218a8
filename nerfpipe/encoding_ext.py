"""NeRF's positional encoding and mip-NeRF's integrated positional encoding on the extension: the
autograd Functions around the kernels of `nerfpipe._ext` (differentiable twice: forward and backward are
kernels, the double backward torch ops), the torch reference of the plain positional encoding, and the
public functions that dispatch on the active backend of `nerfpipe.ext_backend`.

The reference of the integrated positional encoding is `nerfpipe.encoding.integrated_pos_enc`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nerfpipe.encoding import integrated_pos_enc as integrated_pos_enc_torch
from nerfpipe.ext_backend import require_ext, use_ext

# --------------------------------------------------------------------------------------------------
# Positional encoding

_PE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_pe_args(x: Tensor, num_freqs: int, fn: str = "positional_encoding", name: str = "x") -> None:
    if x.dim() < 1:
        raise ValueError(f"{fn}: {name} must be [..., C], got a 0-d tensor")
    if x.dtype not in _PE_DTYPES:
        raise TypeError(f"{fn}: {name} must be a floating tensor, got {x.dtype}")
    if not 0 <= num_freqs <= 30:
        raise ValueError(f"{fn}: num_freqs must be in [0, 30], got {num_freqs}")


def _pe_scales(num_freqs: int, like: Tensor) -> Tensor:
    return 2.0 ** torch.arange(num_freqs, dtype=like.dtype, device=like.device)


def positional_encoding_torch(x: Tensor, num_freqs: int, include_input: bool = True) -> Tensor:
    """Reference of `positional_encoding` (autograd through torch ops)."""
    _check_pe_args(x, num_freqs)
    xb = x[..., None, :] * _pe_scales(num_freqs, x)[:, None]  # [..., L, C]
    width = 2 * num_freqs * x.shape[-1]
    enc = torch.stack([torch.sin(xb), torch.cos(xb)], dim=-2).reshape(*x.shape[:-1], width)
    return torch.cat([x, enc], dim=-1) if include_input else enc


def _pe_jvp(x: Tensor, dx: Tensor, num_freqs: int, include_input: bool) -> Tensor:
    """d gamma(x) along dx: [x-block dx, 2^k cos(2^k x) dx, -2^k sin(2^k x) dx] in the PE layout."""
    scales = _pe_scales(num_freqs, x)[:, None]
    xb = x[..., None, :] * scales
    d = dx[..., None, :] * scales
    enc = torch.stack([torch.cos(xb) * d, -torch.sin(xb) * d], dim=-2).reshape(*x.shape[:-1],
                                                                            2 * num_freqs * x.shape[-1])
    return torch.cat([dx, enc], dim=-1) if include_input else enc


class _PositionalEncodingGrad(torch.autograd.Function):
    """grad_x = J(x)^T grad_out by the extension; differentiable once more through torch ops."""

    @staticmethod
    def forward(ctx, x: Tensor, grad_out: Tensor, num_freqs: int, include_input: bool) -> Tensor:
        ctx.save_for_backward(x, grad_out)
        ctx.num_freqs, ctx.include_input = num_freqs, include_input
        return require_ext().positional_encoding_backward(x, grad_out, num_freqs, include_input)

    @staticmethod
    def backward(ctx, gg: Tensor):
        x, grad_out = ctx.saved_tensors
        num_freqs, include_input = ctx.num_freqs, ctx.include_input
        # d/d grad_out of (J^T grad_out) . gg = J gg;  d/dx = sum_k 4^k (-g_sin sin - g_cos cos) gg.
        grad_grad_out = _pe_jvp(x, gg, num_freqs, include_input) if ctx.needs_input_grad[1] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            scales = _pe_scales(num_freqs, x)[:, None]
            xb = x[..., None, :] * scales
            g = grad_out[..., x.shape[-1]:] if include_input else grad_out
            g = g.reshape(*x.shape[:-1], num_freqs, 2, x.shape[-1])
            second = -(g[..., 0, :] * torch.sin(xb) + g[..., 1, :] * torch.cos(xb)) * scales**2
            grad_x = second.sum(dim=-2) * gg
        return grad_x, grad_grad_out, None, None


class _PositionalEncoding(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, num_freqs: int, include_input: bool) -> Tensor:
        ctx.save_for_backward(x)
        ctx.num_freqs, ctx.include_input = num_freqs, include_input
        return require_ext().positional_encoding_forward(x, num_freqs, include_input)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        grad_x = _PositionalEncodingGrad.apply(x, grad_out.contiguous(), ctx.num_freqs, ctx.include_input)
        return grad_x, None, None


def positional_encoding_ext(x: Tensor, num_freqs: int, include_input: bool = True) -> Tensor:
    """Extension version of `positional_encoding` (forward and backward are extension kernels)."""
    _check_pe_args(x, num_freqs)
    require_ext()
    if x.numel() == 0:
        return positional_encoding_torch(x, num_freqs, include_input)
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    out = _PositionalEncoding.apply(flat, num_freqs, include_input)
    return out.reshape(*x.shape[:-1], out.shape[-1])


def positional_encoding(x: Tensor, num_freqs: int, include_input: bool = True) -> Tensor:
    """gamma(x) of NeRF (Eq. 4): x [..., C] -> [..., C*(include_input + 2*num_freqs)], laid out as
    [x, sin(2^0 x), cos(2^0 x), sin(2^1 x), cos(2^1 x), ...], each block C channels. Differentiable."""
    if use_ext(x.device):
        return positional_encoding_ext(x, num_freqs, include_input)
    return positional_encoding_torch(x, num_freqs, include_input)


# --------------------------------------------------------------------------------------------------
# Integrated positional encoding (the reference is nerfpipe.encoding.integrated_pos_enc)


def _check_ipe_args(mean: Tensor, var: Tensor, num_freqs: int) -> None:
    _check_pe_args(mean, num_freqs, "integrated_pos_enc", "mean")
    if var.shape != mean.shape:
        raise ValueError(f"integrated_pos_enc: mean and var must have one shape, got {tuple(mean.shape)} and "
                         f"{tuple(var.shape)}")
    if var.dtype != mean.dtype:
        raise TypeError(f"integrated_pos_enc: mean and var must have one dtype, got {mean.dtype} and "
                        f"{var.dtype}")


class _IntegratedPosEncGrad(torch.autograd.Function):
    """(grad_mean, grad_var) = J(mean, var)^T grad_out by the extension, differentiable once more through
    torch ops (the orientation and predicted-normal losses differentiate density normals)."""

    @staticmethod
    def forward(ctx, mean: Tensor, var: Tensor, grad_out: Tensor, num_freqs: int) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(mean, var, grad_out)
        ctx.num_freqs = num_freqs
        # An unused grad_var (Ref-NeRF: var needs no gradient) arrives as None, and its terms are skipped.
        ctx.set_materialize_grads(False)
        return require_ext().integrated_pos_enc_backward(mean, var, grad_out, num_freqs)

    @staticmethod
    def backward(ctx, gg_mean: Tensor | None, gg_var: Tensor | None):
        # S = <grad_mean, gg_mean> + <grad_var, gg_var>, per frequency a = 2^k, w = exp(-a^2 var / 2), with
        # grad_mean = sum a w (g_s cos - g_c sin), grad_var = sum -a^2/2 w (g_s sin + g_c cos):
        #   dS/dg_s = a w cos gg_m - a^2/2 w sin gg_v,    dS/dg_c = -a w sin gg_m - a^2/2 w cos gg_v,
        #   dS/dmean = sum -a^2 w (g_s sin + g_c cos) gg_m - a^3/2 w (g_s cos - g_c sin) gg_v,
        #   dS/dvar  = sum -a^3/2 w (g_s cos - g_c sin) gg_m + a^4/4 w (g_s sin + g_c cos) gg_v.
        mean, var, grad_out = ctx.saved_tensors
        points, channels = mean.shape
        a = _pe_scales(ctx.num_freqs, mean)[:, None]  # [L, 1]
        sin, cos = torch.sin(mean[:, None, :] * a), torch.cos(mean[:, None, :] * a)  # [P, L, C]
        w = torch.exp(-0.5 * var[:, None, :] * a**2)
        g = grad_out.reshape(points, 2, ctx.num_freqs, channels)
        g_s, g_c = g[:, 0], g[:, 1]
        even = (g_s * sin + g_c * cos) * w  # the parts that d/dmean keeps in phase
        odd = (g_s * cos - g_c * sin) * w
        d_gs = d_gc = d_mean = d_var = None
        if gg_mean is not None:
            m = gg_mean[:, None, :]
            d_gs, d_gc = a * w * cos * m, -a * w * sin * m
            d_mean = (-(a**2) * even * m).sum(dim=1)
            d_var = (-0.5 * a**3 * odd * m).sum(dim=1)
        if gg_var is not None:
            v = gg_var[:, None, :]
            d_gs = (0 if d_gs is None else d_gs) - 0.5 * a**2 * w * sin * v
            d_gc = (0 if d_gc is None else d_gc) - 0.5 * a**2 * w * cos * v
            d_mean = (0 if d_mean is None else d_mean) + (-0.5 * a**3 * odd * v).sum(dim=1)
            d_var = (0 if d_var is None else d_var) + (0.25 * a**4 * even * v).sum(dim=1)
        d_grad_out = None if d_gs is None else torch.stack([d_gs, d_gc], dim=1).reshape(grad_out.shape)
        return d_mean, d_var, d_grad_out, None


class _IntegratedPosEnc(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mean: Tensor, var: Tensor, num_freqs: int) -> Tensor:
        ctx.save_for_backward(mean, var)
        ctx.num_freqs = num_freqs
        return require_ext().integrated_pos_enc_forward(mean, var, num_freqs)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        mean, var = ctx.saved_tensors
        grad_mean, grad_var = _IntegratedPosEncGrad.apply(mean, var, grad_out.contiguous(), ctx.num_freqs)
        return grad_mean, grad_var, None


def integrated_pos_enc_ext(mean: Tensor, var: Tensor, num_freqs: int) -> Tensor:
    """Extension version of `integrated_pos_enc` (forward and backward are extension kernels)."""
    _check_ipe_args(mean, var, num_freqs)
    require_ext()
    if mean.numel() == 0:
        return integrated_pos_enc_torch(mean, var, num_freqs)
    channels = mean.shape[-1]
    flat_mean = mean.reshape(-1, channels).contiguous()
    flat_var = var.reshape(-1, channels).contiguous()
    out = _IntegratedPosEnc.apply(flat_mean, flat_var, num_freqs)
    return out.reshape(*mean.shape[:-1], out.shape[-1])


def integrated_pos_enc(mean: Tensor, var: Tensor, num_freqs: int) -> Tensor:
    """mip-NeRF's integrated positional encoding (Eq. 14) of diagonal Gaussians, differentiable twice.

    mean, var: [..., C] -> [..., 2*C*num_freqs] = [sin(2^k mean) w_k | cos(2^k mean) w_k] with
    w_k = exp(-0.5 4^k var), each block frequency-major (index k*C + c); semantics, layout and the
    closed form are those of `nerfpipe.encoding.integrated_pos_enc`, the reference.
    """
    if use_ext(mean.device):
        return integrated_pos_enc_ext(mean, var, num_freqs)
    return integrated_pos_enc_torch(mean, var, num_freqs)
