"""The CUDA kernels of nerfpipe._ext held to the CPU kernels and the torch reference. These run on a machine
with a GPU; elsewhere they are skipped with the reason (the .cu files are still compile-checked by
tests/test_cuda_compile.py, and the CUDA build is linked and listed by tests/test_cuda_build.py).

Where torch sees a GPU, or NERFPIPE_REQUIRE_CUDA=1 is set (a GPU CI job), an extension without its CUDA
kernels FAILS these tests instead of skipping them: a GPU run that silently fell back to the CPU kernels
would prove nothing. With NERFPIPE_REQUIRE_CUDA=1 a missing GPU fails them too.
"""

from __future__ import annotations

import os

import pytest
import torch

from nerfpipe import encoding, encoding_ext, ext_backend, random_keys, sampling
from nerfpipe.estimators import marching, packed
from nerfpipe.estimators.occgrid import OccupancyGrid
from nerfpipe.estimators.packed import PackedSamples

BUILT, REASON = ext_backend.extension_status()
REQUIRED = os.environ.get("NERFPIPE_REQUIRE_CUDA", "") == "1"
HAS_GPU = torch.cuda.is_available()
# Every tensor op of the module; each must have its CUDA kernels in a CUDA build.
CUDA_OPS = {
    "uniform_fill", "ray_indices_fill", "stratified_endpoints", "sample_pdf", "positional_encoding_forward",
    "positional_encoding_backward", "integrated_pos_enc_forward", "integrated_pos_enc_backward",
    "occ_march", "packed_weights_forward", "packed_weights_backward", "packed_composite_forward",
    "packed_composite_backward", "occ_grid_update",
}
DTYPES = [torch.float32, torch.float64]
LOW = [torch.float16, torch.bfloat16]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
CUDA = torch.device("cuda")


def _missing_cuda_kernels() -> str:
    """Why the CUDA kernels cannot run here ('' when they can)."""
    if not BUILT:
        return f"nerfpipe._ext is not built: {REASON}"
    from nerfpipe import _ext

    if not _ext.has_cuda():
        return "nerfpipe._ext was built without CUDA kernels (a CPU-only torch, no nvcc, or NERFPIPE_NO_CUDA)"
    missing = CUDA_OPS - set(_ext.cuda_ops())
    if missing:
        return f"nerfpipe._ext lacks the CUDA kernels of {sorted(missing)}"
    return ""


MISSING = _missing_cuda_kernels()


def test_cuda_kernels_present_where_required():
    """Fails (does not skip) on a GPU machine, or with NERFPIPE_REQUIRE_CUDA=1, when kernels are missing."""
    if not (HAS_GPU or REQUIRED):
        pytest.skip("no CUDA device and NERFPIPE_REQUIRE_CUDA unset: the CUDA kernels are not required here")
    assert not MISSING, f"torch sees a GPU or NERFPIPE_REQUIRE_CUDA=1, but {MISSING}"
    assert HAS_GPU, "NERFPIPE_REQUIRE_CUDA=1 but torch.cuda.is_available() is False"


@pytest.fixture(autouse=True)
def _need_cuda(request):
    if request.node.name == "test_cuda_kernels_present_where_required":
        return
    if not HAS_GPU:
        if REQUIRED:
            pytest.fail("NERFPIPE_REQUIRE_CUDA=1 but torch.cuda.is_available() is False")
        pytest.skip("no CUDA device")
    if MISSING:
        pytest.fail(f"torch sees a GPU but {MISSING}")


@pytest.fixture
def ext():
    from nerfpipe import _ext

    return _ext


@pytest.fixture
def backend():
    """ext_backend.set_backend, with the requested backend restored after the test."""
    before = ext_backend._requested
    yield ext_backend.set_backend
    ext_backend.set_backend(before)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu()


