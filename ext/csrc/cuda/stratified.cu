// Stratified interval endpoints along rays (CUDA kernel): one thread per endpoint.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>

#include "common.h"
#include "cuda_utils.cuh"
#include "nerfpipe_ext.h"
#include "sampling.h"

namespace nerfpipe {

namespace {

// Same operation order as the CPU kernel and nerfpipe.sampling.stratified_endpoints_torch.
template <typename scalar_t>
__global__ void stratified_kernel(const scalar_t* __restrict__ near, const scalar_t* __restrict__ far,
                                  scalar_t* __restrict__ out, int64_t rays, int64_t n, bool randomized,
                                  uint32_t s1, uint32_t s2) {
  const int64_t i = thread_index();
  if (i >= rays * (n + 1)) return;
  const auto [r, j] = row_col(i, n + 1);
  const scalar_t a = near[r];
  const scalar_t b = far[r];
  const scalar_t nf = static_cast<scalar_t>(n);
  const scalar_t cur = stratified_lin(a, b, j, nf);
  if (!randomized) {
    out[i] = cur;
    return;
  }
  const scalar_t lower = j > 0 ? (stratified_lin(a, b, j - 1, nf) + cur) / scalar_t(2) : cur;
  const scalar_t upper = j < n ? (cur + stratified_lin(a, b, j + 1, nf)) / scalar_t(2) : cur;
  const scalar_t u = static_cast<scalar_t>(hash_uniform(s1, s2, i));
  out[i] = lower + (upper - lower) * u;
}

}  // namespace

void stratified_endpoints_cuda(const at::Tensor& near, const at::Tensor& far, at::Tensor& out,
                               bool randomized, uint32_t s1, uint32_t s2) {
  const int64_t rays = out.size(0);
  const int64_t n = out.size(1) - 1;
  AT_DISPATCH_FLOATING_TYPES(near.scalar_type(), "stratified_endpoints_cuda", [&] {
    launch_1d(near.device(), out.numel(), stratified_kernel<scalar_t>, near.data_ptr<scalar_t>(),
              far.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), rays, n, randomized, s1, s2);
  });
}

}  // namespace nerfpipe
