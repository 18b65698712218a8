"""Volume rendering: weights, compositing (colour, opacity, depth, normals), and what happens to a
level's weights before the next level is resampled from them: mip-NeRF's blur, and mip-NeRF 360's
annealing, dilation and single-jitter inverse-transform sampling (multinerf's defaults).

Notation: `t [R, N+1]` sorted interval endpoints along each ray, `directions [R, 3]` unnormalised
(camera z component = -1, so `t` is camera z-depth), `weights [R, N]` sum to <= 1 along the last axis.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nerfpipe import random_keys, sampling

# Floor on the accumulated opacity when normalising the expected depth: a ray that hits nothing
# (acc = 0) gets a finite depth that is then clipped to the ray's range, never NaN.
DEPTH_ACC_EPS = 1e-10
# Floor on |grad sigma| when normalising density gradients into normals (flat density -> zero normal).
NORMAL_GRAD_EPS = 1e-10
# multinerf's floors in its step-function code: float32 eps squared on interval widths and weight sums.
STEP_EPS = float(torch.finfo(torch.float32).eps) ** 2


def background_color(settings: dict) -> Tensor:
    """[3]: white with white_bkgd, else black (the same in training and evaluation)."""
    return torch.ones(3) if settings["white_bkgd"] else torch.zeros(3)


def composite_background(rgba: Tensor, background: Tensor) -> Tensor:
    """rgba: [..., 4] straight alpha -> [..., 3] = rgb * a + bg * (1 - a): how RGBA images meet
    the background, the same `bg` the renderer composites with (`composite`)."""
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + background * (1.0 - alpha)


def compute_weights(density: Tensor, t: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
    """Alpha-compositing weights of piecewise-constant density along rays (NeRF eq. 3).

    `delta_i = (t_{i+1} - t_i) |d|`, `alpha_i = 1 - exp(-sigma_i delta_i)`,
    `T_i = prod_{j<i} (1 - alpha_j) = exp(-sum_{j<i} sigma_j delta_j)` (the exponential-of-cumsum form
    avoids the underflow and gradient trouble of a product of many factors), `w_i = T_i alpha_i`.

    Args:
        density: [R, N] sigma >= 0 per interval.
        t: [R, N+1] sorted interval endpoints.
        directions: [R, 3] unnormalised ray directions.

    Returns:
        weights: [R, N]; transmittance: [R, N] (T_i, the light reaching the start of interval i).
    """
    delta = (t[..., 1:] - t[..., :-1]) * torch.linalg.vector_norm(directions, dim=-1, keepdim=True)
    density_delta = density * delta
    alpha = 1 - torch.exp(-density_delta)
    optical_depth = torch.cumsum(density_delta[..., :-1], dim=-1)
    transmittance = torch.exp(-torch.cat([torch.zeros_like(density_delta[..., :1]), optical_depth], dim=-1))
    return alpha * transmittance, transmittance


def composite(rgb: Tensor, weights: Tensor, t: Tensor, background: Tensor) -> dict[str, Tensor]:
    """Composite per-sample colours into pixels over a background (NeRF eq. 3 + `bg (1 - acc)`).

    Args:
        rgb: [R, N, 3] per-interval colour.
        weights: [R, N] rendering weights.
        t: [R, N+1] sorted interval endpoints.
        background: [3] or [R, 3] background colour (the same one used when loading RGBA images).

    Returns:
        "rgb": [R, 3] `sum_i w_i c_i + bg (1 - acc)`;
        "acc": [R] accumulated opacity `sum_i w_i`;
        "depth": [R] expected interval midpoint `sum_i w_i t_mid_i / acc` (camera z-depth), clipped to
        `[t_0, t_N]`; a ray with acc = 0 gets `t_0`.
    """
    acc = weights.sum(dim=-1)
    color = (weights[..., None] * rgb).sum(dim=-2) + background * (1 - acc[..., None])
    t_mid = (t[..., :-1] + t[..., 1:]) / 2
    depth = (weights * t_mid).sum(dim=-1) / torch.clamp_min(acc, DEPTH_ACC_EPS)
    depth = torch.clamp(depth, t[..., 0], t[..., -1])
    return {"rgb": color, "acc": acc, "depth": depth}


def composite_normals(normals: Tensor, weights: Tensor) -> Tensor:
    """Weighted sum of per-sample normals: [R, N, 3], [R, N] -> [R, 3] (not normalised, so its length
    tells how much of the ray's opacity agreed on the direction)."""
    return (weights[..., None] * normals).sum(dim=-2)


def blur_weights_for_resampling(weights: Tensor, padding: float) -> Tensor:
    """mip-NeRF's weight filter before hierarchical resampling (mip-NeRF sec. 3.2).

    A 2-tap max filter (edge-replicated) followed by a 2-tap blur, then `+ padding`:
    `w'_i = (max(w_{i-1}, w_i) + max(w_i, w_{i+1})) / 2 + padding` (with `w_{-1} = w_0`, `w_N = w_{N-1}`).
    The envelope widens every peak by one interval, so the fine samples cover the neighbourhood of a
    surface and not only the coarse bin that hit it.

    Args:
        weights: [..., N] rendering weights.
        padding: constant added to every bin (mip-NeRF: 0.01), so empty space still gets samples.

    Returns:
        [..., N] filtered weights (not normalised; the sampler normalises).
    """
    padded = torch.cat([weights[..., :1], weights, weights[..., -1:]], dim=-1)
    pair_max = torch.maximum(padded[..., :-1], padded[..., 1:])  # [..., N+1]
    blurred = 0.5 * (pair_max[..., :-1] + pair_max[..., 1:])
    return blurred + padding


def normals_from_density_grad(grad: Tensor) -> Tensor:
    """Unit normals `n = -grad sigma / |grad sigma|` (Ref-NeRF sec. 3.3), [..., 3] -> [..., 3].

    Density rises into the object, so the normal points against its gradient. The model computes
    `grad` with `torch.autograd.grad(sigma.sum(), x, create_graph=True)` so that losses on the normals
    train the density. A vanishing gradient gives a (near) zero vector rather than NaN.
    """
    norm_sq = (grad**2).sum(dim=-1, keepdim=True)
    return -grad / torch.sqrt(torch.clamp_min(norm_sq, NORMAL_GRAD_EPS**2))


# --------------------------------------------------------------------------------------------------------
# mip-NeRF 360: resampling a proposal histogram (multinerf's Model defaults: anneal_slope 10,
# dilation_multiplier 0.5, dilation_bias 0.0025, single_jitter True)
# --------------------------------------------------------------------------------------------------------


def anneal_power(train_frac: float, slope: float) -> float:
    """Exponent of the proposal weights when resampling: Schlick's bias `s x / ((s - 1) x + 1)` of the
    training fraction x in [0, 1] (mip-NeRF 360 sec. 3, multinerf `anneal_slope`). 0 at the start
    (uniform resampling), 1 at the end; `slope` <= 0 switches annealing off (exponent 1)."""
    if slope <= 0:
        return 1.0
    x = min(max(float(train_frac), 0.0), 1.0)
    return slope * x / ((slope - 1) * x + 1)


def anneal_weights(t: Tensor, weights: Tensor, power: float, padding: float = 0.0) -> Tensor:
    """`(w + padding) ** power` on every interval of non-zero width, 0 on empty ones: multinerf's
    `softmax(power * log(w + padding))` before normalisation (the sampler normalises).

    `0 ** 0` is 1 here (uniform resampling at the start of training), where multinerf's `0 * log 0`
    would be NaN. t: [..., N+1], weights: [..., N] -> [..., N].
    """
    w = weights + padding
    w = torch.ones_like(w) if power == 0 else (w if power == 1 else w**power)
    return torch.where(t[..., 1:] > t[..., :-1], w, torch.zeros_like(w))


def max_dilate_weights(t: Tensor, weights: Tensor, dilation: float, domain: tuple[float, float] = (0.0, 1.0),
                       renormalize: bool = True) -> tuple[Tensor, Tensor]:
    """Dilate a histogram by max-pooling its density (multinerf `stepfun.max_dilate_weights`).

    Every interval `[t_k, t_{k+1}]` is widened to `[t_k - d, t_{k+1} + d]`; the new endpoints are the
    sorted union of `t`, `t_k - d` and `t_{k+1} + d`, clipped to `domain`; on each new interval
    `[u_j, u_{j+1}]` the density is the largest density `p_k = w_k / max(eps, t_{k+1} - t_k)` of the
    widened intervals that contain `u_j` (`t_k - d <= u_j < t_{k+1} + d`), and the weight is that
    density times the new width, renormalised to sum 1 (with a floor of eps on the sum).

    The contained intervals form the contiguous range `lo..hi` (`lo` = number of k with
    `t_{k+1} + d <= u`, `hi` = number of k with `t_k - d <= u`, minus 1), so the maximum is a range
    query, answered from a sparse table in O(N log N) per ray instead of multinerf's O(N^2) mask.

    Args:
        t: [..., N+1] sorted endpoints; weights: [..., N] >= 0.
        dilation: d >= 0 (same units as t).
        domain: where the endpoints are clipped to.

    Returns:
        t_dilated: [..., 3N+1]; w_dilated: [..., 3N].
    """
    density = weights / torch.clamp_min(t[..., 1:] - t[..., :-1], STEP_EPS)
    lo_edges = t[..., :-1] - dilation
    hi_edges = t[..., 1:] + dilation
    t_dil = torch.sort(torch.cat([t, lo_edges, hi_edges], dim=-1), dim=-1).values
    t_dil = torch.clamp(t_dil, domain[0], domain[1])
    query = t_dil[..., :-1].contiguous()
    lo = torch.searchsorted(hi_edges.contiguous(), query, right=True)
    hi = torch.searchsorted(lo_edges.contiguous(), query, right=True) - 1
    p_dil = _range_max(density, lo, hi)
    w_dil = p_dil * (t_dil[..., 1:] - t_dil[..., :-1])
    if renormalize:
        w_dil = w_dil / torch.clamp_min(w_dil.sum(dim=-1, keepdim=True), STEP_EPS)
    return t_dil, w_dil


def _range_max(values: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """max(values[..., lo:hi+1]) for every query (0 where lo > hi); values: [..., N] >= 0, lo/hi: [..., Q]."""
    n = values.shape[-1]
    table = [values]
    width = 1
    while 2 * width <= n:  # table[j][k] = max(values[k : k + 2^j])
        prev = table[-1]
        table.append(torch.maximum(prev[..., :-width], prev[..., width:]))
        width *= 2
    count = hi - lo + 1
    valid = count > 0
    count = torch.clamp_min(count, 1)
    level = torch.floor(torch.log2(count.to(torch.float64))).to(torch.int64)
    level = torch.clamp(level, 0, len(table) - 1)
    lo_c = torch.clamp(lo, 0, n - 1)
    out = torch.zeros(lo.shape, dtype=values.dtype, device=values.device)
    for j, tab in enumerate(table):
        sel = level == j
        if not bool(sel.any()):
            continue
        last = tab.shape[-1] - 1
        a = tab.gather(-1, torch.clamp(lo_c, 0, last))
        b = tab.gather(-1, torch.clamp(hi - (1 << j) + 1, 0, last))
        out = torch.where(sel, torch.maximum(a, b), out)
    return torch.where(valid, out, torch.zeros_like(out))


def ray_jitter(key: int, rays: int, device: torch.device | str) -> Tensor:
    """[R] one uniform in [0, 1) per ray, the counter-based `random_keys.uniform(key, R)`."""
    return random_keys.uniform(key, rays, device=device)


def sample_pdf_single_jitter(bins: Tensor, weights: Tensor, n_samples: int, randomized: bool,
                             key: int | None = None) -> Tensor:
    """`sampling.sample_pdf` with one jitter per ray (multinerf `single_jitter`): `u_i = (i + U) / n`
    with the same `U = hash(key, r)` for every sample of ray r; `u_i = (i + 0.5) / n` when not
    randomized (then equal to `sample_pdf`'s). bins: [R, B+1], weights: [R, B] -> [R, n] sorted."""
    steps = torch.arange(n_samples, dtype=bins.dtype, device=bins.device)
    if randomized:
        if key is None:
            raise ValueError("sample_pdf_single_jitter: randomized sampling needs an integer key, got None")
        u = (steps + ray_jitter(key, bins.shape[0], bins.device).to(bins.dtype)[:, None]) / n_samples
    else:
        u = ((steps + 0.5) / n_samples).expand(bins.shape[0], n_samples)
    return sampling.invert_cdf(bins, weights, u)


def stratified_endpoints_single_jitter(near: Tensor, far: Tensor, n_intervals: int, randomized: bool,
                                       key: int | None = None) -> Tensor:
    """`sampling.stratified_endpoints` with one jitter per ray: `t_j = lower_j + (upper_j - lower_j) U`
    (lower = [t_0, mids], upper = [mids, t_N] of the even grid) with the same `U = hash(key, r)` for
    every endpoint of ray r, so the inner intervals keep the grid's width. near, far: [R] -> [R, N+1]."""
    t = sampling.stratified_endpoints(near, far, n_intervals, False)
    if not randomized:
        return t
    if key is None:
        raise ValueError("stratified_endpoints_single_jitter: randomized sampling needs an integer key, "
                         "got None")
    mids = (t[:, 1:] + t[:, :-1]) / 2
    lower = torch.cat([t[:, :1], mids], dim=-1)
    upper = torch.cat([mids, t[:, -1:]], dim=-1)
    return lower + (upper - lower) * ray_jitter(key, t.shape[0], t.device).to(t.dtype)[:, None]
