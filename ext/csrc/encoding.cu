// Positional encoding forward and backward (CUDA kernels): one thread per (point, channel).
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>

#include "cuda_utils.cuh"
#include "encoding.h"
#include "nerfpipe_ext.h"

namespace nerfpipe {

namespace {

template <typename scalar_t>
__global__ void pe_forward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out, int64_t points,
                                  int64_t channels, int64_t num_freqs, bool include_input) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= points * channels) return;
  const int64_t p = i / channels;
  const int64_t c = i - p * channels;
  const int64_t width = channels * ((include_input ? 1 : 0) + 2 * num_freqs);
  scalar_t* op = out + p * width;
  if (include_input) op[c] = x[i];
  pe_forward_coord<scalar_t>(static_cast<double>(x[i]), num_freqs, channels,
                             op + (include_input ? channels : 0) + c);
}

template <typename scalar_t>
__global__ void pe_backward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ grad_out,
                                   scalar_t* __restrict__ grad_x, int64_t points, int64_t channels,
                                   int64_t num_freqs, bool include_input) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= points * channels) return;
  const int64_t p = i / channels;
  const int64_t c = i - p * channels;
  const int64_t width = channels * ((include_input ? 1 : 0) + 2 * num_freqs);
  const scalar_t* gp = grad_out + p * width;
  double acc = include_input ? static_cast<double>(gp[c]) : 0.0;
  acc += pe_backward_coord<scalar_t>(static_cast<double>(x[i]), num_freqs, channels,
                                     gp + (include_input ? channels : 0) + c);
  grad_x[i] = static_cast<scalar_t>(acc);
}

}  // namespace

void positional_encoding_forward_cuda(const at::Tensor& x, at::Tensor& out, int64_t num_freqs,
                                      bool include_input) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t points = x.size(0);
  const int64_t channels = x.size(1);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pe_forward_cuda", [&] {
    pe_forward_kernel<scalar_t><<<num_blocks(x.numel()), kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), points, channels, num_freqs, include_input);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void positional_encoding_backward_cuda(const at::Tensor& x, const at::Tensor& grad_out, at::Tensor& grad_x,
                                       int64_t num_freqs, bool include_input) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t points = x.size(0);
  const int64_t channels = x.size(1);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pe_backward_cuda", [&] {
    pe_backward_kernel<scalar_t><<<num_blocks(x.numel()), kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), points, channels,
        num_freqs, include_input);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace nerfpipe
