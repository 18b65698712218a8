"""Volume rendering against closed forms and brute-force loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerfpipe.render import (
    blur_weights_for_resampling,
    composite,
    composite_normals,
    compute_weights,
    normals_from_density_grad,
)

F64 = torch.float64


def _random_rays(rays: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = torch.sort(2 + 4 * torch.rand(rays, n + 1, dtype=F64, generator=g), dim=-1).values
    t[:, 0], t[:, -1] = 2.0, 6.0
    dirs = torch.randn(rays, 3, dtype=F64, generator=g)
    dirs[:, 2] = -1.0  # camera-style unnormalised directions
    density = torch.rand(rays, n, dtype=F64, generator=g) * 3
    return density, t, dirs


def test_constant_density_closed_form() -> None:
    sigma = 0.7
    density, t, dirs = _random_rays(4, 16, seed=0)
    density = torch.full_like(density, sigma)
    w, trans = compute_weights(density, t, dirs)
    norm = dirs.norm(dim=-1, keepdim=True)
    # T_i = exp(-sigma (t_i - near) |d|), w_i = T_i (1 - exp(-sigma delta_i)).
    expected_trans = torch.exp(-sigma * (t[:, :-1] - t[:, :1]) * norm)
    expected_w = expected_trans * (1 - torch.exp(-sigma * (t[:, 1:] - t[:, :-1]) * norm))
    torch.testing.assert_close(trans, expected_trans)
    torch.testing.assert_close(w, expected_w)
    # acc = 1 - exp(-sigma (far - near) |d|), whatever the partition of [near, far].
    torch.testing.assert_close(w.sum(-1), 1 - torch.exp(-sigma * 4.0 * norm[:, 0]))


def test_weights_match_product_loop_and_sum_to_at_most_one() -> None:
    density, t, dirs = _random_rays(6, 32, seed=1)
    w, trans = compute_weights(density, t, dirs)
    for r in range(6):
        delta = (t[r, 1:] - t[r, :-1]) * dirs[r].norm()
        transmitted = 1.0
        for i in range(32):
            alpha = 1 - np.exp(-density[r, i].item() * delta[i].item())
            assert trans[r, i].item() == pytest.approx(transmitted, rel=1e-12)
            assert w[r, i].item() == pytest.approx(transmitted * alpha, rel=1e-12, abs=1e-300)
            transmitted *= 1 - alpha
        # acc = 1 - final transmittance.
        assert w[r].sum().item() == pytest.approx(1 - transmitted, rel=1e-12)
    assert (w >= 0).all() and (w.sum(-1) <= 1).all()


def test_weights_saturate_without_nan() -> None:
    density, t, dirs = _random_rays(3, 8, seed=2)
    density = density * 1e6
    w, _ = compute_weights(density, t, dirs)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(3, dtype=F64))
    torch.testing.assert_close(w[:, 0], torch.ones(3, dtype=F64))  # all light stops in the first bin


def test_composite_with_background_closed_form() -> None:
    density, t, dirs = _random_rays(5, 12, seed=3)
    w, _ = compute_weights(density, t, dirs)
    g = torch.Generator().manual_seed(4)
    rgb = torch.rand(5, 12, 3, dtype=F64, generator=g)
    bg = torch.tensor([1.0, 0.5, 0.0], dtype=F64)
    out = composite(rgb, w, t, bg)
    acc = w.sum(-1)
    torch.testing.assert_close(out["acc"], acc)
    torch.testing.assert_close(out["rgb"], (w[..., None] * rgb).sum(1) + bg * (1 - acc[:, None]))
    t_mid = (t[:, 1:] + t[:, :-1]) / 2
    torch.testing.assert_close(out["depth"], (w * t_mid).sum(-1) / acc)
    # A per-ray background [R, 3] gives the same answer as the broadcast one.
    torch.testing.assert_close(composite(rgb, w, t, bg.expand(5, 3))["rgb"], out["rgb"])


def test_composite_empty_ray_and_opaque_spike() -> None:
    t = torch.tensor([[2.0, 3.0, 4.0, 6.0], [2.0, 3.0, 4.0, 6.0]], dtype=F64)
    rgb = torch.tensor([[[0.1, 0.2, 0.3]] * 3] * 2, dtype=F64)
    rgb[1, 1] = torch.tensor([0.9, 0.8, 0.7], dtype=F64)
    w = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64, requires_grad=True)
    bg = torch.tensor([1.0, 1.0, 1.0], dtype=F64)
    out = composite(rgb, w, t, bg)
    # Empty ray: background colour, zero opacity, depth at the near end (finite, no NaN).
    torch.testing.assert_close(out["rgb"][0], bg)
    assert out["acc"][0].item() == 0 and out["depth"][0].item() == 2.0
    # Opaque spike: its colour, its midpoint.
    torch.testing.assert_close(out["rgb"][1], rgb[1, 1])
    assert out["depth"][1].item() == pytest.approx(3.5)
    sum(v.sum() for v in out.values()).backward()
    assert torch.isfinite(w.grad).all()


def test_depth_clipped_to_ray_range() -> None:
    t = torch.tensor([[2.0, 4.0, 6.0]], dtype=F64)
    w = torch.tensor([[1e-30, 0.0]], dtype=F64)  # acc below the floor: the ratio would undershoot
    depth = composite(torch.zeros(1, 2, 3, dtype=F64), w, t, torch.zeros(3, dtype=F64))["depth"]
    assert 2.0 <= depth.item() <= 6.0


def test_composite_normals_weighted_sum() -> None:
    g = torch.Generator().manual_seed(5)
    normals = torch.randn(3, 4, 3, dtype=F64, generator=g)
    w = torch.rand(3, 4, dtype=F64, generator=g) / 4
    expected = torch.stack([sum(w[r, i] * normals[r, i] for i in range(4)) for r in range(3)])
    torch.testing.assert_close(composite_normals(normals, w), expected)


def test_blur_weights_hand_example() -> None:
    w = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.2, 0.1, 0.4, 0.3]], dtype=F64)
    # Row 0: padded [0,0,1,0,0,0] -> pair max [0,1,1,0,0] -> blur [0.5,1,0.5,0].
    # Row 1: padded [.2,.2,.1,.4,.3,.3] -> pair max [.2,.2,.4,.4,.3] -> blur [.2,.3,.4,.35].
    expected = torch.tensor([[0.5, 1.0, 0.5, 0.0], [0.2, 0.3, 0.4, 0.35]], dtype=F64) + 0.01
    torch.testing.assert_close(blur_weights_for_resampling(w, 0.01), expected)


def test_blur_weights_match_loop() -> None:
    w = torch.rand(4, 9, dtype=F64, generator=torch.Generator().manual_seed(6))
    out = blur_weights_for_resampling(w, 0.05)
    n = w.shape[-1]
    for r in range(4):
        for i in range(n):
            left = max(w[r, max(i - 1, 0)], w[r, i])
            right = max(w[r, i], w[r, min(i + 1, n - 1)])
            assert out[r, i].item() == pytest.approx(0.5 * (left + right).item() + 0.05, rel=1e-12)


def test_soft_sphere_density_normals_equal_analytic_normals() -> None:
    """sigma(x) = softplus(k (1 - |x|)) falls off radially, so n = -grad sigma / |grad sigma| = x / |x|."""
    k = 10.0
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(64, 3, dtype=F64, generator=g) * 0.8).requires_grad_()
    sigma = torch.nn.functional.softplus(k * (1 - x.norm(dim=-1)))
    (grad,) = torch.autograd.grad(sigma.sum(), x, create_graph=True)
    n = normals_from_density_grad(grad)
    torch.testing.assert_close(n, (x / x.norm(dim=-1, keepdim=True)).detach())
    # Differentiable: a loss on the normals reaches the points (second-order path).
    (n[:, 0] ** 2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().max() > 0


def test_normals_from_zero_gradient_are_finite() -> None:
    grad = torch.zeros(2, 3, dtype=torch.float32, requires_grad=True)
    n = normals_from_density_grad(grad)
    assert torch.isfinite(n).all() and (n == 0).all()
    n.sum().backward()
    assert torch.isfinite(grad.grad).all()


def test_rendering_gradients_edge_inputs_and_gradcheck() -> None:
    # All-zero density and a single sample per ray: finite gradients everywhere.
    for n in (1, 5):
        density = torch.zeros(2, n, dtype=F64, requires_grad=True)
        t = torch.linspace(2, 6, n + 1, dtype=F64).expand(2, n + 1).clone().requires_grad_()
        dirs = torch.tensor([[0.1, 0.2, -1.0], [0.0, 0.0, -1.0]], dtype=F64, requires_grad=True)
        w, trans = compute_weights(density, t, dirs)
        out = composite(torch.full((2, n, 3), 0.5, dtype=F64), w, t, torch.ones(3, dtype=F64))
        (w.sum() + trans.sum() + sum(v.sum() for v in out.values())).backward()
        for p in (density, t, dirs):
            assert torch.isfinite(p.grad).all()

    density, t, dirs = _random_rays(2, 4, seed=8)
    assert torch.autograd.gradcheck(
        lambda s, d: compute_weights(s, t, d), (density.requires_grad_(), dirs.requires_grad_())
    )


def test_weights_of_a_single_interval_are_its_alpha() -> None:
    """One interval per ray: nothing in front of it, so T = 1 and w = 1 - exp(-sigma delta)."""
    density = torch.tensor([[0.5], [2.0]], dtype=torch.float64)
    t = torch.tensor([[2.0, 3.0], [2.0, 2.5]], dtype=torch.float64)
    directions = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -2.0]], dtype=torch.float64)
    weights, transmittance = compute_weights(density, t, directions)
    assert weights.shape == (2, 1) and transmittance.shape == (2, 1)
    assert torch.equal(transmittance, torch.ones(2, 1, dtype=torch.float64))
    expected = 1 - torch.exp(-torch.tensor([[0.5 * 1.0], [2.0 * 0.5 * 2.0]], dtype=torch.float64))
    torch.testing.assert_close(weights, expected, rtol=0, atol=1e-15)
