// Positional encoding forward and backward (CPU kernels + host functions).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "checks.h"
#include "encoding.h"
#include "nerfpipe_ext.h"

namespace nerfpipe {

namespace {

constexpr int64_t kPointGrain = 1024;
constexpr int64_t kMaxFreqs = 30;  // 2^30 x leaves no fractional bits of a float anyway

void check_encoding_input(const char* fn, const at::Tensor& x, int64_t num_freqs) {
  NERFPIPE_CHECK_DEVICE(fn, "x", x);
  const auto dtype = x.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
                   fn, ": argument 'x' must be float16, bfloat16, float32 or float64, got ", dtype);
  TORCH_CHECK_VALUE(x.dim() == 2, fn, ": argument 'x' must be 2-D [P, C], got shape ", x.sizes());
  NERFPIPE_CHECK_CONTIGUOUS(fn, "x", x);
  TORCH_CHECK_VALUE(num_freqs >= 0 && num_freqs <= kMaxFreqs, fn, ": argument 'num_freqs' must be in [0, ",
                    kMaxFreqs, "], got ", num_freqs);
}

}  // namespace

at::Tensor positional_encoding_forward(const at::Tensor& x, int64_t num_freqs, bool include_input) {
  const char* fn = "positional_encoding_forward";
  check_encoding_input(fn, x, num_freqs);
  const int64_t points = x.size(0);
  const int64_t channels = x.size(1);
  const int64_t width = channels * ((include_input ? 1 : 0) + 2 * num_freqs);
  at::Tensor out = at::empty({points, width}, x.options());
  if (out.numel() == 0) return out;
  if (x.is_cuda()) {
#ifdef WITH_CUDA
    positional_encoding_forward_cuda(x, out, num_freqs, include_input);
    return out;
#else
    NERFPIPE_NO_CUDA(fn, "x");
#endif
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pe_forward_cpu", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const int64_t offset = include_input ? channels : 0;
    at::parallel_for(0, points, kPointGrain, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const scalar_t* xp = px + p * channels;
        scalar_t* op = po + p * width;
        for (int64_t c = 0; c < channels; ++c) {
          if (include_input) op[c] = xp[c];
          pe_forward_coord<scalar_t>(static_cast<double>(xp[c]), num_freqs, channels, op + offset + c);
        }
      }
    });
  });
  return out;
}

at::Tensor positional_encoding_backward(const at::Tensor& x, const at::Tensor& grad_out, int64_t num_freqs,
                                        bool include_input) {
  const char* fn = "positional_encoding_backward";
  check_encoding_input(fn, x, num_freqs);
  NERFPIPE_CHECK_SAME_DEVICE("positional_encoding_backward", "grad_out", grad_out, "x", x);
  NERFPIPE_CHECK_SAME_DTYPE("positional_encoding_backward", "grad_out", grad_out, "x", x);
  const int64_t points = x.size(0);
  const int64_t channels = x.size(1);
  const int64_t width = channels * ((include_input ? 1 : 0) + 2 * num_freqs);
  TORCH_CHECK_VALUE(grad_out.dim() == 2 && grad_out.size(0) == points && grad_out.size(1) == width, fn,
                    ": argument 'grad_out' must have shape [", points, ", ", width, "], got ", grad_out.sizes());
  NERFPIPE_CHECK_CONTIGUOUS("positional_encoding_backward", "grad_out", grad_out);
  at::Tensor grad_x = at::empty_like(x);
  if (grad_x.numel() == 0) return grad_x;
  if (x.is_cuda()) {
#ifdef WITH_CUDA
    positional_encoding_backward_cuda(x, grad_out, grad_x, num_freqs, include_input);
    return grad_x;
#else
    NERFPIPE_NO_CUDA(fn, "x");
#endif
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pe_backward_cpu", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pg = grad_out.data_ptr<scalar_t>();
    scalar_t* pgx = grad_x.data_ptr<scalar_t>();
    const int64_t offset = include_input ? channels : 0;
    at::parallel_for(0, points, kPointGrain, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const scalar_t* xp = px + p * channels;
        const scalar_t* gp = pg + p * width;
        for (int64_t c = 0; c < channels; ++c) {
          double acc = include_input ? static_cast<double>(gp[c]) : 0.0;
          acc += pe_backward_coord<scalar_t>(static_cast<double>(xp[c]), num_freqs, channels, gp + offset + c);
          pgx[p * channels + c] = static_cast<scalar_t>(acc);
        }
      }
    });
  });
  return grad_x;
}

}  // namespace nerfpipe