def _pdf_inputs(rays: int, num_bins: int, dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    bins = torch.sort(torch.rand(rays, num_bins + 1, generator=g, dtype=torch.float64) * 4, dim=-1).values
    weights = torch.rand(rays, num_bins, generator=g, dtype=torch.float64)
    return bins.to(dtype), weights.to(dtype)


# ------------------------------------------------------------------------------------------------------
# Equivalence with the torch reference


def test_uniform_and_ray_indices_bit_exact():
    for key in (0, 7, 2**40 + 3):
        assert torch.equal(random_keys.uniform_ext(key, 5000, CUDA).cpu(), random_keys.uniform(key, 5000))
        for frac in (1.0, 0.5):
            ref = sampling.sample_ray_indices_torch(7, 33, 45, 4000, key, frac)
            ext = sampling.sample_ray_indices_ext(7, 33, 45, 4000, key, frac, CUDA)
            assert ext.device.type == CUDA.type and torch.equal(ext.cpu(), ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("randomized", [False, True])
def test_stratified_and_sample_pdf(dtype, randomized):
    g = torch.Generator().manual_seed(0)
    near = torch.rand(300, generator=g, dtype=torch.float64).to(dtype)
    far = near + 1 + torch.rand(300, generator=g, dtype=torch.float64).to(dtype)
    ref = sampling.stratified_endpoints_torch(near, far, 48, randomized, 11)
    ext = sampling.stratified_endpoints_ext(near.to(CUDA), far.to(CUDA), 48, randomized, 11)
    torch.testing.assert_close(ext.cpu(), ref, rtol=TOL[dtype], atol=TOL[dtype])
    bins, weights = _pdf_inputs(300, 64, dtype, 1)
    weights[:10] = 0  # all-zero rays sample uniformly
    ref = sampling.sample_pdf_torch(bins, weights, 129, randomized, 5)
    ext = sampling.sample_pdf_ext(bins.to(CUDA), weights.to(CUDA), 129, randomized, 5)
    torch.testing.assert_close(ext.cpu(), ref, rtol=0, atol=1e-4 if dtype == torch.float32 else 1e-10)
    assert (ext.diff(dim=-1) >= 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("randomized", [False, True])
def test_samplers_bit_identical_to_cpu_kernels(dtype, randomized):
    """Built with -fmad=false, the sampling kernels round every + - * / as the CPU kernels do."""
    g = torch.Generator().manual_seed(2)
    near = torch.rand(500, generator=g, dtype=torch.float64).to(dtype)
    far = near + 1 + torch.rand(500, generator=g, dtype=torch.float64).to(dtype)
    cpu = sampling.stratified_endpoints_ext(near, far, 64, randomized, 3)
    gpu = sampling.stratified_endpoints_ext(near.to(CUDA), far.to(CUDA), 64, randomized, 3)
    assert torch.equal(gpu.cpu(), cpu)
    bins, weights = _pdf_inputs(500, 63, dtype, 3)
    cpu = sampling.sample_pdf_ext(bins, weights, 128, randomized, 4)
    gpu = sampling.sample_pdf_ext(bins.to(CUDA), weights.to(CUDA), 128, randomized, 4)
    assert torch.equal(gpu.cpu(), cpu)


@pytest.mark.parametrize("dtype", DTYPES)
def test_encodings_forward_and_backward(dtype):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(2000, 3, generator=g, dtype=torch.float64) * 3).to(dtype)
    var = (torch.rand(2000, 3, generator=g, dtype=torch.float64) * 1e-2).to(dtype)
    for include_input in (True, False):
        xr, xe = x.clone().requires_grad_(True), x.to(CUDA).requires_grad_(True)
        ref = encoding_ext.positional_encoding_torch(xr, 10, include_input)
        ext = encoding_ext.positional_encoding_ext(xe, 10, include_input)
        torch.testing.assert_close(ext.detach().cpu(), ref.detach(), rtol=0, atol=TOL[dtype])
        grad = torch.randn(ref.shape, generator=g, dtype=torch.float64).to(dtype)
        ref.backward(grad)
        ext.backward(grad.to(CUDA))
        torch.testing.assert_close(xe.grad.cpu(), xr.grad, rtol=1e-5, atol=TOL[dtype] * 2**10)
    ref_in = [t.clone().requires_grad_(True) for t in (x, var)]
    ext_in = [t.to(CUDA).requires_grad_(True) for t in (x, var)]
    ref = encoding.integrated_pos_enc(*ref_in, 16)
    ext = encoding_ext.integrated_pos_enc_ext(*ext_in, 16)
    torch.testing.assert_close(ext.detach().cpu(), ref.detach(), rtol=0, atol=2 * TOL[dtype])
    grad = torch.randn(ref.shape, generator=g, dtype=torch.float64).to(dtype)
    ref.backward(grad)
    ext.backward(grad.to(CUDA))
    torch.testing.assert_close(ext_in[0].grad.cpu(), ref_in[0].grad, rtol=1e-5, atol=TOL[dtype] * 2**17)
    torch.testing.assert_close(ext_in[1].grad.cpu(), ref_in[1].grad, rtol=1e-5, atol=TOL[dtype] * 4**16)


def test_ipe_float64_tiny_variances():
    """The damping is one exp per octave: at variances where 4^k var ~ 1 for high k the encoding stays within
    the sin/cos recurrence's error, about 2^15 ulp at k = 15 (the old w_k = w_0^(4^k) was off by up to 6e-8
    there)."""
    g = torch.Generator().manual_seed(9)
    mean = torch.randn(4000, 3, generator=g, dtype=torch.float64) * 3
    var = torch.exp(torch.empty(4000, 3, dtype=torch.float64).uniform_(-27.6, 0.0, generator=g))  # 1e-12..1
    ref = encoding.integrated_pos_enc(mean, var, 16)
    ext = encoding_ext.integrated_pos_enc_ext(mean.to(CUDA), var.to(CUDA), 16)
    torch.testing.assert_close(ext.cpu(), ref, rtol=0, atol=5e-11)


def test_encoding_gradcheck_on_cuda():
    x = torch.randn(6, 3, dtype=torch.float64, device=CUDA, requires_grad=True)
    var = (torch.rand(6, 3, dtype=torch.float64, device=CUDA) * 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: encoding_ext.positional_encoding_ext(v, 5), (x,))
    assert torch.autograd.gradgradcheck(lambda m, v: encoding_ext.integrated_pos_enc_ext(m, v, 5), (x, var))


@pytest.mark.parametrize("include_input", [True, False])
def test_pe_double_backward_on_cuda(include_input):
    x = torch.randn(7, 3, dtype=torch.float64, device=CUDA, requires_grad=True)
    fn = lambda v: encoding_ext.positional_encoding_ext(v, 5, include_input)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x,))
    # The second derivative through the CUDA kernels equals the CPU kernels'.
    grads = []
    for dev in ("cpu", CUDA):
        xd = x.detach().to(dev).requires_grad_(True)
        out = encoding_ext.positional_encoding_ext(xd, 6, include_input)
        (g,) = torch.autograd.grad(out.sin().sum(), xd, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), xd)
        grads.append((_cpu(g), _cpu(gg)))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-10, atol=1e-9)


