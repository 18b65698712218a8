// Inverse-transform sampling (CUDA kernels): one thread per ray builds the cdf (sampling.h's pdf_cdf, as on
// the CPU), then one thread per sample binary-searches it (searchsorted right=True) and interpolates inside
// the bin.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include "common.h"
#include "cuda_utils.cuh"
#include "nerfpipe_ext.h"
#include "sampling.h"

namespace nerfpipe {

namespace {

template <typename scalar_t>
__global__ void cdf_kernel(const scalar_t* __restrict__ weights, scalar_t* __restrict__ cdf, int64_t rays,
                           int64_t num_bins, scalar_t eps) {
  const int64_t r = thread_index();
  if (r >= rays) return;
  pdf_cdf(weights + r * num_bins, num_bins, eps, cdf + r * (num_bins + 1));
}

template <typename scalar_t>
__global__ void sample_kernel(const scalar_t* __restrict__ bins, const scalar_t* __restrict__ cdf,
                              scalar_t* __restrict__ out, int64_t rays, int64_t num_bins, int64_t n,
                              bool randomized, uint32_t s1, uint32_t s2, scalar_t eps) {
  const int64_t k = thread_index();
  if (k >= rays * n) return;
  const auto [r, i] = row_col(k, n);
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
  const int64_t rays = weights.size(0);
  const int64_t num_bins = weights.size(1);
  const int64_t n = out.size(1);
  at::Tensor cdf = at::empty({rays, num_bins + 1}, bins.options());
  AT_DISPATCH_FLOATING_TYPES(bins.scalar_type(), "sample_pdf_cuda", [&] {
    const scalar_t eps_s = static_cast<scalar_t>(eps);
    launch_1d(bins.device(), rays, cdf_kernel<scalar_t>, weights.data_ptr<scalar_t>(), cdf.data_ptr<scalar_t>(),
              rays, num_bins, eps_s);
    launch_1d(bins.device(), rays * n, sample_kernel<scalar_t>, bins.data_ptr<scalar_t>(),
              cdf.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), rays, num_bins, n, randomized, s1, s2, eps_s);
  });
}

}  // namespace nerfpipe
