"""The torch reference of nerfpipe.sampling against closed forms, brute force and statistics.

Runs without the extension: every test forces the 'torch' backend.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from nerfpipe import encoding_ext, ext_backend, random_keys, sampling
from nerfpipe.errors import NerfpipeError

# Significance level of the distribution tests; keys are fixed, so a pass is deterministic.
ALPHA = 1e-3


@pytest.fixture(autouse=True)
def torch_backend():
    previous = ext_backend._requested
    ext_backend.set_backend("torch")
    yield
    ext_backend.set_backend(previous)


# ------------------------------------------------------------------------------------------------
# Counter-based uniforms


def _mix32_py(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def _uniform_py(key: int, index: int) -> float:
    """Scalar, pure-Python statement of the hash that common.h and random_keys.py implement."""
    k = key % (1 << 64)
    s1 = _mix32_py((k & 0xFFFFFFFF) ^ _mix32_py((k >> 32) ^ 0x9E3779B9))
    s2 = _mix32_py((s1 + 0x632BE5AB) & 0xFFFFFFFF)
    x = _mix32_py((index & 0xFFFFFFFF) ^ s1)
    h = _mix32_py((x + s2 + (index >> 32) * 0x9E3779B9) & 0xFFFFFFFF)
    return (h >> 8) / 2**24


@pytest.mark.parametrize("key", [0, 1, 12345, -7, (1 << 70) + 3, 2**63 - 1])
def test_uniform_matches_scalar_hash(key):
    u = random_keys.uniform(key, 64)
    assert u.dtype == torch.float32 and u.shape == (64,)
    assert u.tolist() == [_uniform_py(key, i) for i in range(64)]


def test_hash_high_index_word():
    seeds = random_keys.key_seeds(99)
    index = torch.tensor([5, 5 + (1 << 32), 5 + (3 << 32)], dtype=torch.int64)
    u = random_keys.hash_uniform(seeds, index)
    assert u.tolist() == [_uniform_py(99, int(i)) for i in index]
    assert len(set(u.tolist())) == 3


def test_uniform_deterministic_range_and_distribution():
    u = random_keys.uniform(2024, 100_000)
    assert torch.equal(u, random_keys.uniform(2024, 100_000))
    assert torch.equal(u[:100], random_keys.uniform(2024, 100))
    assert not torch.equal(u, random_keys.uniform(2025, 100_000))
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    # 24-bit grid: exact multiples of 2^-24.
    scaled = u.double() * 2**24
    assert torch.equal(scaled, scaled.round())
    assert stats.kstest(u.numpy(), "uniform").pvalue > ALPHA
    # Neighbouring keys (the train loop uses key + level) must not be correlated.
    v = random_keys.uniform(2025, 100_000)
    assert abs(np.corrcoef(u.numpy(), v.numpy())[0, 1]) < 0.02


def test_derive_key_mixes():
    keys = {random_keys.derive_key(7, it, s) for it in range(50) for s in range(4)}
    assert len(keys) == 200
    assert random_keys.derive_key(1, 2) == random_keys.derive_key(1, 2)


# ------------------------------------------------------------------------------------------------
# Image batch sampler


def test_ray_indices_uniform_over_all_pixels():
    n_images, h, w, batch = 3, 4, 5, 60_000
    idx = sampling.sample_ray_indices(n_images, h, w, batch, key=11)
    assert idx.dtype == torch.int64 and idx.shape == (batch,)
    assert torch.equal(idx, sampling.sample_ray_indices(n_images, h, w, batch, key=11))
    counts = torch.bincount(idx, minlength=n_images * h * w).numpy()
    assert len(counts) == n_images * h * w and counts.min() > 0
    assert stats.chisquare(counts).pvalue > ALPHA


@pytest.mark.parametrize("frac", [0.5, 0.3])
def test_ray_indices_precrop_inside_centred_crop(frac):
    n_images, h, w = 2, 10, 12
    crop_h, crop_w = round(h * frac), round(w * frac)
    idx = sampling.sample_ray_indices(n_images, h, w, 40_000, key=5, precrop_frac=frac)
    img, rem = idx // (h * w), idx % (h * w)
    y, x = rem // w, rem % w
    y0, x0 = (h - crop_h) // 2, (w - crop_w) // 2
    assert img.min() >= 0 and img.max() < n_images
    assert y.min() == y0 and y.max() == y0 + crop_h - 1
    assert x.min() == x0 and x.max() == x0 + crop_w - 1
    # Uniform over the n_images * crop pixels.
    counts = torch.bincount(idx, minlength=n_images * h * w)
    inside = counts[counts > 0].numpy()
    assert len(inside) == n_images * crop_h * crop_w
    assert stats.chisquare(inside).pvalue > ALPHA


def test_crop_size_and_bad_fraction():
    assert sampling.crop_size(800, 800, 0.5) == (400, 400)
    assert sampling.crop_size(5, 7, 1.0) == (5, 7)
    assert sampling.crop_size(3, 3, 0.01) == (1, 1)
    with pytest.raises(ValueError, match="precrop_frac"):
        sampling.sample_ray_indices(1, 4, 4, 8, key=0, precrop_frac=0.0)
    with pytest.raises(ValueError, match="n_images"):
        sampling.sample_ray_indices(0, 4, 4, 8, key=0)


# ------------------------------------------------------------------------------------------------
# Stratified sampling


def _near_far(rays: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(3)
    near = torch.rand(rays, generator=g, dtype=dtype) * 2
    far = near + 0.5 + torch.rand(rays, generator=g, dtype=dtype) * 4
    return near, far


def test_stratified_deterministic_is_linspace():
    near, far = _near_far(20)
    t = sampling.stratified_endpoints(near, far, 16, randomized=False)
    assert t.shape == (20, 17)
    expected = torch.stack([torch.linspace(float(a), float(b), 17, dtype=torch.float64)
                            for a, b in zip(near, far, strict=True)])
    torch.testing.assert_close(t, expected, rtol=0, atol=1e-12)
    assert torch.equal(t[:, 0], near) and torch.equal(t[:, -1], far)


def test_stratified_randomized_sorted_within_strata():
    near, far = _near_far(50)
    n = 32
    det = sampling.stratified_endpoints(near, far, n, randomized=False)
    t = sampling.stratified_endpoints(near, far, n, randomized=True, key=9)
    assert t.shape == (50, n + 1)
    assert torch.equal(t, sampling.stratified_endpoints(near, far, n, randomized=True, key=9))
    assert not torch.equal(t, sampling.stratified_endpoints(near, far, n, randomized=True, key=10))
    assert (t.diff(dim=-1) >= 0).all()
    assert (t >= near[:, None]).all() and (t <= far[:, None]).all()
    mids = (det[:, 1:] + det[:, :-1]) / 2
    lower = torch.cat([det[:, :1], mids], -1)
    upper = torch.cat([mids, det[:, -1:]], -1)
    assert (t >= lower).all() and (t <= upper).all()


def test_stratified_jitter_is_uniform_in_its_stratum():
    near, far = torch.zeros(4000, dtype=torch.float64), torch.full((4000,), 8.0, dtype=torch.float64)
    t = sampling.stratified_endpoints(near, far, 8, randomized=True, key=1)
    # Interior endpoint j is uniform on [j - 0.5, j + 0.5].
    for j in (1, 4, 7):
        assert stats.kstest(t[:, j].numpy() - (j - 0.5), "uniform").pvalue > ALPHA
    # The end points are uniform on [0, 0.5] and [7.5, 8].
    assert stats.kstest(t[:, 0].numpy() / 0.5, "uniform").pvalue > ALPHA
    assert stats.kstest((t[:, -1].numpy() - 7.5) / 0.5, "uniform").pvalue > ALPHA


def test_stratified_arguments():
    near, far = _near_far(3)
    with pytest.raises(ValueError, match="key"):
        sampling.stratified_endpoints(near, far, 4, randomized=True)
    with pytest.raises(ValueError, match="n_intervals"):
        sampling.stratified_endpoints(near, far, 0, randomized=False)
    with pytest.raises(ValueError, match="near and far"):
        sampling.stratified_endpoints(near, far[:2], 4, randomized=False)
    t = sampling.stratified_endpoints(near[:, None], far[:, None], 4, randomized=False)
    assert t.shape == (3, 5)
    assert sampling.stratified_endpoints(near[:0], far[:0], 4, randomized=False).shape == (0, 5)


# ------------------------------------------------------------------------------------------------
# Inverse-transform sampling


def _inverse_cdf_bruteforce(bins: np.ndarray, weights: np.ndarray, u: np.ndarray, eps: float) -> np.ndarray:
    """Closed-form inverse of the piecewise-linear cdf of one ray, by a loop over the bins."""
    p = (weights + eps) / np.sum(weights + eps)
    cdf = np.concatenate([[0.0], np.cumsum(p)])
    cdf[-1] = 1.0
    out = np.empty_like(u)
    for i, ui in enumerate(u):
        j = int(np.searchsorted(cdf, ui, side="right")) - 1
        j = min(max(j, 0), len(weights) - 1)
        out[i] = bins[j] + (ui - cdf[j]) / (cdf[j + 1] - cdf[j]) * (bins[j + 1] - bins[j])
    return out


def test_sample_pdf_closed_form_deterministic():
    g = torch.Generator().manual_seed(0)
    bins = torch.sort(torch.rand(6, 9, generator=g, dtype=torch.float64) * 5, dim=-1).values
    weights = torch.rand(6, 8, generator=g, dtype=torch.float64) + 0.05
    n = 25
    t = sampling.sample_pdf(bins, weights, n, randomized=False)
    u = (np.arange(n) + 0.5) / n
    for r in range(6):
        expected = _inverse_cdf_bruteforce(bins[r].numpy(), weights[r].numpy(), u, sampling.PDF_EPS)
        np.testing.assert_allclose(t[r].numpy(), expected, rtol=0, atol=1e-12)


def test_sample_pdf_closed_form_stratified_u():
    bins = torch.tensor([[0.0, 1.0, 3.0, 3.5, 6.0]], dtype=torch.float64)
    weights = torch.tensor([[0.1, 0.5, 0.2, 0.2]], dtype=torch.float64)
    n = 40
    t = sampling.sample_pdf(bins, weights, n, randomized=True, key=3)
    u = (np.arange(n) + random_keys.uniform(3, n).double().numpy()) / n
    expected = _inverse_cdf_bruteforce(bins[0].numpy(), weights[0].numpy(), u, sampling.PDF_EPS)
    np.testing.assert_allclose(t[0].numpy(), expected, rtol=0, atol=1e-12)


def test_sample_pdf_empirical_distribution():
    """Samples from many rays with the same pdf follow that pdf (chi-square per bin, KS on the cdf)."""
    edges = np.array([0.0, 1.0, 3.0, 3.5, 6.0, 6.2])
    w = np.array([0.1, 0.5, 0.0, 0.3, 0.1])
    rays, n = 400, 16
    bins = torch.tensor(edges).expand(rays, -1).contiguous()
    weights = torch.tensor(w).expand(rays, -1).contiguous()
    t = sampling.sample_pdf(bins, weights, n, randomized=True, key=77).numpy()
    # One sample per ray from the whole pdf: column i of stratified samples is not iid, so take a random
    # column per ray via the hash to keep the draws independent.
    col = (random_keys.uniform(78, rays).numpy() * n).astype(int)
    draws = t[np.arange(rays), col]
    p = (w + sampling.PDF_EPS) / np.sum(w + sampling.PDF_EPS)
    cdf = np.concatenate([[0.0], np.cumsum(p)])
    assert stats.kstest(draws, lambda x: np.interp(x, edges, cdf)).pvalue > ALPHA
    # All samples together: stratification makes the bin counts match the pdf almost exactly.
    counts = np.histogram(t.ravel(), bins=edges)[0]
    np.testing.assert_allclose(counts / t.size, p, atol=1.0 / n)
    assert stats.chisquare(counts[p > 1e-3], p[p > 1e-3] / p[p > 1e-3].sum() * counts[p > 1e-3].sum()
                           ).pvalue > ALPHA


@pytest.mark.parametrize("randomized", [False, True])
def test_sample_pdf_sorted_inside_bins_and_detached(randomized):
    g = torch.Generator().manual_seed(1)
    bins = torch.sort(torch.rand(64, 33, generator=g) * 4, dim=-1).values
    bins[:, 5] = bins[:, 4]  # a zero-width bin
    weights = torch.rand(64, 32, generator=g)
    weights[weights < 0.6] = 0
    weights.requires_grad_(True)
    t = sampling.sample_pdf(bins, weights, 100, randomized=randomized, key=4)
    assert t.shape == (64, 100) and not t.requires_grad
    assert (t.diff(dim=-1) >= 0).all()
    assert (t >= bins[:, :1]).all() and (t <= bins[:, -1:]).all()


def test_sample_pdf_zero_weights_is_uniform():
    bins = torch.linspace(2.0, 6.0, 9, dtype=torch.float64).expand(3, -1).contiguous()
    weights = torch.zeros(3, 8, dtype=torch.float64)
    n = 10
    t = sampling.sample_pdf(bins, weights, n, randomized=False)
    expected = 2.0 + 4.0 * (torch.arange(n, dtype=torch.float64) + 0.5) / n
    torch.testing.assert_close(t, expected.expand(3, -1), rtol=0, atol=1e-12)


def test_sample_pdf_edge_shapes():
    bins = torch.tensor([[1.0, 3.0]])
    t = sampling.sample_pdf(bins, torch.tensor([[0.7]]), 4, randomized=False)
    torch.testing.assert_close(t, torch.tensor([[1.25, 1.75, 2.25, 2.75]]))
    one = sampling.sample_pdf(bins, torch.tensor([[0.7]]), 1, randomized=False)
    torch.testing.assert_close(one, torch.tensor([[2.0]]))
    empty = sampling.sample_pdf(torch.zeros(0, 5), torch.zeros(0, 4), 7, randomized=True, key=1)
    assert empty.shape == (0, 7)


def test_sample_pdf_arguments():
    bins, weights = torch.zeros(2, 5), torch.zeros(2, 4)
    with pytest.raises(ValueError, match="n_samples"):
        sampling.sample_pdf(bins, weights, 0, randomized=False)
    with pytest.raises(ValueError, match="bins"):
        sampling.sample_pdf(bins[:, :4], weights, 3, randomized=False)
    with pytest.raises(TypeError, match="weights"):
        sampling.sample_pdf(bins, weights.double(), 3, randomized=False)
    with pytest.raises(ValueError, match="key"):
        sampling.sample_pdf(bins, weights, 3, randomized=True)


# ------------------------------------------------------------------------------------------------
# Positional encoding


def test_positional_encoding_closed_form():
    x = torch.tensor([[0.3, -1.2, 2.5], [4.0, 0.0, -0.7]], dtype=torch.float64)
    num_freqs = 4
    enc = encoding_ext.positional_encoding(x, num_freqs)
    assert enc.shape == (2, 3 * (1 + 2 * num_freqs))
    for p in range(2):
        row = list(x[p].tolist())
        for k in range(num_freqs):
            row += [math.sin(2**k * v) for v in x[p].tolist()]
            row += [math.cos(2**k * v) for v in x[p].tolist()]
        np.testing.assert_allclose(enc[p].numpy(), row, rtol=0, atol=1e-12)
    no_input = encoding_ext.positional_encoding(x, num_freqs, include_input=False)
    torch.testing.assert_close(no_input, enc[:, 3:])


def test_positional_encoding_batch_dims_and_gradient():
    x = torch.randn(2, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2),
                    requires_grad=True)
    enc = encoding_ext.positional_encoding(x, 3)
    assert enc.shape == (2, 5, 21)
    enc.sum().backward()
    # d/dx [x + sum_k sin(2^k x) + cos(2^k x)] = 1 + sum_k 2^k (cos(2^k x) - sin(2^k x)).
    xd = x.detach()
    expected = 1 + sum(2**k * (torch.cos(2**k * xd) - torch.sin(2**k * xd)) for k in range(3))
    torch.testing.assert_close(x.grad, expected)
    assert encoding_ext.positional_encoding(x, 0).shape == (2, 5, 3)


# ------------------------------------------------------------------------------------------------
# Backend selection


def test_backend_selection(monkeypatch):
    assert ext_backend.set_backend("torch") == "torch"
    assert ext_backend.get_backend() == "torch"
    with pytest.raises(NerfpipeError, match="unknown backend"):
        ext_backend.set_backend("fast")
    monkeypatch.setattr(ext_backend, "_ext", None)
    monkeypatch.setattr(ext_backend, "_EXT_ERROR", "ImportError: no module")
    assert ext_backend.extension_status() == (False, "ImportError: no module")
    with pytest.raises(NerfpipeError, match="not built.*no module"):
        ext_backend.set_backend("ext")
    assert ext_backend.set_backend("auto") == "torch"
