// Inverse-transform sampling of a piecewise-constant pdf along each ray (CPU kernel + host function).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "checks.h"
#include "common.h"
#include "nerfpipe_ext.h"
#include "sampling.h"

namespace nerfpipe {

namespace {

// One ray: the cdf (sampling.h's pdf_cdf), then a merge walk over the sorted u (searchsorted right=True),
// O(B + n) per ray. Operation order follows sample_pdf_torch. cdf has room for B+2 entries: cdf[B+1] = +inf
// is a sentinel that stops the walk without a bounds check (u can round up to exactly 1 = cdf[B]).
template <typename scalar_t>
void sample_pdf_row(const scalar_t* bins, const scalar_t* w, int64_t num_bins, int64_t n, bool randomized,
                    Seeds seeds, int64_t row_offset, scalar_t eps, scalar_t* cdf, scalar_t* out) {
  pdf_cdf(w, num_bins, eps, cdf);
  cdf[num_bins + 1] = std::numeric_limits<scalar_t>::infinity();

  // The stratified u are drawn first in a loop of their own (no loop-carried work, so it pipelines).
  const scalar_t nf = static_cast<scalar_t>(n);
  for (int64_t i = 0; i < n; ++i) {
    const scalar_t jitter =
        randomized ? static_cast<scalar_t>(hash_uniform(seeds.s1, seeds.s2, row_offset + i)) : scalar_t(0.5);
    out[i] = (static_cast<scalar_t>(i) + jitter) / nf;
  }
  int64_t idx = 0;  // number of cdf entries <= u; u is nondecreasing in i, so idx only grows
  for (int64_t i = 0; i < n; ++i) {
    const scalar_t u = out[i];
    // The usual advance of 0, 1 or 2 entries per sample is taken without branches (a data-dependent
    // branch here mispredicts about every other sample); the loop handles the rare longer runs.
    idx += cdf[idx] <= u;
    idx += cdf[idx] <= u;
    while (cdf[idx] <= u) ++idx;
    const int64_t below = std::min(std::max<int64_t>(idx - 1, 0), num_bins);
    const int64_t above = std::min(idx, num_bins);
    const scalar_t c0 = cdf[below];
    scalar_t denom = cdf[above] - c0;
    denom = denom < eps ? scalar_t(1) : denom;
    const scalar_t b0 = bins[below];
    const scalar_t b1 = bins[above];
    const scalar_t t = b0 + (u - c0) / denom * (b1 - b0);
    // Clamping to the bin keeps the samples sorted under rounding.
    out[i] = std::min(std::max(t, b0), b1);
  }
}

}  // namespace

at::Tensor sample_pdf(const at::Tensor& bins, const at::Tensor& weights, int64_t n_samples, bool randomized,
                      int64_t s1, int64_t s2, double eps) {
  const char* fn = "sample_pdf";
  const Seeds seeds = seed_args(fn, s1, s2);
  check_float_pair(fn, {"bins", bins, 2, "[R, B+1]"}, {"weights", weights, 2, "[R, B]"});
  TORCH_CHECK_VALUE(weights.size(1) >= 1, fn, ": argument 'weights' must have at least one bin, got shape ",
                    weights.sizes());
  TORCH_CHECK_VALUE(weights.size(0) == bins.size(0) && bins.size(1) == weights.size(1) + 1, fn,
                    ": argument 'bins' must have shape [R, B+1] for 'weights' of shape [R, B]; got bins ",
                    bins.sizes(), " and weights ", weights.sizes());
  check_contiguous(fn, "bins", bins);
  check_contiguous(fn, "weights", weights);
  TORCH_CHECK_VALUE(n_samples >= 1, fn, ": argument 'n_samples' must be >= 1, got ", n_samples);
  TORCH_CHECK_VALUE(eps > 0.0, fn, ": argument 'eps' must be > 0, got ", eps);

  const int64_t rays = bins.size(0);
  const int64_t num_bins = weights.size(1);
  at::Tensor out = at::empty({rays, n_samples}, bins.options());
  if (rays == 0) return out;
  NERFPIPE_ON_CUDA(fn, "bins", bins, sample_pdf_cuda(bins, weights, out, randomized, seeds.s1, seeds.s2, eps);
                   return out);
  AT_DISPATCH_FLOATING_TYPES(bins.scalar_type(), "sample_pdf_cpu", [&] {
    const scalar_t* pb = bins.data_ptr<scalar_t>();
    const scalar_t* pw = weights.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const scalar_t eps_s = static_cast<scalar_t>(eps);
    const int64_t grain = std::max<int64_t>(1, 8192 / (num_bins + n_samples));
    at::parallel_for(0, rays, grain, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> cdf(num_bins + 2);
      for (int64_t r = begin; r < end; ++r) {
        sample_pdf_row<scalar_t>(pb + r * (num_bins + 1), pw + r * num_bins, num_bins, n_samples, randomized,
                                 seeds, r * n_samples, eps_s, cdf.data(), po + r * n_samples);
      }
    });
  });
  return out;
}

}  // namespace nerfpipe
