// Positional encoding and mip-NeRF's integrated positional encoding, forward and backward (CPU kernels +
// host functions).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "checks.h"
#include "encoding.h"
#include "nerfpipe_ext.h"

namespace nerfpipe {

namespace {

constexpr int64_t kPointGrain = 1024;
constexpr int64_t kMaxFreqs = 30;  // 2^30 x leaves no fractional bits of a float anyway

void check_encoding_input(const char* fn, const at::Tensor& x, int64_t num_freqs, const char* name = "x") {
  check_device(fn, name, x);
  const auto dtype = x.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
                   fn, ": argument '", name, "' must be float16, bfloat16, float32 or float64, got ", dtype);
  check_dim(fn, name, x, 2, "[P, C]");
  check_contiguous(fn, name, x);
  TORCH_CHECK_VALUE(num_freqs >= 0 && num_freqs <= kMaxFreqs, fn, ": argument 'num_freqs' must be in [0, ",
                    kMaxFreqs, "], got ", num_freqs);
}

// grad_out of a backward: on the device and of the dtype of `ref` (x or mean), [points, width], contiguous.
void check_grad_out(const char* fn, const at::Tensor& grad_out, const char* ref_name, const at::Tensor& ref,
                    int64_t points, int64_t width) {
  check_same_device(fn, "grad_out", grad_out, ref_name, ref);
  check_same_dtype(fn, "grad_out", grad_out, ref_name, ref);
  TORCH_CHECK_VALUE(grad_out.dim() == 2 && grad_out.size(0) == points && grad_out.size(1) == width, fn,
                    ": argument 'grad_out' must have shape [", points, ", ", width, "], got ", grad_out.sizes());
  check_contiguous(fn, "grad_out", grad_out);
}

// The CPU kernels work on blocks of about kBlockCoords consecutive coordinates (x is [P, C] contiguous, so
// a block of whole points is a contiguous run of x). First a table of sin(2^k x), cos(2^k x) for the block:
// one sincos per coordinate, then per octave k one pass over the block, whose coordinates are independent,
// so the double-angle recurrence runs at throughput instead of at the latency of one coordinate's serial
// chain. Then the rows of the output (forward) or of grad_out (backward) are streamed in memory order.
// encoding.h has the one-coordinate version the CUDA kernels use; the arithmetic is the same term by term.
constexpr int64_t kBlockCoords = 120;

// The encoding is 2L+1 times larger than x, and a fresh large buffer costs one page fault (zeroing 4 KiB)
// per page on first touch, which at training sizes took longer than computing the encoding. Asking for
// transparent huge pages (honoured when THP is in 'madvise' or 'always' mode) cuts the faults 512-fold.
// Best effort: only the 2 MiB-aligned interior is advised, and a failing madvise changes nothing.
constexpr uintptr_t kHugePage = uintptr_t(1) << 21;

void advise_huge_pages(void* ptr, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes < 4 * kHugePage) return;
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(ptr) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(ptr) + bytes) & ~(kHugePage - 1);
  if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)ptr;
  (void)bytes;
#endif
}

int64_t block_points(int64_t channels) { return std::max<int64_t>(1, kBlockCoords / channels); }

// sin_tab[k * n + j] = sin(2^k x_j), cos_tab likewise, for the n coordinates x_j of one block.
template <typename scalar_t>
void pe_fill_tables(const scalar_t* x, int64_t n, int64_t num_freqs, double* sin_tab, double* cos_tab) {
  if (num_freqs == 0) return;  // no table rows (the buffers may hold a single placeholder)
  for (int64_t j = 0; j < n; ++j) sincos(static_cast<double>(x[j]), sin_tab + j, cos_tab + j);
  for (int64_t k = 1; k < num_freqs; ++k) {
    const double* sp = sin_tab + (k - 1) * n;
    const double* cp = cos_tab + (k - 1) * n;
    double* sk = sin_tab + k * n;
    double* ck = cos_tab + k * n;
    for (int64_t j = 0; j < n; ++j) {
      sk[j] = 2.0 * sp[j] * cp[j];
      ck[j] = (cp[j] - sp[j]) * (cp[j] + sp[j]);
    }
  }
}

