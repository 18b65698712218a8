"""Losses against brute force, quadrature and hand computation; finite gradients at edge inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerfpipe.losses import (
    distortion_loss,
    interlevel_loss,
    mse,
    orientation_loss,
    outer_bound,
    pred_normal_loss,
    softl1,
)

F64 = torch.float64


def _random_histogram(rays: int, n: int, g: torch.Generator, lo: float = 2.0, hi: float = 6.0):
    t = torch.sort(lo + (hi - lo) * torch.rand(rays, n + 1, dtype=F64, generator=g), dim=-1).values
    w = torch.rand(rays, n, dtype=F64, generator=g)
    return t, w / w.sum(-1, keepdim=True) * 0.9


def _brute_outer_bound(t_query: torch.Tensor, t_src: torch.Tensor, w_src: torch.Tensor) -> np.ndarray:
    """Loop: sum of source weights whose interval [c, d] meets the query interval [a, b] (touching counts)."""
    tq, ts, ws = t_query.numpy(), t_src.numpy(), w_src.numpy()
    out = np.zeros(tq.shape[:-1] + (tq.shape[-1] - 1,))
    for r in range(tq.shape[0]):
        for i in range(tq.shape[1] - 1):
            a, b = tq[r, i], tq[r, i + 1]
            for k in range(ws.shape[1]):
                if ts[r, k] <= b and ts[r, k + 1] >= a:
                    out[r, i] += ws[r, k]
    return out


# ---------------------------------------------------------------------------------------------- simple


def test_mse_and_softl1_hand_computation() -> None:
    pred = torch.tensor([[0.0, 0.5], [1.0, 0.25]], dtype=F64)
    target = torch.tensor([[0.5, 0.5], [0.0, 0.0]], dtype=F64)
    err = [0.5, 0.0, 1.0, 0.25]
    assert mse(pred, target).item() == pytest.approx(sum(e * e for e in err) / 4)
    eps = 1e-3
    assert softl1(pred, target, eps).item() == pytest.approx(sum(math.sqrt(e * e + eps) for e in err) / 4)


# ---------------------------------------------------------------------------------------------- interlevel


def test_outer_bound_equals_brute_force_overlap_sum() -> None:
    g = torch.Generator().manual_seed(0)
    t_nerf, _ = _random_histogram(6, 17, g, lo=1.5, hi=6.5)  # reaches outside the proposal's range
    t_prop, w_prop = _random_histogram(6, 9, g)
    bound = outer_bound(t_nerf, t_prop, w_prop)
    np.testing.assert_allclose(bound.numpy(), _brute_outer_bound(t_nerf, t_prop, w_prop), atol=1e-12)


def test_outer_bound_exact_ties_and_nesting() -> None:
    t_src = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=F64)
    w_src = torch.tensor([[0.1, 0.2, 0.4]], dtype=F64)
    # Query intervals sharing endpoints with the source, one inside a bin, one covering everything,
    # one beyond the end.
    t_query = torch.tensor([[0.0, 1.0, 1.2, 1.5, 3.0, 4.0]], dtype=F64)
    bound = outer_bound(t_query, t_src, w_src)
    np.testing.assert_allclose(bound.numpy(), _brute_outer_bound(t_query, t_src, w_src), atol=1e-15)
    # [0,1] meets bins 0 and 1 (bin 1 only at 1); [1,1.2] touches bin 0 at 1 and lies in bin 1;
    # [1.2,1.5] is inside bin 1; [1.5,3] meets bins 1 and 2; [3,4] touches bin 2 only at 3.
    np.testing.assert_allclose(bound.numpy()[0], [0.3, 0.3, 0.2, 0.6, 0.4], atol=1e-15)
    # The same histogram bounds itself.
    assert (outer_bound(t_src, t_src, w_src) >= w_src).all()


def test_interlevel_loss_matches_formula_and_stops_nerf_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    t_nerf, w_nerf = _random_histogram(4, 24, g)
    t_prop, w_prop = _random_histogram(4, 8, g)
    w_prop = (w_prop * 0.3).requires_grad_()  # too small: violations guaranteed
    t_nerf.requires_grad_()
    w_nerf.requires_grad_()
    loss = interlevel_loss(t_nerf, w_nerf, t_prop, w_prop)

    bound = _brute_outer_bound(t_nerf.detach(), t_prop, w_prop.detach())
    w = w_nerf.detach().numpy()
    # multinerf: mean(lossfun_outer(...)), a mean over rays and NeRF intervals.
    expected = (np.maximum(0, w - bound) ** 2 / (w + 1e-7)).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    assert loss.item() > 0

    loss.backward()
    assert t_nerf.grad is None and w_nerf.grad is None  # stopped on the NeRF side
    # Raising any proposal weight can only loosen the bound (up to cumsum round-off).
    assert w_prop.grad is not None and (w_prop.grad <= 1e-12).all() and w_prop.grad.abs().sum() > 0


def test_interlevel_loss_zero_when_proposal_covers() -> None:
    g = torch.Generator().manual_seed(2)
    t, w = _random_histogram(3, 10, g)
    assert interlevel_loss(t, w, t, w).item() == 0.0
    # A proposal with all the mass in one bin covering the whole ray bounds anything summing to <= 1.
    t_wide = torch.tensor([[2.0, 6.0]] * 3, dtype=F64)
    assert interlevel_loss(t, w, t_wide, torch.ones(3, 1, dtype=F64)).item() == 0.0


# ---------------------------------------------------------------------------------------------- distortion


def _distortion_quadrature(s: np.ndarray, w: np.ndarray, cells: int) -> float:
    """Midpoint-rule double integral of W(u) W(v) |u - v| over [0, 1]^2, W = w_i / (s_{i+1} - s_i).

    `s` must lie on the grid k / cells so that every cell sits inside one step; the diagonal cells,
    where |u - v| is not linear, get their exact integral W^2 h^3 / 3.
    """
    h = 1.0 / cells
    u = (np.arange(cells) + 0.5) * h
    idx = np.clip(np.searchsorted(s, u, side="right") - 1, 0, len(w) - 1)
    inside = (u >= s[0]) & (u < s[-1])
    density = np.where(inside, w[idx] / (s[idx + 1] - s[idx]), 0.0)
    off_diag = (density[:, None] * density[None, :] * np.abs(u[:, None] - u[None, :])).sum() * h * h
    return off_diag + (density**2).sum() * h**3 / 3


def test_distortion_equals_double_integral_by_quadrature() -> None:
    rng = np.random.default_rng(3)
    cells = 1200
    for _ in range(3):
        n = 7
        s = np.sort(rng.choice(np.arange(1, cells), size=n - 1, replace=False)) / cells
        s = np.concatenate([[0.0], s, [1.0]])
        w = rng.random(n)
        w = w / w.sum() * 0.95
        expected = _distortion_quadrature(s, w, cells)
        got = distortion_loss(torch.tensor(s)[None], torch.tensor(w)[None]).item()
        assert got == pytest.approx(expected, rel=1e-9)


def test_distortion_matches_quadratic_pairwise_form() -> None:
    g = torch.Generator().manual_seed(4)
    s, w = _random_histogram(5, 33, g, lo=0.0, hi=1.0)
    mid = (s[:, 1:] + s[:, :-1]) / 2
    pairwise = (w[:, :, None] * w[:, None, :] * (mid[:, :, None] - mid[:, None, :]).abs()).sum((1, 2))
    intra = (w**2 * (s[:, 1:] - s[:, :-1])).sum(-1) / 3
    torch.testing.assert_close(distortion_loss(s, w), (pairwise + intra).mean())


def test_distortion_closed_forms() -> None:
    # One interval [a, b] holding weight w: int int (w/(b-a))^2 |u - v| = w^2 (b - a) / 3.
    s = torch.tensor([[0.2, 0.7]], dtype=F64)
    assert distortion_loss(s, torch.tensor([[0.8]], dtype=F64)).item() == pytest.approx(0.64 * 0.5 / 3)
    # Two tiny far-apart intervals: ~ 2 w1 w2 |m1 - m2|.
    s = torch.tensor([[0.0, 1e-6, 0.5, 1.0 - 1e-6, 1.0]], dtype=F64)
    w = torch.tensor([[0.5, 0.0, 0.0, 0.5]], dtype=F64)
    assert distortion_loss(s, w).item() == pytest.approx(2 * 0.25 * (1 - 1e-6), rel=1e-6)


# ---------------------------------------------------------------------------------------------- Ref-NeRF


def test_orientation_loss_closed_cases() -> None:
    viewdirs = torch.tensor([[0.0, 0.0, -1.0]], dtype=F64)
    w = torch.tensor([[0.3, 0.5]], dtype=F64)
    facing = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]], dtype=F64)  # towards camera / sideways
    assert orientation_loss(w, facing, viewdirs).item() == 0.0
    away = torch.tensor([[[0.0, 0.0, -1.0], [0.0, 0.6, -0.8]]], dtype=F64)  # n . d = 1 and 0.8
    assert orientation_loss(w, away, viewdirs).item() == pytest.approx(0.3 * 1.0 + 0.5 * 0.64)
    # Per-sample directions [R, N, 3] give the same answer.
    assert orientation_loss(w, away, viewdirs[:, None].expand(1, 2, 3)).item() == pytest.approx(0.62)


def test_pred_normal_loss_closed_cases() -> None:
    w = torch.tensor([[0.2, 0.7], [0.1, 0.0]], dtype=F64)
    n = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]] * 2, dtype=F64)
    assert pred_normal_loss(w, n, n).item() == pytest.approx(0.0)
    # Opposite normals cost 2 w each; perpendicular ones cost w.
    assert pred_normal_loss(w, n, -n).item() == pytest.approx((2 * 0.9 + 2 * 0.1) / 2)
    perp = torch.tensor([[[0.0, 0.0, 1.0]] * 2] * 2, dtype=F64)
    assert pred_normal_loss(w, n, perp).item() == pytest.approx((0.9 + 0.1) / 2)


# ---------------------------------------------------------------------------------------------- edges


@pytest.mark.parametrize("n", [1, 6])
@pytest.mark.parametrize("zero_weights", [True, False])
def test_every_loss_has_finite_gradients_at_edge_inputs(n: int, zero_weights: bool) -> None:
    g = torch.Generator().manual_seed(5)
    rays = 3
    t, w = _random_histogram(rays, n, g)
    if zero_weights:
        w = torch.zeros_like(w)
    s = (t - 2) / 4
    normals = torch.nn.functional.normalize(torch.randn(rays, n, 3, dtype=F64, generator=g), dim=-1)
    pred = torch.nn.functional.normalize(torch.randn(rays, n, 3, dtype=F64, generator=g), dim=-1)
    viewdirs = torch.nn.functional.normalize(torch.randn(rays, 3, dtype=F64, generator=g), dim=-1)
    rgb = torch.rand(rays, 3, dtype=F64, generator=g)
    leaves = [x.clone().requires_grad_() for x in (w, s, normals, pred, rgb)]
    w_, s_, normals_, pred_, rgb_ = leaves
    t_prop = t.clone().requires_grad_()
    losses = [
        mse(rgb_, torch.zeros_like(rgb)),
        softl1(rgb_, rgb.detach(), 1e-3),  # zero error: sqrt(eps) keeps it smooth
        interlevel_loss(t, w, t_prop, w_),
        interlevel_loss(t, w_ * 0 + 0.5, t_prop, w_),
        distortion_loss(s_, w_),
        orientation_loss(w_, normals_, viewdirs),
        pred_normal_loss(w_, normals_, pred_),
    ]
    for loss in losses:
        assert torch.isfinite(loss)
    torch.stack(losses).sum().backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


def test_distortion_and_interlevel_gradcheck() -> None:
    g = torch.Generator().manual_seed(6)
    s, w = _random_histogram(2, 5, g, lo=0.0, hi=1.0)
    assert torch.autograd.gradcheck(distortion_loss, (s.requires_grad_(), w.requires_grad_()))
    t_nerf, w_nerf = _random_histogram(2, 7, g)
    t_prop, w_prop = _random_histogram(2, 4, g)
    assert torch.autograd.gradcheck(
        lambda wp: interlevel_loss(t_nerf, w_nerf, t_prop, wp), ((w_prop * 0.2).requires_grad_(),)
    )
