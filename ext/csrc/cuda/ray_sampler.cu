// Counter-based uniforms and the image batch sampler (CUDA kernels).
#include <ATen/core/Tensor.h>

#include "common.h"
#include "cuda_utils.cuh"
#include "nerfpipe_ext.h"

namespace nerfpipe {

namespace {

__global__ void uniform_kernel(float* __restrict__ out, int64_t n, uint32_t s1, uint32_t s2) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = hash_uniform(s1, s2, i);
}

__global__ void ray_indices_kernel(int64_t* __restrict__ out, int64_t n, int64_t height, int64_t width,
                                   int64_t crop_h, int64_t crop_w, uint64_t total, uint32_t s1, uint32_t s2) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t per_image = crop_h * crop_w;
  const int64_t m = static_cast<int64_t>((static_cast<uint64_t>(hash_index(s1, s2, i)) * total) >> 32);
  const int64_t img = m / per_image;
  const int64_t rem = m - img * per_image;
  const int64_t y = (height - crop_h) / 2 + rem / crop_w;
  const int64_t x = (width - crop_w) / 2 + rem % crop_w;
  out[i] = (img * height + y) * width + x;
}

}  // namespace

void uniform_fill_cuda(at::Tensor& out, uint32_t s1, uint32_t s2) {
  const c10::cuda::CUDAGuard guard(out.device());
  const int64_t n = out.numel();
  auto stream = c10::cuda::getCurrentCUDAStream();
  uniform_kernel<<<num_blocks(n), kThreads, 0, stream>>>(out.data_ptr<float>(), n, s1, s2);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void ray_indices_fill_cuda(at::Tensor& out, int64_t n_images, int64_t height, int64_t width, int64_t crop_h,
                           int64_t crop_w, uint32_t s1, uint32_t s2) {
  const c10::cuda::CUDAGuard guard(out.device());
  const int64_t n = out.numel();
  const uint64_t total = static_cast<uint64_t>(n_images * crop_h * crop_w);
  auto stream = c10::cuda::getCurrentCUDAStream();
  ray_indices_kernel<<<num_blocks(n), kThreads, 0, stream>>>(out.data_ptr<int64_t>(), n, height, width, crop_h,
                                                             crop_w, total, s1, s2);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace nerfpipe
