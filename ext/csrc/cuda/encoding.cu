// Positional encoding and integrated positional encoding, forward and backward (CUDA kernels): one thread
// per (point, channel).
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
  const int64_t i = thread_index();
  if (i >= points * channels) return;
  const auto [p, c] = row_col(i, channels);
  scalar_t* op = out + p * pe_width(channels, num_freqs, include_input);
  if (include_input) op[c] = x[i];
  pe_forward_coord<scalar_t>(static_cast<double>(x[i]), num_freqs, channels,
                             op + (include_input ? channels : 0) + c);
}

template <typename scalar_t>
__global__ void pe_backward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ grad_out,
                                   scalar_t* __restrict__ grad_x, int64_t points, int64_t channels,
                                   int64_t num_freqs, bool include_input) {
  const int64_t i = thread_index();
  if (i >= points * channels) return;
  const auto [p, c] = row_col(i, channels);
  const scalar_t* gp = grad_out + p * pe_width(channels, num_freqs, include_input);
  double acc = include_input ? static_cast<double>(gp[c]) : 0.0;
  acc += pe_backward_coord<scalar_t>(static_cast<double>(x[i]), num_freqs, channels,
                                     gp + (include_input ? channels : 0) + c);
  grad_x[i] = static_cast<scalar_t>(acc);
}

template <typename scalar_t>
__global__ void ipe_forward_kernel(const scalar_t* __restrict__ mean, const scalar_t* __restrict__ var,
                                   scalar_t* __restrict__ out, int64_t points, int64_t channels,
                                   int64_t num_freqs) {
  const int64_t i = thread_index();
  if (i >= points * channels) return;
  const auto [p, c] = row_col(i, channels);
  const int64_t half = channels * num_freqs;
  ipe_forward_coord<scalar_t>(static_cast<double>(mean[i]), static_cast<double>(var[i]), num_freqs, channels,
                              half, out + p * 2 * half + c);
}

template <typename scalar_t>
__global__ void ipe_backward_kernel(const scalar_t* __restrict__ mean, const scalar_t* __restrict__ var,
                                    const scalar_t* __restrict__ grad_out, scalar_t* __restrict__ grad_mean,
                                    scalar_t* __restrict__ grad_var, int64_t points, int64_t channels,
                                    int64_t num_freqs) {
  const int64_t i = thread_index();
  if (i >= points * channels) return;
  const auto [p, c] = row_col(i, channels);
  const int64_t half = channels * num_freqs;
  double gm;
  double gv;
  ipe_backward_coord<scalar_t>(static_cast<double>(mean[i]), static_cast<double>(var[i]), num_freqs, channels,
                               half, grad_out + p * 2 * half + c, &gm, &gv);
  grad_mean[i] = static_cast<scalar_t>(gm);
  grad_var[i] = static_cast<scalar_t>(gv);
}

}  // namespace

void positional_encoding_forward_cuda(const at::Tensor& x, at::Tensor& out, int64_t num_freqs,
                                      bool include_input) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pe_forward_cuda", [&] {
    launch_1d(x.device(), x.numel(), pe_forward_kernel<scalar_t>, x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
              x.size(0), x.size(1), num_freqs, include_input);
  });
}

void positional_encoding_backward_cuda(const at::Tensor& x, const at::Tensor& grad_out, at::Tensor& grad_x,
                                       int64_t num_freqs, bool include_input) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pe_backward_cuda", [&] {
    launch_1d(x.device(), x.numel(), pe_backward_kernel<scalar_t>, x.data_ptr<scalar_t>(),
              grad_out.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), x.size(0), x.size(1), num_freqs,
              include_input);
  });
}

void integrated_pos_enc_forward_cuda(const at::Tensor& mean, const at::Tensor& var, at::Tensor& out,
                                     int64_t num_freqs) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mean.scalar_type(), "ipe_forward_cuda", [&] {
    launch_1d(mean.device(), mean.numel(), ipe_forward_kernel<scalar_t>, mean.data_ptr<scalar_t>(),
              var.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), mean.size(0), mean.size(1), num_freqs);
  });
}

void integrated_pos_enc_backward_cuda(const at::Tensor& mean, const at::Tensor& var, const at::Tensor& grad_out,
                                      at::Tensor& grad_mean, at::Tensor& grad_var, int64_t num_freqs) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mean.scalar_type(), "ipe_backward_cuda", [&] {
    launch_1d(mean.device(), mean.numel(), ipe_backward_kernel<scalar_t>, mean.data_ptr<scalar_t>(),
              var.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), grad_mean.data_ptr<scalar_t>(),
              grad_var.data_ptr<scalar_t>(), mean.size(0), mean.size(1), num_freqs);
  });
}

}  // namespace nerfpipe
