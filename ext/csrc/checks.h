// Input checks shared by the host functions. Every message names the function and the argument;
// TORCH_CHECK_VALUE / TORCH_CHECK_TYPE surface in Python as ValueError / TypeError. The tests match the
// messages word for word, and callers keep the order of their checks (it decides which error a call with
// several bad arguments gets).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace nerfpipe {

inline void check_device(const char* fn, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu() || t.device().is_cuda(), fn, ": argument '", name,
              "' must be a CPU or CUDA tensor, got device ", t.device());
}

inline void check_same_device(const char* fn, const char* name, const at::Tensor& t, const char* ref_name,
                              const at::Tensor& ref) {
  TORCH_CHECK(t.device() == ref.device(), fn, ": argument '", name, "' is on ", t.device(), " but '", ref_name,
              "' is on ", ref.device(), "; both must be on the same device");
}

inline void check_contiguous(const char* fn, const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.is_contiguous(), fn, ": argument '", name, "' must be contiguous");
}

// `shape` is the documented shape, e.g. "[R, B+1]".
inline void check_dim(const char* fn, const char* name, const at::Tensor& t, int64_t ndim, const char* shape) {
  TORCH_CHECK_VALUE(t.dim() == ndim, fn, ": argument '", name, "' must be ", ndim, "-D ", shape, ", got shape ",
                    t.sizes());
}

inline void check_float(const char* fn, const char* name, const at::Tensor& t) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, fn, ": argument '", name,
                   "' must be float32 or float64, got ", t.scalar_type());
}

inline void check_same_dtype(const char* fn, const char* name, const at::Tensor& t, const char* ref_name,
                             const at::Tensor& ref) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), fn, ": argument '", name, "' has dtype ",
                   t.scalar_type(), " but '", ref_name, "' has ", ref.scalar_type());
}

// The 1-D output buffer of a fill op: on a CPU or CUDA device, 1-D, contiguous, of one dtype
// (`dtype_name` as the message spells it, e.g. "int64").
inline void check_fill_output(const char* fn, const at::Tensor& out, const char* shape, at::ScalarType dtype,
                              const char* dtype_name) {
  check_device(fn, "out", out);
  check_dim(fn, "out", out, 1, shape);
  check_contiguous(fn, "out", out);
  TORCH_CHECK_TYPE(out.scalar_type() == dtype, fn, ": argument 'out' must be ", dtype_name, ", got ",
                   out.scalar_type());
}

// A tensor argument as the messages name it, with the rank and documented shape it must have.
struct ArgSpec {
  const char* name;
  const at::Tensor& tensor;
  int64_t dim;
  const char* shape;
};

// The two float inputs of a sampler (near/far, bins/weights): `a` on a CPU or CUDA device and float32 or
// float64, `b` on a's device with a's dtype, each of its rank. The shapes' relation and contiguity are the
// caller's to check next, in that order.
inline void check_float_pair(const char* fn, const ArgSpec& a, const ArgSpec& b) {
  check_device(fn, a.name, a.tensor);
  check_same_device(fn, b.name, b.tensor, a.name, a.tensor);
  check_float(fn, a.name, a.tensor);
  check_same_dtype(fn, b.name, b.tensor, a.name, a.tensor);
  check_dim(fn, a.name, a.tensor, a.dim, a.shape);
  check_dim(fn, b.name, b.tensor, b.dim, b.shape);
}

// The seed words (s1, s2) of the counter-based hash, each passed as a Python int.
struct Seeds {
  uint32_t s1;
  uint32_t s2;
};

// Converts a seed argument (a 32-bit word) or raises ValueError.
inline uint32_t seed_arg(const char* fn, const char* name, int64_t value) {
  TORCH_CHECK_VALUE(value >= 0 && value <= static_cast<int64_t>(UINT32_MAX), fn, ": argument '", name,
                    "' must be a 32-bit seed in [0, 2^32), got ", value);
  return static_cast<uint32_t>(value);
}

// s1 is checked first (a braced list is evaluated left to right).
inline Seeds seed_args(const char* fn, int64_t s1, int64_t s2) {
  return Seeds{seed_arg(fn, "s1", s1), seed_arg(fn, "s2", s2)};
}

}  // namespace nerfpipe

// A CUDA tensor reached a build without CUDA kernels: say so instead of failing later.
#define NERFPIPE_NO_CUDA(FN, NAME)                                                                 \
  TORCH_CHECK(false, FN, ": argument '", NAME, "' is a CUDA tensor but nerfpipe._ext was built ",   \
              "without CUDA kernels; rebuild on a machine with a CUDA toolkit or use the torch backend")

// The CUDA branch of a host function, placed after its checks: when T is a CUDA tensor, run the statements
// (a call of its *_cuda launcher, then a return); a build without CUDA kernels raises NERFPIPE_NO_CUDA for
// argument NAME instead. A macro, because the launchers are declared only under WITH_CUDA.
#ifdef WITH_CUDA
#define NERFPIPE_ON_CUDA(FN, NAME, T, ...) \
  do {                                     \
    if ((T).is_cuda()) {                   \
      __VA_ARGS__;                         \
    }                                      \
  } while (false)
#else
#define NERFPIPE_ON_CUDA(FN, NAME, T, ...) \
  do {                                     \
    if ((T).is_cuda()) {                   \
      NERFPIPE_NO_CUDA(FN, NAME);          \
    }                                      \
  } while (false)
#endif
