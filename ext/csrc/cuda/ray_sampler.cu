// Counter-based uniforms and the image batch sampler (CUDA kernels).
#include <ATen/core/Tensor.h>

#include "common.h"
#include "cuda_utils.cuh"
#include "nerfpipe_ext.h"

namespace nerfpipe {

namespace {

__global__ void uniform_kernel(float* __restrict__ out, int64_t n, uint32_t s1, uint32_t s2) {
  const int64_t i = thread_index();
  if (i >= n) return;
  out[i] = hash_uniform(s1, s2, i);
}

__global__ void ray_indices_kernel(int64_t* __restrict__ out, int64_t n, int64_t height, int64_t width,
                                   int64_t crop_h, int64_t crop_w, uint64_t total, uint32_t s1, uint32_t s2) {
  const int64_t i = thread_index();
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
  const int64_t n = out.numel();
  launch_1d(out.device(), n, uniform_kernel, out.data_ptr<float>(), n, s1, s2);
}

void ray_indices_fill_cuda(at::Tensor& out, int64_t n_images, int64_t height, int64_t width, int64_t crop_h,
                           int64_t crop_w, uint32_t s1, uint32_t s2) {
  const int64_t n = out.numel();
  const uint64_t total = static_cast<uint64_t>(n_images * crop_h * crop_w);
  launch_1d(out.device(), n, ray_indices_kernel, out.data_ptr<int64_t>(), n, height, width, crop_h, crop_w, total,
            s1, s2);
}

}  // namespace nerfpipe
