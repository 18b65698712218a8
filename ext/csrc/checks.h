// Input checks shared by the host functions. Every message names the function and the
// argument; TORCH_CHECK_VALUE / TORCH_CHECK_TYPE surface in Python as ValueError / TypeError.
#pragma once

#include <ATen/ATen.h>

#define NERFPIPE_CHECK_DEVICE(FN, NAME, T)                                                       \
  TORCH_CHECK((T).device().is_cpu() || (T).device().is_cuda(), FN, ": argument '", NAME,        \
              "' must be a CPU or CUDA tensor, got device ", (T).device())

#define NERFPIPE_CHECK_SAME_DEVICE(FN, NAME, T, REF_NAME, REF)                                   \
  TORCH_CHECK((T).device() == (REF).device(), FN, ": argument '", NAME, "' is on ", (T).device(), \
              " but '", REF_NAME, "' is on ", (REF).device(), "; both must be on the same device")

#define NERFPIPE_CHECK_CONTIGUOUS(FN, NAME, T) \
  TORCH_CHECK_VALUE((T).is_contiguous(), FN, ": argument '", NAME, "' must be contiguous")

#define NERFPIPE_CHECK_DIM(FN, NAME, T, NDIM, SHAPE)                                                 \
  TORCH_CHECK_VALUE((T).dim() == (NDIM), FN, ": argument '", NAME, "' must be ", NDIM, "-D ", SHAPE, \
                    ", got shape ", (T).sizes())

#define NERFPIPE_CHECK_FLOAT(FN, NAME, T)                                                          \
  TORCH_CHECK_TYPE((T).scalar_type() == at::kFloat || (T).scalar_type() == at::kDouble, FN,         \
                   ": argument '", NAME, "' must be float32 or float64, got ", (T).scalar_type())

#define NERFPIPE_CHECK_SAME_DTYPE(FN, NAME, T, REF_NAME, REF)                                        \
  TORCH_CHECK_TYPE((T).scalar_type() == (REF).scalar_type(), FN, ": argument '", NAME, "' has dtype ", \
                   (T).scalar_type(), " but '", REF_NAME, "' has ", (REF).scalar_type())

// A CUDA tensor reached a build without CUDA kernels: say so instead of failing later.
#define NERFPIPE_NO_CUDA(FN, NAME)                                                                 \
  TORCH_CHECK(false, FN, ": argument '", NAME, "' is a CUDA tensor but nerfpipe._ext was built ",   \
              "without CUDA kernels; rebuild on a machine with a CUDA toolkit or use the torch backend")