// mip-NeRF's damping table w_tab[k * n + j] = exp(-0.5 4^k var_j) for one block, one exp per entry
// (encoding.h's ipe_damping, which says why not w_{k-1}^4).
template <typename scalar_t>
void ipe_fill_damping(const scalar_t* var, int64_t n, int64_t num_freqs, double* w_tab) {
  double scale4 = 1.0;
  for (int64_t k = 0; k < num_freqs; ++k) {
    double* wk = w_tab + k * n;
    for (int64_t j = 0; j < n; ++j) wk[j] = ipe_damping(static_cast<double>(var[j]), scale4);
    scale4 *= 4.0;
  }
}

// Walks [begin, end) in blocks of points and calls body(p0, np, n, sin_tab, cos_tab, w_tab) for each block
// with the sin/cos tables of its n = np * channels coordinates filled (shared by forward and backward of
// both encodings). With `var` (the integrated encoding) the damping table w_tab is filled too, else it is null.
template <typename scalar_t, typename Body>
void encoding_for_each_block(const scalar_t* x, const scalar_t* var, int64_t begin, int64_t end,
                             int64_t channels, int64_t num_freqs, Body&& body) {
  const int64_t step = block_points(channels);
  const int64_t tab = num_freqs * step * channels;
  std::vector<double> buf(std::max<int64_t>((var != nullptr ? 3 : 2) * tab, 1));
  double* sin_tab = buf.data();
  double* cos_tab = sin_tab + tab;
  double* w_tab = var != nullptr ? cos_tab + tab : nullptr;
  for (int64_t p0 = begin; p0 < end; p0 += step) {
    const int64_t np = std::min(step, end - p0);
    const int64_t n = np * channels;
    pe_fill_tables<scalar_t>(x + p0 * channels, n, num_freqs, sin_tab, cos_tab);
    if (var != nullptr) ipe_fill_damping<scalar_t>(var + p0 * channels, n, num_freqs, w_tab);
    body(p0, np, n, static_cast<const double*>(sin_tab), static_cast<const double*>(cos_tab),
         static_cast<const double*>(w_tab));
  }
}

template <typename scalar_t>
void pe_forward_rows(const scalar_t* x, int64_t begin, int64_t end, int64_t channels, int64_t num_freqs,
                     bool include_input, scalar_t* out) {
  const int64_t width = pe_width(channels, num_freqs, include_input);
  encoding_for_each_block<scalar_t>(x, nullptr, begin, end, channels, num_freqs,
                                    [&](int64_t p0, int64_t np, int64_t n, const double* sin_tab,
                                        const double* cos_tab, const double* /*w_tab*/) {
    const scalar_t* xb = x + p0 * channels;
    scalar_t* o = out + p0 * width;
    for (int64_t q = 0; q < np; ++q) {
      const int64_t j0 = q * channels;
      if (include_input) {
        for (int64_t ch = 0; ch < channels; ++ch) *o++ = xb[j0 + ch];
      }
      for (int64_t k = 0; k < num_freqs; ++k) {
        const double* sk = sin_tab + k * n + j0;
        const double* ck = cos_tab + k * n + j0;
        for (int64_t ch = 0; ch < channels; ++ch) o[ch] = static_cast<scalar_t>(sk[ch]);
        for (int64_t ch = 0; ch < channels; ++ch) o[channels + ch] = static_cast<scalar_t>(ck[ch]);
        o += 2 * channels;
      }
    }
  });
}

template <typename scalar_t>
void pe_backward_rows(const scalar_t* x, const scalar_t* grad, int64_t begin, int64_t end, int64_t channels,
                      int64_t num_freqs, bool include_input, scalar_t* grad_x) {
  const int64_t width = pe_width(channels, num_freqs, include_input);
  encoding_for_each_block<scalar_t>(x, nullptr, begin, end, channels, num_freqs,
                                    [&](int64_t p0, int64_t np, int64_t n, const double* sin_tab,
                                        const double* cos_tab, const double* /*w_tab*/) {
    const scalar_t* g = grad + p0 * width;
    scalar_t* gx = grad_x + p0 * channels;
    for (int64_t q = 0; q < np; ++q) {
      const int64_t j0 = q * channels;
      const scalar_t* gi = g;
      if (include_input) g += channels;
      for (int64_t ch = 0; ch < channels; ++ch) {
        // sum_k 2^k (g_sin_k cos(2^k x) - g_cos_k sin(2^k x)), accumulated in the order of encoding.h
        double acc = 0.0;
        double scale = 1.0;
        for (int64_t k = 0; k < num_freqs; ++k) {
          const scalar_t* gk = g + 2 * k * channels;
          acc += scale * (static_cast<double>(gk[ch]) * cos_tab[k * n + j0 + ch] -
                          static_cast<double>(gk[channels + ch]) * sin_tab[k * n + j0 + ch]);
          scale *= 2.0;
        }
        double total = include_input ? static_cast<double>(gi[ch]) : 0.0;
        total += acc;
        gx[j0 + ch] = static_cast<scalar_t>(total);
      }
      g += 2 * num_freqs * channels;
    }
  });
}