def test_device_mix_is_refused(ext):
    with pytest.raises(RuntimeError, match="'weights' is on cpu"):
        ext.sample_pdf(torch.zeros(4, 6, device=CUDA), torch.zeros(4, 5), 3, False, 0, 0, 1e-5)
    with pytest.raises(RuntimeError, match="'var' is on cpu"):
        ext.integrated_pos_enc_forward(torch.zeros(4, 3, device=CUDA), torch.zeros(4, 3), 4)


# ------------------------------------------------------------------------------------------------------
# float16 / bfloat16: computed in double, rounded once to the storage type


@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_encodings(dtype):
    g = torch.Generator().manual_seed(4)
    x = (torch.randn(500, 3, generator=g, dtype=torch.float64) * 2).to(dtype)
    var = (torch.rand(500, 3, generator=g, dtype=torch.float64) * 1e-2).to(dtype)
    eps = torch.finfo(dtype).eps
    # Forward: within one rounding of the exact value of the rounded inputs, and equal to the CPU kernels'
    # (which round the same double) up to one unit where the two libm's differ right at a rounding tie.
    out = encoding_ext.positional_encoding_ext(x.to(CUDA), 6)
    assert out.dtype == dtype and out.device.type == CUDA.type
    exact = encoding_ext.positional_encoding_torch(x.double(), 6)
    torch.testing.assert_close(_cpu(out).double(), exact, rtol=0, atol=eps)
    torch.testing.assert_close(_cpu(out), encoding_ext.positional_encoding_ext(x, 6), rtol=eps, atol=eps)
    out = encoding_ext.integrated_pos_enc_ext(x.to(CUDA), var.to(CUDA), 6)
    assert out.dtype == dtype
    exact = encoding.integrated_pos_enc(x.double(), var.double(), 6)
    torch.testing.assert_close(_cpu(out).double(), exact, rtol=0, atol=eps)
    # Backward: the CUDA kernels' gradients equal the CPU kernels' up to one rounding of the storage type.
    grad = torch.randn(500, 3 * 13, generator=g, dtype=torch.float64).to(dtype)
    grads = []
    for dev in ("cpu", CUDA):
        xd = x.to(dev).requires_grad_(True)
        encoding_ext.positional_encoding_ext(xd, 6).backward(grad.to(dev))
        md, vd = x.to(dev).requires_grad_(True), var.to(dev).requires_grad_(True)
        encoding_ext.integrated_pos_enc_ext(md, vd, 6).backward(grad[:, : 3 * 12].to(dev))
        grads.append([_cpu(t.grad) for t in (xd, md, vd)])
    for gpu, cpu in zip(grads[1], grads[0], strict=True):
        assert gpu.dtype == dtype
        torch.testing.assert_close(gpu.double(), cpu.double(), rtol=2 * eps, atol=2 * eps)


