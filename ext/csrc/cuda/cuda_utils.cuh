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

// Launches `kernel` with one thread per element of n (num_blocks(n) blocks of kThreads) on the current
// stream of `device`, made the current device for the launch, and checks the launch. Every kernel starts
// with `const int64_t i = thread_index(); if (i >= n) return;`, as the last block runs past n.
template <typename Kernel, typename... Args>
void launch_1d(const c10::Device& device, int64_t n, Kernel kernel, Args... args) {
  const c10::cuda::CUDAGuard guard(device);
  kernel<<<num_blocks(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The element of this thread in a launch_1d launch; 64-bit, as n can exceed 2^31.
__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// Row and column of element i of a row-major [rows, width] array.
struct RowCol {
  int64_t row;
  int64_t col;
};

__device__ __forceinline__ RowCol row_col(int64_t i, int64_t width) {
  const int64_t row = i / width;
  return {row, i - row * width};
}

}  // namespace nerfpipe
