"""The extension nerfpipe._ext held to the torch reference of nerfpipe.sampling."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfpipe import sampling

BUILT, REASON = sampling.extension_status()
pytestmark = pytest.mark.skipif(not BUILT, reason=f"nerfpipe._ext is not built: {REASON}")

if BUILT:
    from nerfpipe import _ext

DTYPES = [torch.float32, torch.float64]
# Sample positions: the cdf is summed in another order than torch's, so float32 differs by a few ulps.
PDF_ATOL = {torch.float32: 1e-4, torch.float64: 1e-10}
PE_ATOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5, torch.float64: 1e-10}
HYPO = settings(max_examples=25, deadline=None, derandomize=True)
keys = st.integers(min_value=-(2**70), max_value=2**70)


def _bins_weights(rays: int, num_bins: int, dtype, seed: int, zero_frac: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    bins = torch.sort(torch.rand(rays, num_bins + 1, generator=g, dtype=torch.float64) * 4, dim=-1).values
    weights = torch.rand(rays, num_bins, generator=g, dtype=torch.float64)
    weights[weights < zero_frac] = 0
    return bins.to(dtype), weights.to(dtype)


def test_backend_resolves_to_ext():
    previous = sampling._requested
    try:
        assert sampling.set_backend("ext") == "ext"
        assert sampling.set_backend("auto") == "ext"
    finally:
        sampling.set_backend(previous)
    assert _ext.has_cuda() in (True, False)


@HYPO
@given(key=keys, n=st.integers(0, 3000))
def test_uniform_bit_exact(key, n):
    assert torch.equal(sampling.uniform_ext(key, n), sampling.uniform(key, n))


@HYPO
@given(key=keys, n_images=st.integers(1, 5), h=st.integers(1, 40), w=st.integers(1, 40),
       batch=st.integers(0, 500), frac=st.sampled_from([1.0, 0.5, 0.25, 0.9]))
def test_ray_indices_bit_exact(key, n_images, h, w, batch, frac):
    ref = sampling.sample_ray_indices_torch(n_images, h, w, batch, key, frac)
    ext = sampling.sample_ray_indices_ext(n_images, h, w, batch, key, frac)
    assert ext.dtype == torch.int64
    assert torch.equal(ext, ref)


@HYPO
@given(key=keys, rays=st.integers(0, 50), n=st.integers(1, 70), randomized=st.booleans(),
       dtype=st.sampled_from(DTYPES))
def test_stratified_matches_reference(key, rays, n, randomized, dtype):
    g = torch.Generator().manual_seed(rays * 131 + n)
    near = torch.rand(rays, generator=g, dtype=torch.float64).to(dtype)
    far = (near + 0.1 + 5 * torch.rand(rays, generator=g, dtype=torch.float64)).to(dtype)
    ref = sampling.stratified_endpoints_torch(near, far, n, randomized, key)
    ext = sampling.stratified_endpoints_ext(near, far, n, randomized, key)
    assert ext.shape == (rays, n + 1) and ext.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(ext, ref, rtol=tol, atol=tol)


@HYPO
@given(key=keys, rays=st.integers(0, 40), num_bins=st.integers(1, 70), n=st.integers(1, 150),
       randomized=st.booleans(), dtype=st.sampled_from(DTYPES), zero_frac=st.sampled_from([0.0, 0.5, 1.0]))
def test_sample_pdf_matches_reference(key, rays, num_bins, n, randomized, dtype, zero_frac):
    bins, weights = _bins_weights(rays, num_bins, dtype, seed=num_bins * 7 + n, zero_frac=zero_frac)
    ref = sampling.sample_pdf_torch(bins, weights, n, randomized, key)
    ext = sampling.sample_pdf_ext(bins, weights, n, randomized, key)
    assert ext.shape == (rays, n) and ext.dtype == dtype
    torch.testing.assert_close(ext, ref, rtol=0, atol=PDF_ATOL[dtype])
    assert (ext.diff(dim=-1) >= 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_sample_pdf_edge_cases(dtype):
    # all-zero weights: evenly spaced; single bin; one sample; empty batch
    bins = torch.linspace(0, 1, 5, dtype=dtype).expand(2, -1).contiguous()
    cases = [
        (bins, torch.zeros(2, 4, dtype=dtype), 8),
        (torch.tensor([[1.0, 3.0], [0.0, 0.5]], dtype=dtype), torch.tensor([[0.2], [0.0]], dtype=dtype), 5),
        (bins, torch.tensor([[0, 1, 0, 0], [1, 1, 1, 1]], dtype=dtype), 1),
        (torch.zeros(0, 5, dtype=dtype), torch.zeros(0, 4, dtype=dtype), 3),
    ]
    for b, w, n in cases:
        for randomized in (False, True):
            ref = sampling.sample_pdf_torch(b, w, n, randomized, 17)
            ext = sampling.sample_pdf_ext(b, w, n, randomized, 17)
            torch.testing.assert_close(ext, ref, rtol=0, atol=PDF_ATOL[dtype])
    even = sampling.sample_pdf_ext(bins, torch.zeros(2, 4, dtype=dtype), 4, False)
    torch.testing.assert_close(even[0], torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=dtype))


def test_non_contiguous_inputs():
    bins, weights = _bins_weights(30, 16, torch.float32, seed=3)
    bins_t = bins.t().contiguous().t()  # same values, column-major strides
    weights_s = torch.stack([weights, weights], dim=-1)[..., 0]  # stride 2 along bins
    assert not bins_t.is_contiguous() and not weights_s.is_contiguous()
    ref = sampling.sample_pdf_torch(bins, weights, 20, True, 5)
    ext = sampling.sample_pdf_ext(bins_t, weights_s, 20, True, 5)
    torch.testing.assert_close(ext, ref, rtol=0, atol=1e-4)
    near = torch.rand(40)[::2]
    far = near + 1
    torch.testing.assert_close(sampling.stratified_endpoints_ext(near, far, 8, True, 2),
                               sampling.stratified_endpoints_torch(near, far, 8, True, 2))
    x = torch.randn(3, 20, dtype=torch.float64).t()
    torch.testing.assert_close(sampling.positional_encoding_ext(x, 4),
                               sampling.positional_encoding_torch(x, 4))


@HYPO
@given(points=st.integers(0, 300), channels=st.integers(1, 4), num_freqs=st.integers(0, 12),
       include_input=st.booleans(), dtype=st.sampled_from(DTYPES), scale=st.sampled_from([0.1, 1.0, 8.0]))
def test_positional_encoding_matches_reference(points, channels, num_freqs, include_input, dtype, scale):
    g = torch.Generator().manual_seed(points + 31 * channels)
    x = (torch.randn(points, channels, generator=g, dtype=torch.float64) * scale).to(dtype)
    grad = torch.randn(points, channels * (int(include_input) + 2 * num_freqs), generator=g,
                       dtype=torch.float64).to(dtype)
    xr = x.clone().requires_grad_(True)
    xe = x.clone().requires_grad_(True)
    ref = sampling.positional_encoding_torch(xr, num_freqs, include_input)
    ext = sampling.positional_encoding_ext(xe, num_freqs, include_input)
    torch.testing.assert_close(ext, ref, rtol=0, atol=PE_ATOL[dtype])
    ref.backward(grad)
    ext.backward(grad)
    # The gradient sums 2^k-scaled terms, so its tolerance grows with the top frequency.
    tol = PE_ATOL[dtype] * 2 ** max(num_freqs, 1)
    torch.testing.assert_close(xe.grad, xr.grad, rtol=1e-5, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_positional_encoding_low_precision(dtype):
    x = (torch.randn(64, 3, generator=torch.Generator().manual_seed(0)) * 2).to(dtype)
    ext = sampling.positional_encoding_ext(x, 6)
    assert ext.dtype == dtype
    exact = sampling.positional_encoding_torch(x.double(), 6)
    torch.testing.assert_close(ext.double(), exact, rtol=0, atol=PE_ATOL[dtype])
    g = torch.ones_like(ext)
    grad = _ext.positional_encoding_backward(x, g, 6, True)
    exact_grad = _ext.positional_encoding_backward(x.double(), g.double(), 6, True)
    torch.testing.assert_close(grad.double(), exact_grad, rtol=2e-2, atol=0.1)


def test_positional_encoding_gradcheck():
    x = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    for include_input in (True, False):
        fn = lambda v, inc=include_input: sampling.positional_encoding_ext(v, 5, inc)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


def test_public_dispatch_uses_ext():
    previous = sampling._requested
    try:
        sampling.set_backend("ext")
        bins, weights = _bins_weights(10, 8, torch.float32, seed=1)
        torch.testing.assert_close(sampling.sample_pdf(bins, weights, 12, True, 3),
                                   sampling.sample_pdf_torch(bins, weights, 12, True, 3), rtol=0, atol=1e-4)
        x = torch.randn(5, 4, 3, requires_grad=True)
        out = sampling.positional_encoding(x, 3)
        assert out.shape == (5, 4, 21) and out.grad_fn is not None
        nodes, names = [out.grad_fn], set()
        while nodes:
            node = nodes.pop()
            names.add(type(node).__name__)
            nodes += [n for n, _ in node.next_functions if n is not None]
        assert "_PositionalEncodingBackward" in names  # the extension's autograd.Function
    finally:
        sampling.set_backend(previous)


# ------------------------------------------------------------------------------------------------
# Bad arguments: exceptions from the C++ checks, naming the argument


def test_sample_pdf_bad_arguments():
    bins, weights = torch.zeros(4, 6), torch.zeros(4, 5)
    with pytest.raises(ValueError, match="'bins' must be 2-D"):
        _ext.sample_pdf(bins[0], weights, 3, False, 0, 0, 1e-5)
    with pytest.raises(ValueError, match="'weights' must be 2-D"):
        _ext.sample_pdf(bins, weights[None], 3, False, 0, 0, 1e-5)
    with pytest.raises(ValueError, match="'bins' must have shape"):
        _ext.sample_pdf(bins[:, :5], weights, 3, False, 0, 0, 1e-5)
    with pytest.raises(TypeError, match="'bins' must be float32 or float64"):
        _ext.sample_pdf(bins.int(), weights.int(), 3, False, 0, 0, 1e-5)
    with pytest.raises(TypeError, match="'weights' has dtype Double"):
        _ext.sample_pdf(bins, weights.double(), 3, False, 0, 0, 1e-5)
    with pytest.raises(RuntimeError, match="'weights' is on meta"):
        _ext.sample_pdf(bins, weights.to("meta"), 3, False, 0, 0, 1e-5)
    with pytest.raises(RuntimeError, match="'bins' must be a CPU or CUDA tensor"):
        _ext.sample_pdf(bins.to("meta"), weights, 3, False, 0, 0, 1e-5)
    with pytest.raises(ValueError, match="'n_samples' must be >= 1"):
        _ext.sample_pdf(bins, weights, 0, False, 0, 0, 1e-5)
    with pytest.raises(ValueError, match="'bins' must be contiguous"):
        _ext.sample_pdf(bins.t().contiguous().t(), weights, 3, False, 0, 0, 1e-5)
    with pytest.raises(ValueError, match="'s1' must be a 32-bit seed"):
        _ext.sample_pdf(bins, weights, 3, True, -1, 0, 1e-5)
    # The public wrapper names the argument as well.
    with pytest.raises(ValueError, match="n_samples"):
        sampling.sample_pdf_ext(bins, weights, 0, False)


def test_other_bad_arguments():
    near = torch.zeros(3)
    with pytest.raises(ValueError, match="'near' must be 1-D"):
        _ext.stratified_endpoints(near[None], near[None], 4, False, 0, 0)
    with pytest.raises(ValueError, match="'far' has shape"):
        _ext.stratified_endpoints(near, near[:2], 4, False, 0, 0)
    with pytest.raises(TypeError, match="'far' has dtype"):
        _ext.stratified_endpoints(near, near.double(), 4, False, 0, 0)
    with pytest.raises(ValueError, match="'n_intervals' must be >= 1"):
        _ext.stratified_endpoints(near, near, 0, False, 0, 0)
    x = torch.zeros(5, 3)
    with pytest.raises(ValueError, match="'x' must be 2-D"):
        _ext.positional_encoding_forward(x[0], 4, True)
    with pytest.raises(TypeError, match="'x' must be float16"):
        _ext.positional_encoding_forward(x.long(), 4, True)
    with pytest.raises(ValueError, match="'num_freqs' must be in"):
        _ext.positional_encoding_forward(x, -1, True)
    with pytest.raises(ValueError, match="'grad_out' must have shape"):
        _ext.positional_encoding_backward(x, torch.zeros(5, 7), 4, True)
    with pytest.raises(ValueError, match="'crop_h' must be in"):
        _ext.ray_indices_fill(torch.empty(4, dtype=torch.int64), 1, 8, 8, 9, 8, 0, 0)
    with pytest.raises(TypeError, match="'out' must be int64"):
        _ext.ray_indices_fill(torch.empty(4), 1, 8, 8, 8, 8, 0, 0)
    with pytest.raises(ValueError, match="exceeds 2\\^31"):
        _ext.ray_indices_fill(torch.empty(4, dtype=torch.int64), 100, 5000, 5000, 5000, 5000, 0, 0)
