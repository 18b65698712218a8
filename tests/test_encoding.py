"""Encodings against closed forms, Monte-Carlo estimates and scipy's spherical harmonics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch

from nerfpipe.encoding import (
    cast_rays,
    conical_frustum_to_gaussian,
    ide_lm_pairs,
    ide_output_dim,
    integrated_dir_enc,
    integrated_pos_enc,
    linear_to_srgb,
    reflect,
    sph_harm_basis,
)

F64 = torch.float64


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def _random_dirs(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return _unit(torch.randn(n, 3, dtype=F64, generator=g))


def _perp_basis(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to d and to each other."""
    d_hat = d / np.linalg.norm(d)
    helper = np.array([1.0, 0.0, 0.0]) if abs(d_hat[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(d_hat, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(d_hat, e1)


def _sample_cone_segment(
    d: np.ndarray, t0: float, t1: float, radius: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Points uniform by volume in {t d + p : t in [t0, t1], p perp d, |p| <= t radius}."""
    # Cross-section area grows as t^2: invert the CDF of the density 3 t^2 / (t1^3 - t0^3).
    t = np.cbrt(t0**3 + rng.random(n) * (t1**3 - t0**3))
    rho = t * radius * np.sqrt(rng.random(n))  # uniform over the disk
    phi = rng.random(n) * 2 * np.pi
    e1, e2 = _perp_basis(d)
    offset = rho[:, None] * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)
    return t[:, None] * d + offset


# ---------------------------------------------------------------------------------------------- frustums


def _frustum_moments_direct(t0: float, t1: float, radius: float) -> tuple[float, float, float]:
    """mip-NeRF eq. 5-6 in the direct (cancellation-prone, but fine in float64) form."""
    mean_t = 3 * (t1**4 - t0**4) / (4 * (t1**3 - t0**3))
    e_t2 = 3 * (t1**5 - t0**5) / (5 * (t1**3 - t0**3))
    return mean_t, e_t2 - mean_t**2, radius**2 * e_t2 / 4


@pytest.mark.parametrize("t0,t1", [(2.0, 2.5), (0.0, 1.0), (1.0, 4.0), (5.9, 6.0)])
def test_frustum_gaussian_matches_direct_moments(t0: float, t1: float) -> None:
    d = torch.tensor([0.3, -0.2, -1.0], dtype=F64)
    radius = 0.05
    mean, cov = conical_frustum_to_gaussian(
        d, torch.tensor([t0], dtype=F64), torch.tensor([t1], dtype=F64), torch.tensor([radius], dtype=F64)
    )
    mean_t, var_t, var_r = _frustum_moments_direct(t0, t1, radius)
    d_np = d.numpy()
    expected_cov = var_t * d_np**2 + var_r * (1 - d_np**2 / (d_np**2).sum())
    np.testing.assert_allclose(mean[0].numpy(), mean_t * d_np, rtol=1e-12)
    np.testing.assert_allclose(cov[0].numpy(), expected_cov, rtol=1e-9)


@pytest.mark.parametrize("t0,t1,radius", [(2.0, 3.0, 0.2), (0.5, 4.0, 0.1), (1.0, 1.2, 0.5)])
def test_frustum_gaussian_matches_sampled_cone(t0: float, t1: float, radius: float) -> None:
    rng = np.random.default_rng(0)
    d = np.array([0.4, 0.25, -1.0])  # unnormalised, as the cameras produce
    pts = _sample_cone_segment(d, t0, t1, radius, 400_000, rng)
    mean, cov = conical_frustum_to_gaussian(
        torch.tensor(d), torch.tensor([t0]), torch.tensor([t1]), torch.tensor([radius])
    )
    mean, cov = mean[0].numpy(), cov[0].numpy()

    spread = np.sqrt(pts.var(axis=0).max())
    np.testing.assert_allclose(pts.mean(axis=0), mean, atol=5 * spread / np.sqrt(len(pts)))
    np.testing.assert_allclose(pts.var(axis=0), cov, rtol=0.02)

    # Along the ray and perpendicular to it, separately (the model: var_t |d|^2 and var_r).
    d_hat = d / np.linalg.norm(d)
    e1, e2 = _perp_basis(d)
    _, var_t, var_r = _frustum_moments_direct(t0, t1, radius)
    np.testing.assert_allclose((pts @ d_hat).var(), var_t * (d**2).sum(), rtol=0.02)
    np.testing.assert_allclose((pts @ e1).var(), var_r, rtol=0.02)
    np.testing.assert_allclose((pts @ e2).var(), var_r, rtol=0.02)


def test_frustum_gaussian_stable_in_float32_far_from_origin() -> None:
    """Thin intervals far away: the stable form keeps float32 accurate (the direct form loses it all)."""
    t0 = torch.tensor([100.0, 1000.0, 3.0], dtype=F64)
    t1 = t0 + torch.tensor([0.01, 0.1, 1e-3], dtype=F64)
    d = torch.tensor([0.1, 0.2, -1.0], dtype=F64)
    r = torch.tensor([0.01], dtype=F64)
    m64, c64 = conical_frustum_to_gaussian(d, t0, t1, r)
    m32, c32 = conical_frustum_to_gaussian(d.float(), t0.float(), t1.float(), r.float())
    np.testing.assert_allclose(m32.double().numpy(), m64.numpy(), rtol=1e-5)
    np.testing.assert_allclose(c32.double().numpy(), c64.numpy(), rtol=1e-3)
    assert (c32 > 0).all()


def test_cast_rays_shapes_and_origin_offset() -> None:
    g = torch.Generator().manual_seed(1)
    rays, n = 5, 7
    t = torch.sort(2 + 4 * torch.rand(rays, n + 1, dtype=F64, generator=g), dim=-1).values
    origins = torch.randn(rays, 3, dtype=F64, generator=g)
    dirs = torch.randn(rays, 3, dtype=F64, generator=g)
    radii = torch.rand(rays, 1, dtype=F64, generator=g) * 0.01
    means, cov = cast_rays(t, origins, dirs, radii)
    assert means.shape == (rays, n, 3) and cov.shape == (rays, n, 3)
    for r in range(rays):
        m_r, c_r = conical_frustum_to_gaussian(dirs[r], t[r, :-1], t[r, 1:], radii[r])
        torch.testing.assert_close(means[r], m_r + origins[r])
        torch.testing.assert_close(cov[r], c_r)
    # Midpoint-ish: the frustum mean lies inside the interval, slightly beyond the midpoint (volume grows).
    t_mean = ((means - origins[:, None]) * dirs[:, None]).sum(-1) / (dirs**2).sum(-1, keepdim=True)
    assert ((t_mean >= (t[:, :-1] + t[:, 1:]) / 2 - 1e-12) & (t_mean <= t[:, 1:])).all()


def test_frustum_gradcheck() -> None:
    g = torch.Generator().manual_seed(2)
    d = torch.randn(2, 3, dtype=F64, generator=g, requires_grad=True)
    t0 = (1 + torch.rand(2, 3, dtype=F64, generator=g)).requires_grad_()
    t1 = (t0.detach() + 0.5).requires_grad_()
    r = (0.1 * torch.rand(2, 1, dtype=F64, generator=g)).requires_grad_()
    assert torch.autograd.gradcheck(conical_frustum_to_gaussian, (d, t0, t1, r))


# ---------------------------------------------------------------------------------------------- IPE


def _pe_features(x: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """Reference PE without the identity, in the IPE layout: [sin(2^k x_c) (k-major), cos(...)]."""
    scaled = torch.cat([x * 2.0**k for k in range(num_freqs)], dim=-1)
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=-1)


def test_ipe_equals_monte_carlo_expectation_of_pe() -> None:
    g = torch.Generator().manual_seed(3)
    mean = torch.tensor([[0.3, -1.2, 0.7], [2.0, 0.1, -0.4]], dtype=F64)
    var = torch.tensor([[0.05, 0.01, 0.2], [0.002, 0.08, 0.03]], dtype=F64)
    num_freqs, n = 4, 200_000
    ipe = integrated_pos_enc(mean, var, num_freqs)
    assert ipe.shape == (2, 2 * 3 * num_freqs)
    samples = mean + var.sqrt() * torch.randn(n, *mean.shape, dtype=F64, generator=g)
    mc = _pe_features(samples, num_freqs).mean(dim=0)
    # Each feature is bounded by 1, so its MC standard error is <= 1/sqrt(n); allow 5 of them.
    torch.testing.assert_close(ipe, mc, atol=5 / math.sqrt(n), rtol=0)
    # The damping matters at these variances (guards against a test that cannot fail).
    assert (ipe - _pe_features(mean, num_freqs)).abs().max() > 0.3


def test_ipe_zero_variance_is_plain_pe_layout() -> None:
    mean = torch.tensor([[0.5, -0.25, 1.5]], dtype=F64)
    ipe = integrated_pos_enc(mean, torch.zeros_like(mean), 3)
    c = 3
    for k in range(3):
        for ch in range(c):
            assert ipe[0, k * c + ch] == pytest.approx(math.sin(2**k * mean[0, ch].item()))
            assert ipe[0, 3 * c + k * c + ch] == pytest.approx(math.cos(2**k * mean[0, ch].item()))


def test_ipe_gradcheck() -> None:
    g = torch.Generator().manual_seed(4)
    mean = torch.randn(3, 2, dtype=F64, generator=g, requires_grad=True)
    var = torch.rand(3, 2, dtype=F64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(lambda m, v: integrated_pos_enc(m, v, 3), (mean, var))


# ---------------------------------------------------------------------------------------------- IDE


def _scipy_sph_harm(dirs: torch.Tensor, deg_view: int) -> np.ndarray:
    """Y_l^m via scipy: sph_harm_y(n=l, m, theta=polar, phi=azimuth)."""
    d = dirs.numpy()
    theta = np.arccos(np.clip(d[:, 2], -1, 1))
    phi = np.arctan2(d[:, 1], d[:, 0])
    return np.stack([scipy.special.sph_harm_y(l, m, theta, phi) for l, m in ide_lm_pairs(deg_view)], -1)


@pytest.mark.parametrize("deg_view", [1, 3, 5])
def test_ide_zero_roughness_is_spherical_harmonics(deg_view: int) -> None:
    dirs = _random_dirs(300, seed=5)
    dirs[0] = torch.tensor([0.0, 0.0, 1.0])  # poles and the equator are the awkward spots
    dirs[1] = torch.tensor([0.0, 0.0, -1.0])
    dirs[2] = torch.tensor([0.0, 1.0, 0.0])
    ide = integrated_dir_enc(dirs, torch.zeros(len(dirs), 1, dtype=F64), deg_view)
    ref = _scipy_sph_harm(dirs, deg_view)
    k = ref.shape[-1]
    assert ide.shape == (len(dirs), ide_output_dim(deg_view)) and ide_output_dim(deg_view) == 2 * k
    np.testing.assert_allclose(ide[:, :k].numpy(), ref.real, atol=1e-10)
    np.testing.assert_allclose(ide[:, k:].numpy(), ref.imag, atol=1e-10)


def test_ide_output_dim() -> None:
    assert ide_output_dim(5) == 2 * (2 + 3 + 5 + 9 + 17) == 72
    assert ide_output_dim(1) == 4
    assert ide_lm_pairs(2) == [(1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]


def test_ide_float32_accuracy_at_degree_16() -> None:
    dirs = _random_dirs(2000, seed=6)
    ref = _scipy_sph_harm(dirs, 5)
    re, im = sph_harm_basis(dirs.float(), 5)
    assert np.abs(re.double().numpy() - ref.real).max() < 5e-5
    assert np.abs(im.double().numpy() - ref.imag).max() < 5e-5


def test_ide_attenuation_per_level() -> None:
    dirs = _random_dirs(50, seed=7)
    rough = torch.rand(50, 1, dtype=F64, generator=torch.Generator().manual_seed(8))
    ide = integrated_dir_enc(dirs, rough, 4)
    plain = integrated_dir_enc(dirs, torch.zeros_like(rough), 4)
    ls = torch.tensor([l for l, _ in ide_lm_pairs(4)] * 2, dtype=F64)
    torch.testing.assert_close(ide, plain * torch.exp(-0.5 * ls * (ls + 1) * rough))


def test_ide_approximates_von_mises_fisher_expectation() -> None:
    """Ref-NeRF eq. 7: E_vMF(mu, kappa)[Y_l^m] ~= exp(-l(l+1)/(2 kappa)) Y_l^m(mu), roughness = 1/kappa."""
    kappa, n = 20.0, 400_000
    rng = np.random.default_rng(9)
    mu = np.array([0.36, -0.48, 0.8])
    # Sample the vMF on S^2: cos angle w = 1 + log(u + (1-u) e^{-2 kappa}) / kappa, uniform azimuth.
    u = rng.random(n)
    w = 1 + np.log(u + (1 - u) * np.exp(-2 * kappa)) / kappa
    phi = rng.random(n) * 2 * np.pi
    e1, e2 = _perp_basis(mu)
    s = np.sqrt(np.clip(1 - w**2, 0, None))
    samples = w[:, None] * mu + s[:, None] * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)
    mc = integrated_dir_enc(torch.tensor(samples), torch.zeros(n, 1, dtype=F64), 2).mean(dim=0)
    ide = integrated_dir_enc(torch.tensor(mu)[None], torch.tensor([[1 / kappa]], dtype=F64), 2)[0]
    # l <= 2: the approximation error at kappa = 20 is < 4e-3 times |Y| <= 0.8.
    torch.testing.assert_close(ide, mc, atol=6e-3, rtol=0)
    plain = integrated_dir_enc(torch.tensor(mu)[None], torch.zeros(1, 1, dtype=F64), 2)[0]
    assert (plain - mc).abs().max() > 0.03  # without attenuation it would not match


def test_ide_gradients_finite_at_poles_and_gradcheck() -> None:
    dirs = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]], dtype=F64, requires_grad=True)
    rough = torch.zeros(3, 1, dtype=F64, requires_grad=True)
    integrated_dir_enc(dirs, rough, 5).sum().backward()
    assert torch.isfinite(dirs.grad).all() and torch.isfinite(rough.grad).all()

    d = _random_dirs(3, seed=10).requires_grad_()
    r = torch.rand(3, 1, dtype=F64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: integrated_dir_enc(a, b, 3), (d, r))


def test_sph_harm_rejects_unsupported_degree() -> None:
    with pytest.raises(ValueError, match="deg_view"):
        sph_harm_basis(_random_dirs(2, seed=0), 6)


# ---------------------------------------------------------------------------------------------- reflect


def test_reflect_closed_cases() -> None:
    n = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    # Head-on: the reflection goes straight back to the camera.
    torch.testing.assert_close(reflect(torch.tensor([0.0, 0.0, -1.0], dtype=F64), n), n)
    # 45 degrees: the tangential part continues, the normal part flips.
    v = _unit(torch.tensor([1.0, 0.0, -1.0], dtype=F64))
    torch.testing.assert_close(reflect(v, n), _unit(torch.tensor([1.0, 0.0, 1.0], dtype=F64)))
    # Grazing: a view direction in the tangent plane is unchanged.
    torch.testing.assert_close(reflect(torch.tensor([0.0, 1.0, 0.0], dtype=F64), n),
                               torch.tensor([0.0, 1.0, 0.0], dtype=F64))


def test_reflect_involution_angle_equality_coplanarity() -> None:
    v = _random_dirs(100, seed=11)
    n = _random_dirs(100, seed=12)
    r = reflect(v, n)
    omega_o = -v
    # Reflecting the reflected direction gives back omega_o.
    torch.testing.assert_close(reflect(-r, n), omega_o)
    # Same length, same angle to the normal, and in the plane of omega_o and n.
    torch.testing.assert_close(r.norm(dim=-1), torch.ones(100, dtype=F64))
    torch.testing.assert_close((r * n).sum(-1), (omega_o * n).sum(-1))
    det = torch.linalg.det(torch.stack([r, omega_o, n], dim=-2))
    torch.testing.assert_close(det, torch.zeros(100, dtype=F64), atol=1e-12, rtol=0)
    # And it is not the identity (omega_o . n != +-1 almost surely).
    assert (r - omega_o).norm(dim=-1).max() > 0.5


# ---------------------------------------------------------------------------------------------- sRGB


def test_linear_to_srgb_matches_standard_curve() -> None:
    x = np.concatenate([np.linspace(0, 0.01, 101), np.linspace(0.01, 1, 200)])
    expected = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    got = linear_to_srgb(torch.tensor(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert got[0] == 0 and got[-1] == pytest.approx(1.0, abs=1e-12)
    # Continuous at the knee and monotone.
    knee = linear_to_srgb(torch.tensor([0.0031308, 0.0031308 + 1e-9], dtype=F64))
    assert abs(knee[1] - knee[0]) < 1e-6
    assert (np.diff(got) >= 0).all()


def test_linear_to_srgb_gradient_finite_at_zero_and_below() -> None:
    x = torch.tensor([-0.5, 0.0, 1e-12, 0.5], dtype=torch.float32, requires_grad=True)
    linear_to_srgb(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[1] == pytest.approx(12.92)
