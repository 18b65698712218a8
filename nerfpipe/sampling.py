"""Sampling hot paths: image batch sampler, stratified and inverse-transform sampling along rays,
positional encoding and mip-NeRF's integrated positional encoding.

Notation (docs/architecture.md): along a ray, `t [R, N+1]` are sorted interval endpoints and
`weights [R, N]` the volume-rendering weights of the intervals.

Every op has a pure-torch reference (`*_torch`, vectorised, the definition of the semantics) and a
wrapper of the C++/CUDA extension `nerfpipe._ext` (`*_ext`). The public functions dispatch on the
active backend (`set_backend` / `get_backend`): 'ext' when the extension is built, 'torch' otherwise,
unless forced.

Random numbers never come from torch's global generator. Every uniform is a counter-based hash of an
integer `key` and the element's index (`uniform`), computed bit-identically here and in the kernels,
so a training step is a pure function of (seed, iteration) and the two backends agree.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nerfpipe.encoding import integrated_pos_enc as integrated_pos_enc_torch
from nerfpipe.errors import NerfpipeError

try:
    from nerfpipe import _ext

    _EXT_ERROR = ""
except Exception as exc:  # ImportError, or OSError for an extension built against another torch
    _ext = None
    _EXT_ERROR = f"{type(exc).__name__}: {exc}"

BACKENDS = ("auto", "ext", "torch")
# Added to every weight before normalising, so that a ray with all-zero weights samples uniformly
# and the cdf is strictly increasing (NeRF's sample_pdf; multinerf's resample padding plays this part).
PDF_EPS = 1e-5

_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1
_GOLDEN32 = 0x9E3779B9
_SEED2_OFFSET = 0x632BE5AB
_MIX_MUL1 = 0x7FEB352D
_MIX_MUL2 = 0x846CA68B
# Uniforms carry 24 random bits: exactly representable in float32 and float64.
_UNIFORM_BITS = 24
# sample_ray_indices maps a 32-bit hash onto [0, pixels) by multiply-shift in int64.
_MAX_PIXELS = 1 << 31

_requested = "auto"
_backend: str | None = None


# --------------------------------------------------------------------------------------------------
# Backend selection


def extension_status() -> tuple[bool, str]:
    """(True, "") when `nerfpipe._ext` is importable, else (False, the reason)."""
    return (_ext is not None, _EXT_ERROR)


def extension_openmp() -> bool:
    """True when the extension's CPU kernels were compiled with OpenMP, i.e. use all torch threads."""
    return _ext is not None and bool(_ext.has_openmp())


def set_backend(name: str) -> str:
    """Select 'auto' (the extension when built, else torch), 'ext' or 'torch'; returns the resolved name.

    In 'auto' mode CUDA tensors fall back to the torch reference when the extension was built
    without CUDA kernels; with 'ext' forced they raise instead.
    """
    global _requested, _backend
    if name not in BACKENDS:
        raise NerfpipeError(f"sampling backend: unknown backend {name!r}; "
                            f"choose one of {', '.join(BACKENDS)}")
    if name == "ext" and _ext is None:
        raise NerfpipeError(f"sampling backend 'ext': the extension nerfpipe._ext is not built "
                            f"({_EXT_ERROR}); build it with `pip install --no-build-isolation -e .` "
                            "or use 'torch'")
    _requested = name
    _backend = ("ext" if _ext is not None else "torch") if name == "auto" else name
    return _backend


def get_backend() -> str:
    """The active resolved backend, 'ext' or 'torch'."""
    if _backend is None:
        return set_backend(_requested)
    return _backend


def _use_ext(device: torch.device) -> bool:
    if get_backend() != "ext":
        return False
    if device.type == "cuda" and _requested == "auto" and not _ext.has_cuda():
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Counter-based random numbers