@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_samplers_refused(dtype, ext):
    near = torch.zeros(4, dtype=dtype, device=CUDA)
    with pytest.raises(TypeError, match="float32 or float64"):
        ext.stratified_endpoints(near, near + 1, 8, False, 0, 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        ext.sample_pdf(torch.zeros(4, 6, dtype=dtype, device=CUDA),
                       torch.ones(4, 5, dtype=dtype, device=CUDA), 3, False, 0, 0, 1e-5)


# ------------------------------------------------------------------------------------------------------
# Devices and streams


@pytest.mark.skipif(not HAS_GPU or torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_ops_on_second_device():
    """Tensors on cuda:1 while cuda:0 is current: the kernels run on the tensors' device (device guard)."""
    dev = torch.device("cuda", 1)
    torch.cuda.set_device(0)
    g = torch.Generator().manual_seed(5)
    near = torch.rand(64, generator=g, dtype=torch.float64)
    far = near + 1
    bins, weights = _pdf_inputs(64, 16, torch.float64, 6)
    x = torch.randn(64, 3, generator=g, dtype=torch.float64)
    var = torch.rand(64, 3, generator=g, dtype=torch.float64) * 1e-2
    outs = {
        "uniform": (random_keys.uniform_ext(3, 1000, dev), random_keys.uniform(3, 1000)),
        "rays": (sampling.sample_ray_indices_ext(2, 8, 8, 100, 3, 1.0, dev),
                 sampling.sample_ray_indices_torch(2, 8, 8, 100, 3)),
        "stratified": (sampling.stratified_endpoints_ext(near.to(dev), far.to(dev), 8, True, 1),
                       sampling.stratified_endpoints_ext(near, far, 8, True, 1)),
        "pdf": (sampling.sample_pdf_ext(bins.to(dev), weights.to(dev), 9, True, 2),
                sampling.sample_pdf_ext(bins, weights, 9, True, 2)),
        "pe": (encoding_ext.positional_encoding_ext(x.to(dev), 4),
               encoding_ext.positional_encoding_ext(x, 4)),
        "ipe": (encoding_ext.integrated_pos_enc_ext(x.to(dev), var.to(dev), 4),
                encoding_ext.integrated_pos_enc_ext(x, var, 4)),
    }
    assert torch.cuda.current_device() == 0
    for name, (gpu, cpu) in outs.items():
        assert gpu.device == dev, name
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-12, msg=name)
    xd = x.to(dev).requires_grad_(True)
    encoding_ext.integrated_pos_enc_ext(xd, var.to(dev), 4).sum().backward()
    assert xd.grad.device == dev


def test_ops_run_on_the_current_stream():
    """On a side stream busy for ~50 ms, the input is written after the wait and the op must read it there:
    a kernel launched on another stream would read the zeros that were there before."""
    g = torch.Generator().manual_seed(6)
    x_host = torch.randn(4096, 3, generator=g, dtype=torch.float64)
    var_host = torch.rand(4096, 3, generator=g, dtype=torch.float64) * 1e-2
    near_host = torch.rand(4096, generator=g, dtype=torch.float64)
    bins_host, weights_host = _pdf_inputs(4096, 32, torch.float64, 7)
    host = {"x": x_host, "var": var_host, "near": near_host, "bins": bins_host, "weights": weights_host}
    inputs = {k: torch.zeros_like(v, device=CUDA) for k, v in host.items()}
    src = {k: v.to(CUDA) for k, v in host.items()}
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)
        for k, v in inputs.items():
            v.copy_(src[k])
        out = {
            "pe": encoding_ext.positional_encoding_ext(inputs["x"], 5),
            "ipe": encoding_ext.integrated_pos_enc_ext(inputs["x"], inputs["var"], 5),
            "stratified": sampling.stratified_endpoints_ext(inputs["near"], inputs["near"] + 1, 16, True, 1),
            "pdf": sampling.sample_pdf_ext(inputs["bins"], inputs["weights"], 17, True, 2),
        }
    side.synchronize()
    expected = {
        "pe": encoding_ext.positional_encoding_ext(x_host, 5),
        "ipe": encoding_ext.integrated_pos_enc_ext(x_host, var_host, 5),
        "stratified": sampling.stratified_endpoints_ext(near_host, near_host + 1, 16, True, 1),
        "pdf": sampling.sample_pdf_ext(bins_host, weights_host, 17, True, 2),
    }
    for name, value in out.items():
        torch.testing.assert_close(value.cpu(), expected[name], rtol=0, atol=1e-12, msg=name)


