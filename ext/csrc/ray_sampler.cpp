// Counter-based uniforms and the image batch sampler (CPU kernels + host functions).
#include <ATen/Parallel.h>

#include "checks.h"
#include "common.h"
#include "nerfpipe_ext.h"

namespace nerfpipe {

namespace {
constexpr int64_t kGrain = 4096;
}

uint32_t seed_arg(const char* fn, const char* name, int64_t value) {
  TORCH_CHECK_VALUE(value >= 0 && value <= static_cast<int64_t>(UINT32_MAX), fn, ": argument '", name,
                    "' must be a 32-bit seed in [0, 2^32), got ", value);
  return static_cast<uint32_t>(value);
}

void uniform_fill(at::Tensor out, int64_t s1, int64_t s2) {
  const uint32_t k1 = seed_arg("uniform_fill", "s1", s1);
  const uint32_t k2 = seed_arg("uniform_fill", "s2", s2);
  NERFPIPE_CHECK_DEVICE("uniform_fill", "out", out);
  NERFPIPE_CHECK_DIM("uniform_fill", "out", out, 1, "[n]");
  NERFPIPE_CHECK_CONTIGUOUS("uniform_fill", "out", out);
  TORCH_CHECK_TYPE(out.scalar_type() == at::kFloat, "uniform_fill: argument 'out' must be float32, got ",
                   out.scalar_type());
  if (out.numel() == 0) return;
  if (out.is_cuda()) {
#ifdef WITH_CUDA
    uniform_fill_cuda(out, k1, k2);
    return;
#else
    NERFPIPE_NO_CUDA("uniform_fill", "out");
#endif
  }
  float* o = out.data_ptr<float>();
  at::parallel_for(0, out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) o[i] = hash_uniform(k1, k2, i);
  });
}

void ray_indices_fill(at::Tensor out, int64_t n_images, int64_t height, int64_t width, int64_t crop_h,
                      int64_t crop_w, int64_t s1, int64_t s2) {
  const char* fn = "sample_ray_indices";
  const uint32_t k1 = seed_arg(fn, "s1", s1);
  const uint32_t k2 = seed_arg(fn, "s2", s2);
  NERFPIPE_CHECK_DEVICE("sample_ray_indices", "out", out);
  NERFPIPE_CHECK_DIM("sample_ray_indices", "out", out, 1, "[batch_size]");
  NERFPIPE_CHECK_CONTIGUOUS("sample_ray_indices", "out", out);
  TORCH_CHECK_TYPE(out.scalar_type() == at::kLong, fn, ": argument 'out' must be int64, got ",
                   out.scalar_type());
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
  if (out.is_cuda()) {
#ifdef WITH_CUDA
    ray_indices_fill_cuda(out, n_images, height, width, crop_h, crop_w, k1, k2);
    return;
#else
    NERFPIPE_NO_CUDA(fn, "out");
#endif
  }
  const uint64_t total = static_cast<uint64_t>(n_images * per_image);
  const int64_t y0 = (height - crop_h) / 2;
  const int64_t x0 = (width - crop_w) / 2;
  int64_t* o = out.data_ptr<int64_t>();
  at::parallel_for(0, out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      // Lemire's multiply-shift maps the 32-bit hash onto [0, total) without a modulo.
      const int64_t m = static_cast<int64_t>((static_cast<uint64_t>(hash_index(k1, k2, i)) * total) >> 32);
      const int64_t img = m / per_image;
      const int64_t rem = m - img * per_image;
      const int64_t y = y0 + rem / crop_w;
      const int64_t x = x0 + rem % crop_w;
      o[i] = (img * height + y) * width + x;
    }
  });
}

}  // namespace nerfpipe