def _mul32(x: Tensor, c: int) -> Tensor:
    """(x * c) mod 2^32 for int64 x in [0, 2^32) without leaving int64 (split c into 16-bit halves)."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK32


def _mix32(x: Tensor) -> Tensor:
    """The 'lowbias32' finaliser (C. Wellons) on int64 tensors holding 32-bit words; == mix32 in common.h."""
    x = x ^ (x >> 16)
    x = _mul32(x, _MIX_MUL1)
    x = x ^ (x >> 15)
    x = _mul32(x, _MIX_MUL2)
    return x ^ (x >> 16)


def _mix32_int(x: int) -> int:
    x &= _MASK32
    x ^= x >> 16
    x = (x * _MIX_MUL1) & _MASK32
    x ^= x >> 15
    x = (x * _MIX_MUL2) & _MASK32
    return x ^ (x >> 16)


def _key_seeds(key: int) -> tuple[int, int]:
    """Two 32-bit seeds from an arbitrary Python int key (taken modulo 2^64)."""
    if isinstance(key, bool) or not isinstance(key, int):
        raise TypeError(f"key must be an int, got {type(key).__name__}")
    k = key & _MASK64
    s1 = _mix32_int((k & _MASK32) ^ _mix32_int((k >> 32) ^ _GOLDEN32))
    s2 = _mix32_int(s1 + _SEED2_OFFSET)
    return s1, s2


def _hash_index(seeds: tuple[int, int], index: Tensor) -> Tensor:
    """index: int64 >= 0 -> int64 32-bit hash words; == hash_index in ext/csrc/common.h."""
    s1, s2 = seeds
    x = _mix32((index & _MASK32) ^ s1)
    return _mix32((x + s2 + _mul32(index >> 32, _GOLDEN32)) & _MASK32)


def _hash_uniform(seeds: tuple[int, int], index: Tensor) -> Tensor:
    """index: int64 -> float32 in [0, 1): the top 24 bits of the hash, exact in float32."""
    bits = _hash_index(seeds, index) >> (32 - _UNIFORM_BITS)
    return bits.to(torch.float32) * (1.0 / (1 << _UNIFORM_BITS))


def derive_key(*parts: int) -> int:
    """A well-mixed 64-bit key from several integers (e.g. seed, iteration, stream)."""
    k = 0
    for p in parts:
        s1, s2 = _key_seeds(k ^ (p & _MASK64))
        k = (s1 << 32) | s2
    return k


def uniform(key: int, n: int, device: torch.device | str | None = None) -> Tensor:
    """[n] float32 in [0, 1): the counter-based uniforms u_i = hash(key, i), i = 0..n-1."""
    if n < 0:
        raise ValueError(f"uniform: n must be >= 0, got {n}")
    return _hash_uniform(_key_seeds(key), torch.arange(n, dtype=torch.int64, device=device))


def uniform_ext(key: int, n: int, device: torch.device | str | None = None) -> Tensor:
    """The same numbers as `uniform`, generated by the extension."""
    out = torch.empty(n, dtype=torch.float32, device=device)
    _require_ext().uniform_fill(out, *_key_seeds(key))
    return out


def _require_ext():
    if _ext is None:
        raise NerfpipeError(f"the extension nerfpipe._ext is not built ({_EXT_ERROR})")
    return _ext


def _require_key(fn: str, randomized: bool, key: int | None) -> tuple[int, int]:
    if not randomized:
        return (0, 0)
    if key is None:
        raise ValueError(f"{fn}: randomized sampling needs an integer key, got None")
    return _key_seeds(key)


# --------------------------------------------------------------------------------------------------
# Image batch sampler


def crop_size(height: int, width: int, precrop_frac: float) -> tuple[int, int]:
    """(crop_h, crop_w) = round(H*frac), round(W*frac), at least 1 pixel; the whole image for frac >= 1."""
    if not 0.0 < precrop_frac <= 1.0 or math.isnan(precrop_frac):
        raise ValueError(f"sample_ray_indices: precrop_frac must be in (0, 1], got {precrop_frac}")
    if precrop_frac >= 1.0:
        return height, width
    return max(1, min(height, round(height * precrop_frac))), max(1, min(width, round(width * precrop_frac)))


def _check_ray_args(n_images: int, height: int, width: int, batch_size: int, crop: tuple[int, int]) -> None:
    for name, value in (("n_images", n_images), ("height", height), ("width", width)):
        if value < 1:
            raise ValueError(f"sample_ray_indices: {name} must be >= 1, got {value}")
    if batch_size < 0:
        raise ValueError(f"sample_ray_indices: batch_size must be >= 0, got {batch_size}")
    if n_images * crop[0] * crop[1] > _MAX_PIXELS:
        raise ValueError(f"sample_ray_indices: {n_images} images of {crop[0]}x{crop[1]} pixels exceed "
                         f"2^31 pixels")


def sample_ray_indices_torch(n_images: int, height: int, width: int, batch_size: int, key: int,
                             precrop_frac: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """Reference of `sample_ray_indices`: [batch_size] int64."""
    crop_h, crop_w = crop_size(height, width, precrop_frac)
    _check_ray_args(n_images, height, width, batch_size, (crop_h, crop_w))
    per_image = crop_h * crop_w
    h = _hash_index(_key_seeds(key), torch.arange(batch_size, dtype=torch.int64, device=device))
    # Lemire's multiply-shift: floor(h * M / 2^32) is uniform on [0, M) up to a bias of M / 2^32.
    m = (h * (n_images * per_image)) >> 32
    img = m // per_image
    rem = m - img * per_image
    y = (height - crop_h) // 2 + rem // crop_w
    x = (width - crop_w) // 2 + rem % crop_w
    return (img * height + y) * width + x


def sample_ray_indices_ext(n_images: int, height: int, width: int, batch_size: int, key: int,
                           precrop_frac: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """Extension version of `sample_ray_indices`."""
    crop_h, crop_w = crop_size(height, width, precrop_frac)
    _check_ray_args(n_images, height, width, batch_size, (crop_h, crop_w))
    out = torch.empty(batch_size, dtype=torch.int64, device=device)
    _require_ext().ray_indices_fill(out, n_images, height, width, crop_h, crop_w, *_key_seeds(key))
    return out


def sample_ray_indices(n_images: int, height: int, width: int, batch_size: int, key: int,
                       precrop_frac: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """[batch_size] int64 indices `image*H*W + y*W + x` into the flattened training rays.

    Uniform over all pixels of all images, or with `precrop_frac < 1` over the centred
    round(H*frac) x round(W*frac) crop of every image (NeRF's precrop warm-up for blender scenes).
    """
    dev = torch.device("cpu") if device is None else torch.device(device)
    if _use_ext(dev):
        return sample_ray_indices_ext(n_images, height, width, batch_size, key, precrop_frac, dev)
    return sample_ray_indices_torch(n_images, height, width, batch_size, key, precrop_frac, dev)


# --------------------------------------------------------------------------------------------------
# Stratified sampling


def _check_near_far(near: Tensor, far: Tensor, n_intervals: int) -> tuple[Tensor, Tensor]:
    near = near.reshape(-1) if near.dim() == 2 and near.shape[-1] == 1 else near
    far = far.reshape(-1) if far.dim() == 2 and far.shape[-1] == 1 else far
    if near.dim() != 1 or far.shape != near.shape:
        raise ValueError(f"stratified_endpoints: near and far must be [R], got {tuple(near.shape)} and "
                         f"{tuple(far.shape)}")
    if near.dtype not in (torch.float32, torch.float64) or far.dtype != near.dtype:
        raise TypeError(f"stratified_endpoints: near and far must both be float32 or float64, got "
                        f"{near.dtype} and {far.dtype}")
    if near.device != far.device:
        raise ValueError(f"stratified_endpoints: near is on {near.device} but far on {far.device}")
    if n_intervals < 1:
        raise ValueError(f"stratified_endpoints: n_intervals must be >= 1, got {n_intervals}")
    return near, far


def stratified_endpoints_torch(near: Tensor, far: Tensor, n_intervals: int, randomized: bool,
                               key: int | None = None) -> Tensor:
    """Reference of `stratified_endpoints`."""
    seeds = _require_key("stratified_endpoints", randomized, key)
    near, far = _check_near_far(near, far, n_intervals)
    s = torch.arange(n_intervals + 1, dtype=near.dtype, device=near.device) / n_intervals
    t = near[:, None] * (1 - s) + far[:, None] * s
    if not randomized:
        return t
    mids = (t[:, 1:] + t[:, :-1]) / 2
    lower = torch.cat([t[:, :1], mids], dim=-1)
    upper = torch.cat([mids, t[:, -1:]], dim=-1)
    index = torch.arange(t.numel(), dtype=torch.int64, device=t.device).reshape(t.shape)
    u = _hash_uniform(seeds, index).to(t.dtype)
    return lower + (upper - lower) * u


def stratified_endpoints_ext(near: Tensor, far: Tensor, n_intervals: int, randomized: bool,
                             key: int | None = None) -> Tensor:
    """Extension version of `stratified_endpoints`."""
    seeds = _require_key("stratified_endpoints", randomized, key)
    near, far = _check_near_far(near, far, n_intervals)
    return _require_ext().stratified_endpoints(near.detach().contiguous(), far.detach().contiguous(),
                                               n_intervals, randomized, *seeds)


def stratified_endpoints(near: Tensor, far: Tensor, n_intervals: int, randomized: bool,
                         key: int | None = None) -> Tensor:
    """Interval endpoints along each ray, stratified when `randomized` (NeRF, Eq. 2).

    near, far: [R] (or [R, 1]) -> t: [R, n_intervals+1] sorted, t[:, 0] >= near, t[:, -1] <= far.
    Deterministic: t_j = near (1 - j/N) + far j/N. Randomized (training): every endpoint is drawn
    uniformly between the midpoints around it, `t = lower + (upper - lower) u` with lower = [t_0, mids],
    upper = [mids, t_N] and u = hash(key, r*(N+1) + j), the jitter of multinerf's `sample_intervals`.
    """
    if _use_ext(near.device):
        return stratified_endpoints_ext(near, far, n_intervals, randomized, key)
    return stratified_endpoints_torch(near, far, n_intervals, randomized, key)


# --------------------------------------------------------------------------------------------------
# Inverse-transform sampling


def _check_pdf_args(bins: Tensor, weights: Tensor, n_samples: int, eps: float) -> None:
    if bins.dim() != 2 or weights.dim() != 2:
        raise ValueError(f"sample_pdf: bins must be [R, B+1] and weights [R, B], got {tuple(bins.shape)} and "
                         f"{tuple(weights.shape)}")
    if weights.shape[1] < 1 or bins.shape != (weights.shape[0], weights.shape[1] + 1):
        raise ValueError(f"sample_pdf: bins must be [R, B+1] for weights [R, B] with B >= 1, got bins "
                         f"{tuple(bins.shape)} and weights {tuple(weights.shape)}")
    if bins.dtype not in (torch.float32, torch.float64) or weights.dtype != bins.dtype:
        raise TypeError(f"sample_pdf: bins and weights must both be float32 or float64, got {bins.dtype} "
                        f"and {weights.dtype}")
    if bins.device != weights.device:
        raise ValueError(f"sample_pdf: bins is on {bins.device} but weights on {weights.device}")
    if n_samples < 1:
        raise ValueError(f"sample_pdf: n_samples must be >= 1, got {n_samples}")
    if not eps > 0:
        raise ValueError(f"sample_pdf: eps must be > 0, got {eps}")


@torch.no_grad()
def sample_pdf_torch(bins: Tensor, weights: Tensor, n_samples: int, randomized: bool, key: int | None = None,
                     eps: float = PDF_EPS) -> Tensor:
    """Reference of `sample_pdf`."""
    seeds = _require_key("sample_pdf", randomized, key)
    _check_pdf_args(bins, weights, n_samples, eps)
    rays, num_bins = weights.shape
    steps = torch.arange(n_samples, dtype=bins.dtype, device=bins.device)
    if randomized:
        index = torch.arange(rays * n_samples, dtype=torch.int64, device=bins.device).reshape(rays, n_samples)
        u = (steps + _hash_uniform(seeds, index).to(bins.dtype)) / n_samples
    else:
        u = ((steps + 0.5) / n_samples).expand(rays, n_samples).contiguous()
    return invert_cdf(bins, weights, u, eps)


@torch.no_grad()
def invert_cdf(bins: Tensor, weights: Tensor, u: Tensor, eps: float = PDF_EPS) -> Tensor:
    """Inverse-transform sampling at given quantiles `u` [R, S] in [0, 1), sorted along the last axis:
    pdf = (w + eps) / sum, cdf with a leading 0 and a last entry of exactly 1,
    `searchsorted(cdf, u, right=True)`, linear interpolation inside the bin, clamped to it.
    bins: [R, B+1], weights: [R, B] -> [R, S], detached. `sample_pdf_torch` draws `u` and calls this.
    """
    rays, num_bins = weights.shape
    w = weights + eps
    pdf = w / w.sum(dim=-1, keepdim=True)
    cdf = torch.cumsum(pdf[:, :-1], dim=-1).clamp(max=1)
    cdf = torch.cat([cdf.new_zeros(rays, 1), cdf, cdf.new_ones(rays, 1)], dim=-1)
    u = u.to(bins.dtype).contiguous()
    idx = torch.searchsorted(cdf, u, right=True)
    below = (idx - 1).clamp(0, num_bins)
    above = idx.clamp(0, num_bins)
    cdf0, cdf1 = cdf.gather(-1, below), cdf.gather(-1, above)
    bins0, bins1 = bins.gather(-1, below), bins.gather(-1, above)
    denom = cdf1 - cdf0
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    t = bins0 + (u - cdf0) / denom * (bins1 - bins0)
    # Clamping to the bin keeps the samples sorted under rounding.
    return torch.minimum(torch.maximum(t, bins0), bins1)


def sample_pdf_ext(bins: Tensor, weights: Tensor, n_samples: int, randomized: bool, key: int | None = None,
                   eps: float = PDF_EPS) -> Tensor:
    """Extension version of `sample_pdf`."""
    seeds = _require_key("sample_pdf", randomized, key)
    _check_pdf_args(bins, weights, n_samples, eps)
    return _require_ext().sample_pdf(bins.detach().contiguous(), weights.detach().contiguous(), n_samples,
                                     randomized, *seeds, eps)


def sample_pdf(bins: Tensor, weights: Tensor, n_samples: int, randomized: bool, key: int | None = None,
               eps: float = PDF_EPS) -> Tensor:
    """Inverse-transform sampling of the piecewise-constant pdf `weights` on `bins` (NeRF, Eq. 5).

    bins: [R, B+1] sorted endpoints, weights: [R, B] >= 0 -> samples: [R, n_samples] sorted, detached.
    pdf = (w + eps) / sum(w + eps); cdf = [0, cumsum(pdf)] with the last entry exactly 1; u_i = (i + 0.5)/n,
    or stratified u_i = (i + U_i)/n with U_i = hash(key, r*n + i) when `randomized`;
    idx = searchsorted(cdf, u, right=True); below = clamp(idx-1, 0, B), above = clamp(idx, 0, B);
    t = bins[below] + (u - cdf[below]) / (cdf[above] - cdf[below]) * (bins[above] - bins[below]), a
    denominator below eps read as 1, and t clamped to [bins[below], bins[above]].
    """
    if _use_ext(bins.device):
        return sample_pdf_ext(bins, weights, n_samples, randomized, key, eps)
    return sample_pdf_torch(bins, weights, n_samples, randomized, key, eps)


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
        return _ext.positional_encoding_backward(x, grad_out, num_freqs, include_input)

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
        return _ext.positional_encoding_forward(x, num_freqs, include_input)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        grad_x = _PositionalEncodingGrad.apply(x, grad_out.contiguous(), ctx.num_freqs, ctx.include_input)
        return grad_x, None, None


def positional_encoding_ext(x: Tensor, num_freqs: int, include_input: bool = True) -> Tensor:
    """Extension version of `positional_encoding` (forward and backward are extension kernels)."""
    _check_pe_args(x, num_freqs)
    _require_ext()
    if x.numel() == 0:
        return positional_encoding_torch(x, num_freqs, include_input)
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    out = _PositionalEncoding.apply(flat, num_freqs, include_input)
    return out.reshape(*x.shape[:-1], out.shape[-1])


def positional_encoding(x: Tensor, num_freqs: int, include_input: bool = True) -> Tensor:
    """gamma(x) of NeRF (Eq. 4): x [..., C] -> [..., C*(include_input + 2*num_freqs)], laid out as
    [x, sin(2^0 x), cos(2^0 x), sin(2^1 x), cos(2^1 x), ...], each block C channels. Differentiable."""
    if _use_ext(x.device):
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
        return _ext.integrated_pos_enc_backward(mean, var, grad_out, num_freqs)

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
        return _ext.integrated_pos_enc_forward(mean, var, num_freqs)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        mean, var = ctx.saved_tensors
        grad_mean, grad_var = _IntegratedPosEncGrad.apply(mean, var, grad_out.contiguous(), ctx.num_freqs)
        return grad_mean, grad_var, None


def integrated_pos_enc_ext(mean: Tensor, var: Tensor, num_freqs: int) -> Tensor:
    """Extension version of `integrated_pos_enc` (forward and backward are extension kernels)."""
    _check_ipe_args(mean, var, num_freqs)
    _require_ext()
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
    if _use_ext(mean.device):
        return integrated_pos_enc_ext(mean, var, num_freqs)
    return integrated_pos_enc_torch(mean, var, num_freqs)
