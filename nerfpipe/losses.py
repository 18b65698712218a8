"""Training losses: reconstruction (mse, softl1), the mip-NeRF 360 proposal and distortion losses, and
Ref-NeRF's normal regularisers.

Notation: `t [R, N+1]` sorted interval endpoints along each ray, `w [R, N]` weights summing to <= 1
along the last axis. Every loss returns a scalar: the distortion and normal losses are means over rays
of per-ray sums, the interlevel loss is a mean over rays and intervals (as multinerf computes each).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Keeps the scaled half-quadratic of the interlevel loss finite where the NeRF weight is 0
# (then the loss is 0 anyway and its gradient stays bounded).
INTERLEVEL_EPS = 1e-7


def weighted_mean(x: Tensor, weights: Tensor) -> Tensor:
    """`sum(w * x) / sum(w)` with per-ray weights [R, 1] broadcast over x [R, C]: mip-NeRF's loss
    weighted by pixel area (sec. 5, multiscale; multinerf's `(lossmult * resid_sq).sum() / lossmult.sum()`
    with lossmult broadcast to the colour's shape)."""
    w = weights.to(x.dtype).expand_as(x)
    return (w * x).sum() / w.sum()


def mse(pred: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean squared error over all elements; with per-ray `weights` [R, 1] their weighted mean."""
    if weights is None:
        return ((pred - target) ** 2).mean()
    return weighted_mean((pred - target) ** 2, weights)


def softl1(pred: Tensor, target: Tensor, eps: float, weights: Tensor | None = None) -> Tensor:
    """Charbonnier / soft-L1 loss `mean(sqrt(e^2 + eps))` over all elements (the legacy training loss;
    `metrics.psnr_softl1` reports the matching figure); with per-ray `weights` [R, 1] their weighted mean."""
    if weights is None:
        return torch.sqrt((pred - target) ** 2 + eps).mean()
    return weighted_mean(torch.sqrt((pred - target) ** 2 + eps), weights)


def outer_bound(t_query: Tensor, t_src: Tensor, w_src: Tensor) -> Tensor:
    """Outer measure of the step function `(t_src, w_src)` on the intervals of `t_query`.

    For every query interval `[a, b]` the sum of `w_src[k]` over source intervals `[c_k, d_k]` that
    overlap it, with touching counted as overlap (`c_k <= b` and `d_k >= a`); mip-NeRF 360 eq. 12-13.
    Computed in O((N + M) log M) from the cumulative sum of `w_src` and two binary searches.

    Args:
        t_query: [..., N+1] sorted endpoints of the intervals to bound.
        t_src: [..., M+1] sorted source endpoints (same leading shape as t_query).
        w_src: [..., M] non-negative source weights.

    Returns:
        [..., N] the bound for every query interval (differentiable in `w_src`).
    """
    # k counts iff c_k <= b: the first `hi` source intervals start at or before b.
    hi = torch.searchsorted(t_src[..., :-1].contiguous(), t_query[..., 1:].contiguous(), right=True)
    # k is excluded iff d_k < a: the first `lo` source intervals end strictly before a.
    lo = torch.searchsorted(t_src[..., 1:].contiguous(), t_query[..., :-1].contiguous(), right=False)
    cw = torch.cat([torch.zeros_like(w_src[..., :1]), torch.cumsum(w_src, dim=-1)], dim=-1)
    return torch.gather(cw, -1, hi) - torch.gather(cw, -1, lo)


def interlevel_loss(
    t_nerf: Tensor, w_nerf: Tensor, t_prop: Tensor, w_prop: Tensor, eps: float = INTERLEVEL_EPS
) -> Tensor:
    """Proposal loss (mip-NeRF 360 eq. 13): the proposal weights must bound the NeRF weights from above.

    `max(0, w_i - bound_i)^2 / (w_i + eps)` with `bound = outer_bound(t_nerf, t_prop, w_prop)`, averaged
    over rays and NeRF intervals like multinerf's `mean(lossfun_outer(...))`, so that the paper's weight
    (1) means the same here (a per-ray sum would be N times larger). Gradients are stopped on the NeRF
    side (`t_nerf`, `w_nerf` are detached here), so only the proposal network learns from it.

    Args:
        t_nerf: [R, N+1], w_nerf: [R, N] the NeRF histogram.
        t_prop: [R, M+1], w_prop: [R, M] one proposal level's histogram.
        eps: keeps the ratio finite at w = 0.

    Returns:
        scalar, mean over rays and NeRF intervals.
    """
    t_nerf, w_nerf = t_nerf.detach(), w_nerf.detach()
    bound = outer_bound(t_nerf, t_prop, w_prop)
    per_interval = torch.clamp_min(w_nerf - bound, 0) ** 2 / (w_nerf + eps)
    return per_interval.mean()


def distortion_loss(s: Tensor, w: Tensor) -> Tensor:
    """Distortion regulariser (mip-NeRF 360 eq. 15), linear-time form.

    `sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_{i+1} - s_i)` with midpoints `m`; it equals
    `int int W(u) W(v) |u - v| du dv` of the step function `W = w_i / (s_{i+1} - s_i)`. Since `s` is
    sorted, `sum_ij w_i w_j |m_i - m_j| = 2 sum_i w_i (m_i W_{<i} - (w m)_{<i})` with exclusive cumsums.

    Args:
        s: [R, N+1] sorted normalised distances in [0, 1].
        w: [R, N] weights.

    Returns:
        scalar, mean over rays.
    """
    mid = (s[..., 1:] + s[..., :-1]) / 2
    wm = w * mid
    w_before = torch.cumsum(w, dim=-1) - w
    wm_before = torch.cumsum(wm, dim=-1) - wm
    inter = 2 * (w * (mid * w_before - wm_before)).sum(dim=-1)
    intra = (w**2 * (s[..., 1:] - s[..., :-1])).sum(dim=-1) / 3
    return (inter + intra).mean()


def _per_sample_dirs(viewdirs: Tensor, normals: Tensor) -> Tensor:
    """Broadcast per-ray directions [R, 3] against per-sample normals [R, N, 3]."""
    return viewdirs[..., None, :] if viewdirs.dim() == normals.dim() - 1 else viewdirs


def orientation_loss(weights: Tensor, normals: Tensor, viewdirs: Tensor) -> Tensor:
    """Ref-NeRF eq. 9: penalise visible normals that face away from the camera.

    `sum_i w_i max(0, n_i . d)^2` with `d` the unit view direction pointing from the camera into the
    scene (a normal facing the camera has `n . d < 0` and costs nothing). Differentiable in the weights
    too (multinerf stops no gradient; pass detached weights to train the normals only).

    Args:
        weights: [R, N]; normals: [R, N, 3] unit normals; viewdirs: [R, 3] (or [R, N, 3]) unit directions.

    Returns:
        scalar, mean over rays.
    """
    n_dot_d = (normals * _per_sample_dirs(viewdirs, normals)).sum(dim=-1)
    return (weights * torch.clamp_min(n_dot_d, 0) ** 2).sum(dim=-1).mean()


def pred_normal_loss(weights: Tensor, normals: Tensor, pred_normals: Tensor) -> Tensor:
    """Ref-NeRF eq. 10: tie the predicted normals to the density-gradient normals.

    `sum_i w_i (1 - n_i . n'_i)` for unit `normals` n (from the density) and `pred_normals` n';
    differentiable in all three (as in multinerf).

    Args:
        weights: [R, N]; normals, pred_normals: [R, N, 3].

    Returns:
        scalar, mean over rays.
    """
    return (weights * (1 - (normals * pred_normals).sum(dim=-1))).sum(dim=-1).mean()
