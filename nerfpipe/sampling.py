"""Sampling along rays and over images: the image batch sampler, stratified interval endpoints and
inverse-transform sampling of a piecewise-constant pdf.

Notation (docs/architecture.md): along a ray, `t [R, N+1]` are sorted interval endpoints and
`weights [R, N]` the volume-rendering weights of the intervals.

Every op has a pure-torch reference (`*_torch`, vectorised, the definition of the semantics) and a
wrapper of the C++/CUDA extension `nerfpipe._ext` (`*_ext`); the public functions dispatch on the
active backend of `nerfpipe.ext_backend`. Randomized ops draw their uniforms from the counter-based
hash of `nerfpipe.random_keys`, so both backends give the same samples for the same `key`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nerfpipe.ext_backend import require_ext, use_ext
from nerfpipe.random_keys import hash_index, hash_uniform, key_seeds

# Added to every weight before normalising, so that a ray with all-zero weights samples uniformly
# and the cdf is strictly increasing (NeRF's sample_pdf; multinerf's resample padding plays this part).
PDF_EPS = 1e-5
# sample_ray_indices maps a 32-bit hash onto [0, pixels) by multiply-shift in int64.
_MAX_PIXELS = 1 << 31


def _require_key(fn: str, randomized: bool, key: int | None) -> tuple[int, int]:
    """The seeds of `key` for a randomized op `fn`, which needs one; (0, 0), unused, when deterministic."""
    if not randomized:
        return (0, 0)
    if key is None:
        raise ValueError(f"{fn}: randomized sampling needs an integer key, got None")
    return key_seeds(key)


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
    h = hash_index(key_seeds(key), torch.arange(batch_size, dtype=torch.int64, device=device))
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
    require_ext().ray_indices_fill(out, n_images, height, width, crop_h, crop_w, *key_seeds(key))
    return out


def sample_ray_indices(n_images: int, height: int, width: int, batch_size: int, key: int,
                       precrop_frac: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """[batch_size] int64 indices `image*H*W + y*W + x` into the flattened training rays.

    Uniform over all pixels of all images, or with `precrop_frac < 1` over the centred
    round(H*frac) x round(W*frac) crop of every image (NeRF's precrop warm-up for blender scenes).
    """
    dev = torch.device("cpu") if device is None else torch.device(device)
    if use_ext(dev):
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
    u = hash_uniform(seeds, index).to(t.dtype)
    return lower + (upper - lower) * u


def stratified_endpoints_ext(near: Tensor, far: Tensor, n_intervals: int, randomized: bool,
                             key: int | None = None) -> Tensor:
    """Extension version of `stratified_endpoints`."""
    seeds = _require_key("stratified_endpoints", randomized, key)
    near, far = _check_near_far(near, far, n_intervals)
    return require_ext().stratified_endpoints(near.detach().contiguous(), far.detach().contiguous(),
                                               n_intervals, randomized, *seeds)


def stratified_endpoints(near: Tensor, far: Tensor, n_intervals: int, randomized: bool,
                         key: int | None = None) -> Tensor:
    """Interval endpoints along each ray, stratified when `randomized` (NeRF, Eq. 2).

    near, far: [R] (or [R, 1]) -> t: [R, n_intervals+1] sorted, t[:, 0] >= near, t[:, -1] <= far.
    Deterministic: t_j = near (1 - j/N) + far j/N. Randomized (training): every endpoint is drawn
    uniformly between the midpoints around it, `t = lower + (upper - lower) u` with lower = [t_0, mids],
    upper = [mids, t_N] and u = hash(key, r*(N+1) + j), the jitter of multinerf's `sample_intervals`.
    """
    if use_ext(near.device):
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
        u = (steps + hash_uniform(seeds, index).to(bins.dtype)) / n_samples
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
    return require_ext().sample_pdf(bins.detach().contiguous(), weights.detach().contiguous(), n_samples,
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
    if use_ext(bins.device):
        return sample_pdf_ext(bins, weights, n_samples, randomized, key, eps)
    return sample_pdf_torch(bins, weights, n_samples, randomized, key, eps)
