"""Volume rendering: weights, compositing (colour, opacity, depth, normals), resampling weight blur.

Notation: `t [R, N+1]` sorted interval endpoints along each ray, `directions [R, 3]` unnormalised
(camera z component = -1, so `t` is camera z-depth), `weights [R, N]` sum to <= 1 along the last axis.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Floor on the accumulated opacity when normalising the expected depth: a ray that hits nothing
# (acc = 0) gets a finite depth that is then clipped to the ray's range, never NaN.
DEPTH_ACC_EPS = 1e-10
# Floor on |grad sigma| when normalising density gradients into normals (flat density -> zero normal).
NORMAL_GRAD_EPS = 1e-10


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
    transmittance = torch.exp(-torch.cat([torch.zeros_like(optical_depth[..., :1]), optical_depth], dim=-1))
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
