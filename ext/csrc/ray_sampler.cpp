// Counter-based uniforms and the image batch sampler (CPU kernels + host functions).
#include <ATen/Parallel.h>

#include "checks.h"
#include "common.h"
#include "nerfpipe_ext.h"

namespace nerfpipe {

namespace {
constexpr int64_t kGrain = 4096;
}

void uniform_fill(at::Tensor out, int64_t s1, int64_t s2) {
  const char* fn = "uniform_fill";
  const Seeds seeds = seed_args(fn, s1, s2);
  check_fill_output(fn, out, "[n]", at::kFloat, "float32");
  if (out.numel() == 0) return;
  NERFPIPE_ON_CUDA(fn, "out", out, uniform_fill_cuda(out, seeds.s1, seeds.s2); return);
  float* o = out.data_ptr<float>();
  at::parallel_for(0, out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) o[i] = hash_uniform(seeds.s1, seeds.s2, i);
  });
}

void ray_indices_fill(at::Tensor out, int64_t n_images, int64_t height, int64_t width, int64_t crop_h,
                      int64_t crop_w, int64_t s1, int64_t s2) {
  const char* fn = "sample_ray_indices";
  const Seeds seeds = seed_args(fn, s1, s2);
  check_fill_output(fn, out, "[batch_size]", at::kLong, "int64");
  TORCH_CHECK_VALUE(n_images >= 1, fn, ": argument 'n_images' must be >= 1, got ", n_images);
  TORCH_CHECK_VALUE(height >= 1, fn, ": argument 'height' must be >= 1, got ", height);
  TORCH_CHECK_VALUE(width >= 1, fn, ": argument 'width' must be >= 1, got ", width);
  TORCH_CHECK_VALUE(crop_h >= 1 && crop_h <= height, fn, ": argument 'crop_h' must be in [1, height=", height,
                    "], got ", crop_h);
  TORCH_CHECK_VALUE(crop_w >= 1 && crop_w <= width, fn, ": argument 'crop_w' must be in [1, width=", width,
                    "], got ", crop_w);
  const int64_t per_image = crop_h * crop_w;
  // The 32x32-bit multiply-shift below needs the pixel count to fit in 31 bits.
  TORCH_CHECK_VALUE(n_images <= (INT64_C(1) << 31) / per_image, fn, ": n_images*crop_h*crop_w = ", n_images,
                    "*", per_image, " exceeds 2^31 pixels");
  if (out.numel() == 0) return;
  NERFPIPE_ON_CUDA(fn, "out", out,
                   ray_indices_fill_cuda(out, n_images, height, width, crop_h, crop_w, seeds.s1, seeds.s2);
                   return);
  const uint64_t total = static_cast<uint64_t>(n_images * per_image);
  const int64_t y0 = (height - crop_h) / 2;
  const int64_t x0 = (width - crop_w) / 2;
  int64_t* o = out.data_ptr<int64_t>();
  at::parallel_for(0, out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      // Lemire's multiply-shift maps the 32-bit hash onto [0, total) without a modulo.
      const uint64_t h = hash_index(seeds.s1, seeds.s2, i);
      const int64_t m = static_cast<int64_t>((h * total) >> 32);
      const int64_t img = m / per_image;
      const int64_t rem = m - img * per_image;
      const int64_t y = y0 + rem / crop_w;
      const int64_t x = x0 + rem % crop_w;
      o[i] = (img * height + y) * width + x;
    }
  });
}

}  // namespace nerfpipe
