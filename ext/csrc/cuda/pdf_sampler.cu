// Inverse-transform sampling (CUDA kernels): one thread per ray builds the cdf, then one thread per
// sample binary-searches it (searchsorted right=True) and interpolates inside the bin.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include "common.h"
#include "cuda_utils.cuh"
#include "nerfpipe_ext.h"

namespace nerfpipe {

namespace {

template <typename scalar_t>
__global__ void cdf_kernel(const scalar_t* __restrict__ weights, scalar_t* __restrict__ cdf, int64_t rays,
                           int64_t num_bins, scalar_t eps) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rays) return;
  const scalar_t* w = weights + r * num_bins;
  scalar_t* c = cdf + r * (num_bins + 1);
  double total = 0.0;
  for (int64_t b = 0; b < num_bins; ++b) total += static_cast<double>(w[b] + eps);
  const scalar_t total_s = static_cast<scalar_t>(total);
  double acc = 0.0;
  c[0] = scalar_t(0);
  for (int64_t b = 0; b < num_bins - 1; ++b) {
    acc += static_cast<double>((w[b] + eps) / total_s);
    const scalar_t v = static_cast<scalar_t>(acc);
    c[b + 1] = v < scalar_t(1) ? v : scalar_t(1);
  }
  c[num_bins] = scalar_t(1);
}

template <typename scalar_t>
__global__ void sample_kernel(const scalar_t* __restrict__ bins, const scalar_t* __restrict__ cdf,
                              scalar_t* __restrict__ out, int64_t rays, int64_t num_bins, int64_t n,
                              bool randomized, uint32_t s1, uint32_t s2, scalar_t eps) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= rays * n) return;
  const int64_t r = k / n;
  const int64_t i = k - r * n;
  const scalar_t* c = cdf + r * (num_bins + 1);
  const scalar_t* t = bins + r * (num_bins + 1);
  const scalar_t jitter = randomized ? static_cast<scalar_t>(hash_uniform(s1, s2, k)) : scalar_t(0.5);
  const scalar_t u = (static_cast<scalar_t>(i) + jitter) / static_cast<scalar_t>(n);
  // Number of cdf entries <= u.
  int64_t lo = 0;
  int64_t hi = num_bins + 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (c[mid] <= u) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  const int64_t below = lo - 1 < 0 ? 0 : (lo - 1 > num_bins ? num_bins : lo - 1);
  const int64_t above = lo > num_bins ? num_bins : lo;
  const scalar_t c0 = c[below];
  scalar_t denom = c[above] - c0;
  if (denom < eps) denom = scalar_t(1);
  const scalar_t b0 = t[below];
  const scalar_t b1 = t[above];
  scalar_t v = b0 + (u - c0) / denom * (b1 - b0);
  v = v < b0 ? b0 : v;
  out[k] = v > b1 ? b1 : v;
}

}  // namespace

void sample_pdf_cuda(const at::Tensor& bins, const at::Tensor& weights, at::Tensor& out, bool randomized,
                     uint32_t s1, uint32_t s2, double eps) {
  const c10::cuda::CUDAGuard guard(bins.device());
  const int64_t rays = weights.size(0);
  const int64_t num_bins = weights.size(1);
  const int64_t n = out.size(1);
  at::Tensor cdf = at::empty({rays, num_bins + 1}, bins.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(bins.scalar_type(), "sample_pdf_cuda", [&] {
    const scalar_t eps_s = static_cast<scalar_t>(eps);
    cdf_kernel<scalar_t><<<num_blocks(rays), kThreads, 0, stream>>>(
        weights.data_ptr<scalar_t>(), cdf.data_ptr<scalar_t>(), rays, num_bins, eps_s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    sample_kernel<scalar_t><<<num_blocks(rays * n), kThreads, 0, stream>>>(
        bins.data_ptr<scalar_t>(), cdf.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), rays, num_bins, n,
        randomized, s1, s2, eps_s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace nerfpipe