// Integrated positional encoding rows: out[p] = [w_k sin(2^k mu) for k, c | w_k cos(2^k mu) for k, c], each
// block frequency-major, channel-minor (index k*C + c), as nerfpipe.encoding.integrated_pos_enc.
template <typename scalar_t>
void ipe_forward_rows(const scalar_t* mean, const scalar_t* var, int64_t begin, int64_t end, int64_t channels,
                      int64_t num_freqs, scalar_t* out) {
  const int64_t half = channels * num_freqs;
  encoding_for_each_block<scalar_t>(mean, var, begin, end, channels, num_freqs,
                                    [&](int64_t p0, int64_t np, int64_t n, const double* sin_tab,
                                        const double* cos_tab, const double* w_tab) {
    scalar_t* o = out + p0 * 2 * half;
    for (int64_t q = 0; q < np; ++q) {
      const int64_t j0 = q * channels;
      for (int64_t k = 0; k < num_freqs; ++k) {
        const double* sk = sin_tab + k * n + j0;
        const double* ck = cos_tab + k * n + j0;
        const double* wk = w_tab + k * n + j0;
        for (int64_t ch = 0; ch < channels; ++ch) {
          o[k * channels + ch] = static_cast<scalar_t>(sk[ch] * wk[ch]);
          o[half + k * channels + ch] = static_cast<scalar_t>(ck[ch] * wk[ch]);
        }
      }
      o += 2 * half;
    }
  });
}

template <typename scalar_t>
void ipe_backward_rows(const scalar_t* mean, const scalar_t* var, const scalar_t* grad, int64_t begin,
                       int64_t end, int64_t channels, int64_t num_freqs, scalar_t* grad_mean,
                       scalar_t* grad_var) {
  const int64_t half = channels * num_freqs;
  encoding_for_each_block<scalar_t>(mean, var, begin, end, channels, num_freqs,
                                    [&](int64_t p0, int64_t np, int64_t n, const double* sin_tab,
                                        const double* cos_tab, const double* w_tab) {
    for (int64_t q = 0; q < np; ++q) {
      const scalar_t* g = grad + (p0 + q) * 2 * half;
      const int64_t j0 = q * channels;
      for (int64_t ch = 0; ch < channels; ++ch) {
        // The sums of encoding.h's ipe_backward_coord, term by term in the same order.
        double acc_mu = 0.0;
        double acc_var = 0.0;
        double scale = 1.0;
        for (int64_t k = 0; k < num_freqs; ++k) {
          const int64_t t = k * n + j0 + ch;
          const double gs = static_cast<double>(g[k * channels + ch]);
          const double gc = static_cast<double>(g[half + k * channels + ch]);
          acc_mu += scale * w_tab[t] * (gs * cos_tab[t] - gc * sin_tab[t]);
          acc_var += -0.5 * scale * scale * w_tab[t] * (gs * sin_tab[t] + gc * cos_tab[t]);
          scale *= 2.0;
        }
        grad_mean[(p0 + q) * channels + ch] = static_cast<scalar_t>(acc_mu);
        grad_var[(p0 + q) * channels + ch] = static_cast<scalar_t>(acc_var);
      }
    }
  });
}

}  // namespace

at::Tensor positional_encoding_forward(const at::Tensor& x, int64_t num_freqs, bool include_input) {
  const char* fn = "positional_encoding_forward";
  check_encoding_input(fn, x, num_freqs);
  const int64_t points = x.size(0);
  const int64_t channels = x.size(1);
  at::Tensor out = at::empty({points, pe_width(channels, num_freqs, include_input)}, x.options());
  if (out.numel() == 0) return out;
  NERFPIPE_ON_CUDA(fn, "x", x, positional_encoding_forward_cuda(x, out, num_freqs, include_input); return out);
  advise_huge_pages(out.data_ptr(), out.nbytes());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pe_forward_cpu", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, points, kPointGrain, [&](int64_t begin, int64_t end) {
      pe_forward_rows<scalar_t>(px, begin, end, channels, num_freqs, include_input, po);
    });
  });
  return out;
}

