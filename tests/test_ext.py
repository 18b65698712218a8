"""The extension nerfpipe._ext held to the torch reference of nerfpipe.sampling."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfpipe import encoding, encoding_ext, ext_backend, random_keys, sampling
from nerfpipe.models.fields import PositionEncoder

BUILT, REASON = ext_backend.extension_status()
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
    previous = ext_backend._requested
    try:
        assert ext_backend.set_backend("ext") == "ext"
        assert ext_backend.set_backend("auto") == "ext"
    finally:
        ext_backend.set_backend(previous)
    assert _ext.has_cuda() in (True, False)


@HYPO
@given(key=keys, n=st.integers(0, 3000))
def test_uniform_bit_exact(key, n):
    assert torch.equal(random_keys.uniform_ext(key, n), random_keys.uniform(key, n))


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
    torch.testing.assert_close(encoding_ext.positional_encoding_ext(x, 4),
                               encoding_ext.positional_encoding_torch(x, 4))


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
    ref = encoding_ext.positional_encoding_torch(xr, num_freqs, include_input)
    ext = encoding_ext.positional_encoding_ext(xe, num_freqs, include_input)
    torch.testing.assert_close(ext, ref, rtol=0, atol=PE_ATOL[dtype])
    ref.backward(grad)
    ext.backward(grad)
    # The gradient sums 2^k-scaled terms, so its tolerance grows with the top frequency.
    tol = PE_ATOL[dtype] * 2 ** max(num_freqs, 1)
    torch.testing.assert_close(xe.grad, xr.grad, rtol=1e-5, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_positional_encoding_low_precision(dtype):
    x = (torch.randn(64, 3, generator=torch.Generator().manual_seed(0)) * 2).to(dtype)
    ext = encoding_ext.positional_encoding_ext(x, 6)
    assert ext.dtype == dtype
    exact = encoding_ext.positional_encoding_torch(x.double(), 6)
    torch.testing.assert_close(ext.double(), exact, rtol=0, atol=PE_ATOL[dtype])
    g = torch.ones_like(ext)
    grad = _ext.positional_encoding_backward(x, g, 6, True)
    exact_grad = _ext.positional_encoding_backward(x.double(), g.double(), 6, True)
    torch.testing.assert_close(grad.double(), exact_grad, rtol=2e-2, atol=0.1)


def test_positional_encoding_gradcheck():
    x = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    for include_input in (True, False):
        fn = lambda v, inc=include_input: encoding_ext.positional_encoding_ext(v, 5, inc)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


IPE_ATOL = {torch.float32: 2e-6, torch.float64: 1e-10}


def _ipe_inputs(points: int, channels: int, dtype, seed: int, scale: float = 1.0, var_scale: float = 0.01):
    g = torch.Generator().manual_seed(seed)
    mean = (torch.randn(points, channels, generator=g, dtype=torch.float64) * scale).to(dtype)
    var = (torch.rand(points, channels, generator=g, dtype=torch.float64) * var_scale).to(dtype)
    return mean, var


@HYPO
@given(points=st.integers(0, 300), channels=st.integers(1, 4), num_freqs=st.integers(0, 16),
       dtype=st.sampled_from(DTYPES), scale=st.sampled_from([0.1, 1.0, 8.0]),
       var_scale=st.sampled_from([0.0, 1e-4, 1e-2, 1.0]))
def test_integrated_pos_enc_matches_reference(points, channels, num_freqs, dtype, scale, var_scale):
    mean, var = _ipe_inputs(points, channels, dtype, points + 7 * channels, scale, var_scale)
    grad = torch.randn(points, 2 * channels * num_freqs, generator=torch.Generator().manual_seed(1),
                       dtype=torch.float64).to(dtype)
    ref_in = [t.clone().requires_grad_(True) for t in (mean, var)]
    ext_in = [t.clone().requires_grad_(True) for t in (mean, var)]
    ref = encoding.integrated_pos_enc(*ref_in, num_freqs)
    ext = encoding_ext.integrated_pos_enc_ext(*ext_in, num_freqs)
    torch.testing.assert_close(ext, ref, rtol=0, atol=IPE_ATOL[dtype])
    if points == 0 or num_freqs == 0:
        return
    ref.backward(grad)
    ext.backward(grad)
    # d/dmean sums 2^k-scaled terms and d/dvar 4^k-scaled ones: tolerances grow with the top frequency.
    top = 2.0 ** (num_freqs - 1)
    torch.testing.assert_close(ext_in[0].grad, ref_in[0].grad, rtol=1e-5, atol=IPE_ATOL[dtype] * 4 * top)
    torch.testing.assert_close(ext_in[1].grad, ref_in[1].grad, rtol=1e-5, atol=IPE_ATOL[dtype] * 4 * top**2)


def test_integrated_pos_enc_closed_form_and_layout():
    """One coordinate by hand: [sin(2^k mu) exp(-4^k var / 2) for k | cos(...) for k], channel-minor."""
    mean = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    var = torch.tensor([[0.02, 0.5]], dtype=torch.float64)
    out = encoding_ext.integrated_pos_enc_ext(mean, var, 3)[0]
    for k in range(3):
        for c in range(2):
            mu, damp = mean[0, c].item(), math.exp(-0.5 * 4**k * var[0, c].item())
            assert out[k * 2 + c].item() == pytest.approx(math.sin(2**k * mu) * damp, abs=1e-14)
            assert out[6 + k * 2 + c].item() == pytest.approx(math.cos(2**k * mu) * damp, abs=1e-14)


def test_integrated_pos_enc_shapes_and_non_contiguous():
    mean, var = _ipe_inputs(24, 3, torch.float32, seed=2)
    mean3, var3 = mean.reshape(4, 6, 3), var.reshape(4, 6, 3)
    assert encoding_ext.integrated_pos_enc_ext(mean3, var3, 5).shape == (4, 6, 30)
    mean_t = mean.t().contiguous().t()
    assert not mean_t.is_contiguous()
    torch.testing.assert_close(encoding_ext.integrated_pos_enc_ext(mean_t, var, 5),
                               encoding.integrated_pos_enc(mean, var, 5), rtol=0,
                               atol=IPE_ATOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_integrated_pos_enc_low_precision(dtype):
    mean, var = _ipe_inputs(64, 3, torch.float64, seed=5, scale=2.0)
    ext = encoding_ext.integrated_pos_enc_ext(mean.to(dtype), var.to(dtype), 6)
    assert ext.dtype == dtype
    exact = encoding.integrated_pos_enc(mean.to(dtype).double(), var.to(dtype).double(), 6)
    torch.testing.assert_close(ext.double(), exact, rtol=0, atol=PE_ATOL[dtype])


def test_integrated_pos_enc_gradcheck():
    mean, var = _ipe_inputs(6, 3, torch.float64, seed=4, var_scale=0.1)
    inputs = (mean.requires_grad_(True), var.requires_grad_(True))
    fn = lambda m, v: encoding_ext.integrated_pos_enc_ext(m, v, 5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def test_integrated_pos_enc_density_normal_losses_match_reference():
    """Ref-NeRF differentiates the density w.r.t. the means and puts losses on that gradient: the
    parameter gradients of such a loss are equal through the extension and through the reference."""
    mean, var = _ipe_inputs(50, 3, torch.float64, seed=6, var_scale=1e-3)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(2 * 3 * 8, 32), torch.nn.Softplus(), torch.nn.Linear(32, 1))
    mlp = mlp.double()
    grads = {}
    for name, ipe in (("torch", encoding.integrated_pos_enc), ("ext", encoding_ext.integrated_pos_enc_ext)):
        mlp.zero_grad()
        x = mean.clone().requires_grad_(True)
        density = mlp(ipe(x, var, 8))
        normals = torch.autograd.grad(density.sum(), x, create_graph=True)[0]
        (normals.square().sum() + density.sum()).backward()
        grads[name] = [p.grad.clone() for p in mlp.parameters()]
    for ext_grad, ref_grad in zip(grads["ext"], grads["torch"], strict=True):
        torch.testing.assert_close(ext_grad, ref_grad, rtol=1e-9, atol=1e-10)


def test_extension_cpu_kernels_are_multithreaded():
    # at::parallel_for runs serially in an extension compiled without OpenMP; setup.py must pass -fopenmp
    # wherever torch itself uses OpenMP.
    if not (sys.platform.startswith("linux") and torch.backends.openmp.is_available()):
        pytest.skip("torch without OpenMP or not Linux: the extension is built without it")
    assert ext_backend.extension_openmp()


def _autograd_node_names(out: torch.Tensor) -> set[str]:
    nodes, names = [out.grad_fn], set()
    while nodes:
        node = nodes.pop()
        names.add(type(node).__name__)
        nodes += [n for n, _ in node.next_functions if n is not None]
    return names


def test_public_dispatch_uses_ext():
    previous = ext_backend._requested
    try:
        ext_backend.set_backend("ext")
        bins, weights = _bins_weights(10, 8, torch.float32, seed=1)
        torch.testing.assert_close(sampling.sample_pdf(bins, weights, 12, True, 3),
                                   sampling.sample_pdf_torch(bins, weights, 12, True, 3), rtol=0, atol=1e-4)
        x = torch.randn(5, 4, 3, requires_grad=True)
        out = encoding_ext.positional_encoding(x, 3)
        assert out.shape == (5, 4, 21)
        assert "_PositionalEncodingBackward" in _autograd_node_names(out)  # the extension's autograd.Function
        # The models' IPE goes through the extension as well.
        out = PositionEncoder("ipe", 4)(x, torch.rand(5, 4, 3) * 1e-2)
        assert out.shape == (5, 4, 24)
        assert "_IntegratedPosEncBackward" in _autograd_node_names(out)
        ext_backend.set_backend("torch")
        out = PositionEncoder("ipe", 4)(x, torch.rand(5, 4, 3) * 1e-2)
        assert "_IntegratedPosEncBackward" not in _autograd_node_names(out)
    finally:
        ext_backend.set_backend(previous)


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
    var = torch.zeros(5, 3)
    with pytest.raises(ValueError, match="'mean' must be 2-D"):
        _ext.integrated_pos_enc_forward(x[0], var[0], 4)
    with pytest.raises(ValueError, match="'var' must have the shape of 'mean'"):
        _ext.integrated_pos_enc_forward(x, var[:4], 4)
    with pytest.raises(TypeError, match="'var' has dtype"):
        _ext.integrated_pos_enc_forward(x, var.double(), 4)
    with pytest.raises(ValueError, match="'var' must be contiguous"):
        _ext.integrated_pos_enc_forward(x, torch.zeros(3, 5).t(), 4)
    with pytest.raises(ValueError, match="'grad_out' must have shape"):
        _ext.integrated_pos_enc_backward(x, var, torch.zeros(5, 7), 4)
    with pytest.raises(ValueError, match="mean and var must have one shape"):
        encoding_ext.integrated_pos_enc_ext(x, var[:4], 4)
    with pytest.raises(TypeError, match="integrated_pos_enc: mean must be a floating tensor"):
        encoding_ext.integrated_pos_enc_ext(x.long(), var.long(), 4)
    with pytest.raises(ValueError, match="'crop_h' must be in"):
        _ext.ray_indices_fill(torch.empty(4, dtype=torch.int64), 1, 8, 8, 9, 8, 0, 0)
    with pytest.raises(TypeError, match="'out' must be int64"):
        _ext.ray_indices_fill(torch.empty(4), 1, 8, 8, 8, 8, 0, 0)
    with pytest.raises(ValueError, match="exceeds 2\\^31"):
        _ext.ray_indices_fill(torch.empty(4, dtype=torch.int64), 100, 5000, 5000, 5000, 5000, 0, 0)