# ------------------------------------------------------------------------------------------------------
# Edge cases


@pytest.mark.parametrize("dtype", DTYPES)
def test_sample_pdf_one_bin_and_one_sample(dtype):
    bins, weights = _pdf_inputs(50, 1, dtype, 8)
    for n, randomized in ((1, False), (1, True), (5, True)):
        ref = sampling.sample_pdf_ext(bins, weights, n, randomized, 3)
        out = sampling.sample_pdf_ext(bins.to(CUDA), weights.to(CUDA), n, randomized, 3)
        assert out.shape == (50, n)
        assert torch.equal(out.cpu(), ref)
        torch.testing.assert_close(out.cpu(), sampling.sample_pdf_torch(bins, weights, n, randomized, 3),
                                   rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)
    bins, weights = _pdf_inputs(50, 20, dtype, 9)
    out = sampling.sample_pdf_ext(bins.to(CUDA), weights.to(CUDA), 1, False)
    ref = sampling.sample_pdf_torch(bins, weights, 1, False)
    torch.testing.assert_close(out.cpu(), ref, rtol=0, atol=1e-4 if dtype == torch.float32 else 1e-10)


def _key_with_u_one(rays: int, n: int) -> int:
    """A key for which some float32 u = (n-1 + U)/n of sample_pdf rounds up to exactly 1."""
    last = torch.arange(1, rays + 1, dtype=torch.int64) * n - 1  # index r*n + n-1 of each row's last sample
    top = torch.tensor(n - 1, dtype=torch.float32)
    for key in range(100_000):
        u = (top + random_keys.hash_uniform(random_keys.key_seeds(key), last)) / n
        if (u == 1).any():
            return key
    raise AssertionError("no key up to 100000 gives u == 1")


def test_sample_pdf_u_equal_to_one():
    """float32 u = (n-1 + U)/n rounds to exactly 1 for U close to 1; the sample is then the last endpoint.
    Trailing zero weights also put cdf entries at (or next to) 1: ties for searchsorted right=True."""
    rays, n = 64, 1 << 12
    key = _key_with_u_one(rays, n)
    bins, weights = _pdf_inputs(rays, 8, torch.float32, 10)
    weights[::2, -3:] = 0
    jitter = random_keys.uniform(key, rays * n).reshape(rays, n)
    u = (torch.arange(n, dtype=torch.float32) + jitter) / n
    at_one = u == 1
    assert at_one.any()
    out = sampling.sample_pdf_ext(bins.to(CUDA), weights.to(CUDA), n, True, key).cpu()
    assert torch.equal(out, sampling.sample_pdf_ext(bins, weights, n, True, key))
    last = bins[:, -1:].expand(rays, n)[at_one]
    assert torch.equal(out[at_one], last)
    assert torch.equal(sampling.sample_pdf_torch(bins, weights, n, True, key)[at_one], last)


@pytest.mark.parametrize("randomized", [False, True])
def test_stratified_one_interval(randomized):
    near = torch.rand(40, dtype=torch.float64)
    far = near + 2
    out = sampling.stratified_endpoints_ext(near.to(CUDA), far.to(CUDA), 1, randomized, 5)
    assert out.shape == (40, 2)
    assert torch.equal(out.cpu(), sampling.stratified_endpoints_ext(near, far, 1, randomized, 5))
    torch.testing.assert_close(out.cpu(), sampling.stratified_endpoints_torch(near, far, 1, randomized, 5))