at::Tensor positional_encoding_backward(const at::Tensor& x, const at::Tensor& grad_out, int64_t num_freqs,
                                        bool include_input) {
  const char* fn = "positional_encoding_backward";
  check_encoding_input(fn, x, num_freqs);
  const int64_t points = x.size(0);
  const int64_t channels = x.size(1);
  check_grad_out(fn, grad_out, "x", x, points, pe_width(channels, num_freqs, include_input));
  at::Tensor grad_x = at::empty_like(x);
  if (grad_x.numel() == 0) return grad_x;
  NERFPIPE_ON_CUDA(fn, "x", x, positional_encoding_backward_cuda(x, grad_out, grad_x, num_freqs, include_input);
                   return grad_x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pe_backward_cpu", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pg = grad_out.data_ptr<scalar_t>();
    scalar_t* pgx = grad_x.data_ptr<scalar_t>();
    at::parallel_for(0, points, kPointGrain, [&](int64_t begin, int64_t end) {
      pe_backward_rows<scalar_t>(px, pg, begin, end, channels, num_freqs, include_input, pgx);
    });
  });
  return grad_x;
}

namespace {

void check_ipe_inputs(const char* fn, const at::Tensor& mean, const at::Tensor& var, int64_t num_freqs) {
  check_encoding_input(fn, mean, num_freqs, "mean");
  check_same_device(fn, "var", var, "mean", mean);
  check_same_dtype(fn, "var", var, "mean", mean);
  TORCH_CHECK_VALUE(var.sizes() == mean.sizes(), fn, ": argument 'var' must have the shape of 'mean' ",
                    mean.sizes(), ", got ", var.sizes());
  check_contiguous(fn, "var", var);
}

}  // namespace

at::Tensor integrated_pos_enc_forward(const at::Tensor& mean, const at::Tensor& var, int64_t num_freqs) {
  const char* fn = "integrated_pos_enc_forward";
  check_ipe_inputs(fn, mean, var, num_freqs);
  const int64_t points = mean.size(0);
  const int64_t channels = mean.size(1);
  at::Tensor out = at::empty({points, 2 * channels * num_freqs}, mean.options());
  if (out.numel() == 0) return out;
  NERFPIPE_ON_CUDA(fn, "mean", mean, integrated_pos_enc_forward_cuda(mean, var, out, num_freqs); return out);
  advise_huge_pages(out.data_ptr(), out.nbytes());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mean.scalar_type(), "ipe_forward_cpu", [&] {
    const scalar_t* pm = mean.data_ptr<scalar_t>();
    const scalar_t* pv = var.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, points, kPointGrain, [&](int64_t begin, int64_t end) {
      ipe_forward_rows<scalar_t>(pm, pv, begin, end, channels, num_freqs, po);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> integrated_pos_enc_backward(const at::Tensor& mean, const at::Tensor& var,
                                                               const at::Tensor& grad_out, int64_t num_freqs) {
  const char* fn = "integrated_pos_enc_backward";
  check_ipe_inputs(fn, mean, var, num_freqs);
  const int64_t points = mean.size(0);
  const int64_t channels = mean.size(1);
  check_grad_out(fn, grad_out, "mean", mean, points, 2 * channels * num_freqs);
  at::Tensor grad_mean = at::empty_like(mean);
  at::Tensor grad_var = at::empty_like(var);
  if (grad_mean.numel() == 0) return {grad_mean, grad_var};
  NERFPIPE_ON_CUDA(fn, "mean", mean,
                   integrated_pos_enc_backward_cuda(mean, var, grad_out, grad_mean, grad_var, num_freqs);
                   return {grad_mean, grad_var});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mean.scalar_type(), "ipe_backward_cpu", [&] {
    const scalar_t* pm = mean.data_ptr<scalar_t>();
    const scalar_t* pv = var.data_ptr<scalar_t>();
    const scalar_t* pg = grad_out.data_ptr<scalar_t>();
    scalar_t* pgm = grad_mean.data_ptr<scalar_t>();
    scalar_t* pgv = grad_var.data_ptr<scalar_t>();
    at::parallel_for(0, points, kPointGrain, [&](int64_t begin, int64_t end) {
      ipe_backward_rows<scalar_t>(pm, pv, pg, begin, end, channels, num_freqs, pgm, pgv);
    });
  });
  return {grad_mean, grad_var};
}

}  // namespace nerfpipe
