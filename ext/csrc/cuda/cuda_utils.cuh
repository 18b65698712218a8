// Launch helpers shared by the CUDA kernels. ATen/cuda/CUDAContext.h is avoided on purpose: it pulls
// in cuSPARSE/cuBLAS headers; the stream and device guard come from c10/cuda directly.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>

namespace nerfpipe {

constexpr int kThreads = 256;

inline unsigned int num_blocks(int64_t n) {
  return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

}  // namespace nerfpipe