def test_zero_frequencies():
    x = torch.randn(9, 3, dtype=torch.float64, device=CUDA, requires_grad=True)
    out = encoding_ext.positional_encoding_ext(x, 0, True)
    assert torch.equal(out, x)
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    assert encoding_ext.positional_encoding_ext(x, 0, False).shape == (9, 0)
    var = torch.rand(9, 3, dtype=torch.float64, device=CUDA)
    ipe = encoding_ext.integrated_pos_enc_ext(x, var, 0)
    assert ipe.shape == (9, 0) and ipe.device.type == CUDA.type


def test_empty_inputs():
    assert random_keys.uniform_ext(1, 0, CUDA).shape == (0,)
    assert sampling.sample_ray_indices_ext(1, 4, 4, 0, 1, 1.0, CUDA).shape == (0,)
    empty = torch.zeros(0, dtype=torch.float32, device=CUDA)
    assert sampling.stratified_endpoints_ext(empty, empty, 4, True, 1).shape == (0, 5)
    assert sampling.sample_pdf_ext(torch.zeros(0, 5, device=CUDA), torch.zeros(0, 4, device=CUDA), 3,
                                   False).shape == (0, 3)
    assert encoding_ext.positional_encoding_ext(torch.zeros(0, 3, device=CUDA), 4).shape == (0, 27)


# ------------------------------------------------------------------------------------------------------
# The public functions of nerfpipe.sampling with CUDA tensors


def test_public_functions_dispatch_cuda_tensors_to_the_kernels(backend):
    g = torch.Generator().manual_seed(11)
    near = torch.rand(128, generator=g, dtype=torch.float64).to(CUDA)
    far = near + 2
    bins, weights = (t.to(CUDA) for t in _pdf_inputs(128, 32, torch.float64, 12))
    x = (torch.randn(128, 3, generator=g, dtype=torch.float64) * 2).to(CUDA)
    var = (torch.rand(128, 3, generator=g, dtype=torch.float64) * 1e-2).to(CUDA)

    def run() -> dict[str, torch.Tensor]:
        xg = x.clone().requires_grad_(True)
        pe = encoding_ext.positional_encoding(xg, 6)
        ipe = encoding_ext.integrated_pos_enc(xg, var, 6)
        (pe.sum() + ipe.square().sum()).backward()
        return {
            "rays": sampling.sample_ray_indices(3, 16, 16, 500, 7, 0.5, CUDA),
            "stratified": sampling.stratified_endpoints(near, far, 32, True, 3),
            "pdf": sampling.sample_pdf(bins, weights, 33, True, 4),
            "pe": pe.detach(),
            "ipe": ipe.detach(),
            "grad": xg.grad,
        }

    assert backend("ext") == "ext"
    ext = run()
    assert backend("torch") == "torch"
    ref = run()
    for name, value in ext.items():
        assert value.device.type == CUDA.type, name
        if value.dtype == torch.int64:
            assert torch.equal(value, ref[name]), name
        else:
            torch.testing.assert_close(value, ref[name], rtol=1e-7, atol=1e-9, msg=name)
    # 'auto' takes the kernels for CUDA tensors when they are built (they are, or this test failed above).
    assert backend("auto") == "ext"
    assert torch.equal(sampling.stratified_endpoints(near, far, 32, True, 3), ext["stratified"])


# ------------------------------------------------------------------------------------------------------
# The occupancy-grid estimator (ext/csrc/cuda/occgrid.cu)


