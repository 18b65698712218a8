// Per-ray arithmetic shared by the CPU (stratified.cpp, pdf_sampler.cpp) and CUDA (cuda/stratified.cu,
// cuda/pdf_sampler.cu) sampling kernels: one definition keeps their samples bit-identical (the builds use
// no FMA contraction on either side).
#pragma once

#include <cstdint>

#include "common.h"

namespace nerfpipe {

// Endpoint j of n evenly spaced intervals on [near, far] (nf = n), as nerfpipe.sampling.stratified_endpoints_torch.
template <typename scalar_t>
NERFPIPE_HD scalar_t stratified_lin(scalar_t near, scalar_t far, int64_t j, scalar_t nf) {
  const scalar_t s = static_cast<scalar_t>(j) / nf;
  return near * (scalar_t(1) - s) + far * s;
}

// The cdf of one ray's num_bins weights w (+ eps each) into cdf[0 .. num_bins]: a leading 0, the running
// sums accumulated in double and capped at 1, and a last entry of exactly 1. Operation order follows
// nerfpipe.sampling.sample_pdf_torch.
template <typename scalar_t>
NERFPIPE_HD void pdf_cdf(const scalar_t* w, int64_t num_bins, scalar_t eps, scalar_t* cdf) {
  double total = 0.0;
  for (int64_t b = 0; b < num_bins; ++b) total += static_cast<double>(w[b] + eps);
  const scalar_t total_s = static_cast<scalar_t>(total);
  double acc = 0.0;
  cdf[0] = scalar_t(0);
  for (int64_t b = 0; b < num_bins - 1; ++b) {
    acc += static_cast<double>((w[b] + eps) / total_s);
    const scalar_t v = static_cast<scalar_t>(acc);
    cdf[b + 1] = v < scalar_t(1) ? v : scalar_t(1);  // = std::min(1, v), also for NaN
  }
  cdf[num_bins] = scalar_t(1);
}

}  // namespace nerfpipe
