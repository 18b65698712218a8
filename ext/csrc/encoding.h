// Positional encoding and integrated positional encoding of one coordinate, shared by the CPU and CUDA
// code.
// gamma(x) = [x, sin(2^0 x), cos(2^0 x), ..., sin(2^{L-1} x), cos(2^{L-1} x)] (NeRF, Eq. 4), each block
// C channels wide. One sin/cos per coordinate, the rest by the double-angle recurrence
//   sin(2a) = 2 sin(a) cos(a),  cos(2a) = (cos(a) - sin(a)) (cos(a) + sin(a)),
// carried in double so that the recurrence error (which doubles per octave, like the angle) stays far
// below float32 resolution.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace nerfpipe {

// Row width of gamma(x) for C channels: C * (include_input + 2L).
NERFPIPE_HD int64_t pe_width(int64_t channels, int64_t num_freqs, bool include_input) {
  return channels * ((include_input ? 1 : 0) + 2 * num_freqs);
}

template <typename scalar_t>
NERFPIPE_HD void pe_forward_coord(double v, int64_t num_freqs, int64_t channels, scalar_t* out) {
  double s;
  double c;
  sincos(v, &s, &c);
  for (int64_t k = 0; k < num_freqs; ++k) {
    out[0] = static_cast<scalar_t>(s);
    out[channels] = static_cast<scalar_t>(c);
    out += 2 * channels;
    const double s2 = 2.0 * s * c;
    c = (c - s) * (c + s);
    s = s2;
  }
}

// d/dx of sum_k g_sin_k sin(2^k x) + g_cos_k cos(2^k x) = sum_k 2^k (g_sin_k cos(2^k x) - g_cos_k sin(2^k x)).
template <typename scalar_t>
NERFPIPE_HD double pe_backward_coord(double v, int64_t num_freqs, int64_t channels, const scalar_t* grad) {
  double s;
  double c;
  sincos(v, &s, &c);
  double scale = 1.0;
  double acc = 0.0;
  for (int64_t k = 0; k < num_freqs; ++k) {
    acc += scale * (static_cast<double>(grad[0]) * c - static_cast<double>(grad[channels]) * s);
    grad += 2 * channels;
    scale *= 2.0;
    const double s2 = 2.0 * s * c;
    c = (c - s) * (c + s);
    s = s2;
  }
  return acc;
}

// mip-NeRF's damping w_k = exp(-0.5 4^k var) with scale4 = 4^k: one exp per octave. The argument is exact
// (4^k is a power of two), so w_k is within the exp's own rounding. Squaring w_{k-1} twice instead (one exp
// per coordinate) multiplies the relative error of w_0 by 4^k: up to 2.5e8 ulp at k = 15 (ext/tools/
// ipe_accuracy.py measures both). Below -746 the exp is 0 in double (it underflows past the smallest
// subnormal at -745.13), which is returned without calling exp: its underflow path is slow, and at
// training variances (1e-4 .. 1e-2) the top 4 to 7 of 16 octaves take it.
constexpr double kExpUnderflow = -746.0;

NERFPIPE_HD double ipe_damping(double var, double scale4) {
  const double arg = -0.5 * scale4 * var;
  return arg < kExpUnderflow ? 0.0 : exp(arg);
}

// Integrated positional encoding of one coordinate of a diagonal Gaussian (mip-NeRF, Eq. 14):
//   sin(2^k mu) w_k and cos(2^k mu) w_k,  w_k = exp(-0.5 4^k var),  k = 0..L-1,
// written to out[k*channels] (sin block) and out[cos_offset + k*channels] (cos block).
template <typename scalar_t>
NERFPIPE_HD void ipe_forward_coord(double mu, double var, int64_t num_freqs, int64_t channels,
                                   int64_t cos_offset, scalar_t* out) {
  double s;
  double c;
  sincos(mu, &s, &c);
  double scale4 = 1.0;
  for (int64_t k = 0; k < num_freqs; ++k) {
    const double w = ipe_damping(var, scale4);
    out[k * channels] = static_cast<scalar_t>(s * w);
    out[cos_offset + k * channels] = static_cast<scalar_t>(c * w);
    const double s2 = 2.0 * s * c;
    c = (c - s) * (c + s);
    s = s2;
    scale4 *= 4.0;
  }
}

// Gradients of sum_k g_sin_k sin(2^k mu) w_k + g_cos_k cos(2^k mu) w_k:
//   d/dmu  = sum_k 2^k w_k (g_sin_k cos(2^k mu) - g_cos_k sin(2^k mu)),
//   d/dvar = sum_k -0.5 4^k w_k (g_sin_k sin(2^k mu) + g_cos_k cos(2^k mu)).
template <typename scalar_t>
NERFPIPE_HD void ipe_backward_coord(double mu, double var, int64_t num_freqs, int64_t channels,
                                    int64_t cos_offset, const scalar_t* grad, double* grad_mu,
                                    double* grad_var) {
  double s;
  double c;
  sincos(mu, &s, &c);
  double scale = 1.0;
  double acc_mu = 0.0;
  double acc_var = 0.0;
  for (int64_t k = 0; k < num_freqs; ++k) {
    const double w = ipe_damping(var, scale * scale);
    const double gs = static_cast<double>(grad[k * channels]);
    const double gc = static_cast<double>(grad[cos_offset + k * channels]);
    acc_mu += scale * w * (gs * c - gc * s);
    acc_var += -0.5 * scale * scale * w * (gs * s + gc * c);
    scale *= 2.0;
    const double s2 = 2.0 * s * c;
    c = (c - s) * (c + s);
    s = s2;
  }
  *grad_mu = acc_mu;
  *grad_var = acc_var;
}

}  // namespace nerfpipe