def _march_inputs(rays: int, dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    o = (torch.rand(rays, 3, generator=g, dtype=torch.float64) * 5 - 2.5).to(dtype)
    d = torch.randn(rays, 3, generator=g, dtype=torch.float64).to(dtype)
    d[torch.rand(rays, 3, generator=g) < 0.1] = 0.0
    near = (torch.rand(rays, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    far = near + 6
    occupied = torch.rand(16**3, generator=g) < 0.3
    return o, d, near, far, occupied


def _samples(s: PackedSamples) -> list[torch.Tensor]:
    return [_cpu(t) for t in (s.ray_indices, s.t_starts, s.t_ends, s.packed_info)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("randomized", [False, True])
def test_occ_march_bit_identical_to_cpu_kernel_and_reference(dtype, randomized):
    """Every + - * / of the marching is an explicit _rn intrinsic: given the same |d|, the CUDA kernel's
    samples are the CPU kernel's (the kernels take |d| from the caller: torch's norm may differ by an ulp
    between devices, so the cross-device check passes one norm to both); against the CUDA torch reference
    they match too (the norm comes from the same torch call on the same device)."""
    aabb = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    o, d, near, far, occupied = _march_inputs(3000, dtype, 5)
    norm = torch.linalg.vector_norm(d, dim=-1)
    seeds = random_keys.key_seeds(9) if randomized else (0, 0)
    ext = ext_backend.require_ext()
    cpu_args = (o, d, norm, near.to(dtype), far.to(dtype), occupied, aabb.to(dtype))
    cpu = PackedSamples(*ext.occ_march(*cpu_args, 16, 0.01, randomized, *seeds))
    gpu = PackedSamples(*ext.occ_march(*(t.to(CUDA) for t in cpu_args), 16, 0.01, randomized, *seeds))
    assert gpu.t_starts.device.type == CUDA.type
    for a, b in zip(_samples(gpu), _samples(cpu), strict=True):
        assert torch.equal(a, b)
    gpu = marching.march_rays_ext(*(t.to(CUDA) for t in (o, d, near, far, occupied, aabb)), 16, 0.01,
                                  randomized, 9)
    ref = marching.march_rays_torch(*(t.to(CUDA) for t in (o, d, near, far, occupied, aabb)), 16, 0.01,
                                    randomized, 9)
    for a, b in zip(_samples(gpu), _samples(ref), strict=True):
        assert torch.equal(a, b)
    empty = marching.march_rays_ext(*(t.to(CUDA) for t in (o, d, near, far)), occupied.to(CUDA) & False,
                                    aabb.to(CUDA), 16, 0.01, randomized, 9)
    assert len(empty) == 0 and int(empty.packed_info[:, 1].sum()) == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_rendering_forward_and_backward(dtype):
    aabb = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    o, d, near, far, occupied = _march_inputs(2000, dtype, 6)
    samples = marching.march_rays_ext(o, d, near, far, occupied, aabb, 16, 0.01, True, 3)
    g = torch.Generator().manual_seed(7)
    density = (torch.rand(len(samples), generator=g, dtype=torch.float64) * 20).to(dtype)
    rgb = torch.rand(len(samples), 3, generator=g, dtype=torch.float64).to(dtype)
    bg = torch.rand(3, generator=g, dtype=torch.float64).to(dtype)
    results = []
    for dev in ("cpu", CUDA):
        s = PackedSamples(*(t.to(dev) for t in (samples.ray_indices, samples.t_starts, samples.t_ends,
                                                samples.packed_info)))
        sigma = density.to(dev).requires_grad_(True)
        colour = rgb.to(dev).requires_grad_(True)
        w, t = packed.packed_weights_ext(sigma, s, d.to(dev))
        out = packed.packed_composite_ext(w, colour, s, near.to(dev), far.to(dev), bg.to(dev))
        (out["rgb"].square().sum() + out["depth"].sum() + out["acc"].sum() + t.sum()).backward()
        values = (w, t, out["rgb"], out["acc"], out["depth"], sigma.grad, colour.grad)
        results.append([_cpu(x) for x in values])
    tol = {torch.float32: 1e-4, torch.float64: 1e-10}[dtype]
    for gpu, cpu in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(gpu, cpu, rtol=tol, atol=tol)


def test_occ_grid_update_on_cuda_equals_the_reference():
    g = torch.Generator().manual_seed(8)
    cells = torch.randint(0, 16**3, (20000,), generator=g)  # many duplicates
    sigma = torch.rand(20000, generator=g) * 3
    grids = [OccupancyGrid([-1, -1, -1, 1, 1, 1], 16).to(CUDA) for _ in range(2)]
    for grid in grids:
        grid.occ.copy_(torch.rand(16**3, generator=torch.Generator().manual_seed(1)).to(CUDA) * 0.1)
    grids[0].apply_update_torch(cells.to(CUDA), sigma.to(CUDA), 0.01)
    grids[1].apply_update_ext(cells.to(CUDA), sigma.to(CUDA), 0.01)
    assert torch.equal(grids[1].occ, grids[0].occ) and torch.equal(grids[1].occupied, grids[0].occupied)
