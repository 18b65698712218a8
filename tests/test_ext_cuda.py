"""The CUDA kernels of nerfpipe._ext held to the torch reference on the CPU. These run only on a machine
with a GPU and an extension built with CUDA kernels; elsewhere they are skipped with the reason (the .cu
files are still compile-checked by tests/test_cuda_compile.py)."""

from __future__ import annotations

import pytest
import torch

from nerfpipe import encoding, sampling

BUILT, REASON = sampling.extension_status()
if not BUILT:
    pytestmark = pytest.mark.skip(reason=f"nerfpipe._ext is not built: {REASON}")
elif not torch.cuda.is_available():
    pytestmark = pytest.mark.skip(reason="no CUDA device")
else:
    from nerfpipe import _ext

    if not _ext.has_cuda():
        pytestmark = pytest.mark.skip(reason="nerfpipe._ext was built without CUDA kernels")

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
CUDA = torch.device("cuda")


def test_uniform_and_ray_indices_bit_exact():
    for key in (0, 7, 2**40 + 3):
        assert torch.equal(sampling.uniform_ext(key, 5000, CUDA).cpu(), sampling.uniform(key, 5000))
        for frac in (1.0, 0.5):
            ref = sampling.sample_ray_indices_torch(7, 33, 45, 4000, key, frac)
            ext = sampling.sample_ray_indices_ext(7, 33, 45, 4000, key, frac, CUDA)
            assert ext.device.type == "cuda" and torch.equal(ext.cpu(), ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("randomized", [False, True])
def test_stratified_and_sample_pdf(dtype, randomized):
    g = torch.Generator().manual_seed(0)
    near = torch.rand(300, generator=g, dtype=torch.float64).to(dtype)
    far = near + 1 + torch.rand(300, generator=g, dtype=torch.float64).to(dtype)
    ref = sampling.stratified_endpoints_torch(near, far, 48, randomized, 11)
    ext = sampling.stratified_endpoints_ext(near.to(CUDA), far.to(CUDA), 48, randomized, 11)
    torch.testing.assert_close(ext.cpu(), ref, rtol=TOL[dtype], atol=TOL[dtype])
    bins = torch.sort(torch.rand(300, 65, generator=g, dtype=torch.float64) * 4, dim=-1).values.to(dtype)
    weights = torch.rand(300, 64, generator=g, dtype=torch.float64).to(dtype)
    weights[:10] = 0  # all-zero rays sample uniformly
    ref = sampling.sample_pdf_torch(bins, weights, 129, randomized, 5)
    ext = sampling.sample_pdf_ext(bins.to(CUDA), weights.to(CUDA), 129, randomized, 5)
    torch.testing.assert_close(ext.cpu(), ref, rtol=0, atol=1e-4 if dtype == torch.float32 else 1e-10)
    assert (ext.diff(dim=-1) >= 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_encodings_forward_and_backward(dtype):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(2000, 3, generator=g, dtype=torch.float64) * 3).to(dtype)
    var = (torch.rand(2000, 3, generator=g, dtype=torch.float64) * 1e-2).to(dtype)
    for include_input in (True, False):
        xr, xe = x.clone().requires_grad_(True), x.to(CUDA).requires_grad_(True)
        ref = sampling.positional_encoding_torch(xr, 10, include_input)
        ext = sampling.positional_encoding_ext(xe, 10, include_input)
        torch.testing.assert_close(ext.detach().cpu(), ref.detach(), rtol=0, atol=TOL[dtype])
        grad = torch.randn(ref.shape, generator=g, dtype=torch.float64).to(dtype)
        ref.backward(grad)
        ext.backward(grad.to(CUDA))
        torch.testing.assert_close(xe.grad.cpu(), xr.grad, rtol=1e-5, atol=TOL[dtype] * 2**10)
    ref_in = [t.clone().requires_grad_(True) for t in (x, var)]
    ext_in = [t.to(CUDA).requires_grad_(True) for t in (x, var)]
    ref = encoding.integrated_pos_enc(*ref_in, 16)
    ext = sampling.integrated_pos_enc_ext(*ext_in, 16)
    torch.testing.assert_close(ext.detach().cpu(), ref.detach(), rtol=0, atol=2 * TOL[dtype])
    grad = torch.randn(ref.shape, generator=g, dtype=torch.float64).to(dtype)
    ref.backward(grad)
    ext.backward(grad.to(CUDA))
    torch.testing.assert_close(ext_in[0].grad.cpu(), ref_in[0].grad, rtol=1e-5, atol=TOL[dtype] * 2**17)
    torch.testing.assert_close(ext_in[1].grad.cpu(), ref_in[1].grad, rtol=1e-5, atol=TOL[dtype] * 4**16)


def test_encoding_gradcheck_on_cuda():
    x = torch.randn(6, 3, dtype=torch.float64, device=CUDA, requires_grad=True)
    var = (torch.rand(6, 3, dtype=torch.float64, device=CUDA) * 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: sampling.positional_encoding_ext(v, 5), (x,))
    assert torch.autograd.gradgradcheck(lambda m, v: sampling.integrated_pos_enc_ext(m, v, 5), (x, var))


def test_device_mix_is_refused():
    with pytest.raises(RuntimeError, match="'weights' is on cpu"):
        _ext.sample_pdf(torch.zeros(4, 6, device=CUDA), torch.zeros(4, 5), 3, False, 0, 0, 1e-5)
    with pytest.raises(RuntimeError, match="'var' is on cpu"):
        _ext.integrated_pos_enc_forward(torch.zeros(4, 3, device=CUDA), torch.zeros(4, 3), 4)
