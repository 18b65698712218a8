// Stratified interval endpoints along rays (CPU kernel + host function).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "checks.h"
#include "common.h"
#include "nerfpipe_ext.h"

namespace nerfpipe {

namespace {

// t[r, j] for one ray, in the exact operation order of nerfpipe.sampling.stratified_endpoints_torch.
template <typename scalar_t>
void stratified_row(scalar_t near, scalar_t far, int64_t n, bool randomized, uint32_t s1, uint32_t s2,
                    int64_t row_offset, scalar_t* out) {
  const scalar_t nf = static_cast<scalar_t>(n);
  auto lin = [&](int64_t j) {
    const scalar_t s = static_cast<scalar_t>(j) / nf;
    return near * (scalar_t(1) - s) + far * s;
  };
  if (!randomized) {
    for (int64_t j = 0; j <= n; ++j) out[j] = lin(j);
    return;
  }
  scalar_t prev = lin(0);
  scalar_t cur = prev;
  for (int64_t j = 0; j <= n; ++j) {
    const scalar_t next = j < n ? lin(j + 1) : cur;
    const scalar_t lower = j > 0 ? (prev + cur) / scalar_t(2) : cur;
    const scalar_t upper = j < n ? (cur + next) / scalar_t(2) : cur;
    const scalar_t u = static_cast<scalar_t>(hash_uniform(s1, s2, row_offset + j));
    out[j] = lower + (upper - lower) * u;
    prev = cur;
    cur = next;
  }
}

}  // namespace

at::Tensor stratified_endpoints(const at::Tensor& near, const at::Tensor& far, int64_t n_intervals,
                                bool randomized, int64_t s1, int64_t s2) {
  const char* fn = "stratified_endpoints";
  const uint32_t k1 = seed_arg(fn, "s1", s1);
  const uint32_t k2 = seed_arg(fn, "s2", s2);
  NERFPIPE_CHECK_DEVICE("stratified_endpoints", "near", near);
  NERFPIPE_CHECK_SAME_DEVICE("stratified_endpoints", "far", far, "near", near);
  NERFPIPE_CHECK_FLOAT("stratified_endpoints", "near", near);
  NERFPIPE_CHECK_SAME_DTYPE("stratified_endpoints", "far", far, "near", near);
  NERFPIPE_CHECK_DIM("stratified_endpoints", "near", near, 1, "[R]");
  NERFPIPE_CHECK_DIM("stratified_endpoints", "far", far, 1, "[R]");
  TORCH_CHECK_VALUE(far.size(0) == near.size(0), fn, ": argument 'far' has shape ", far.sizes(),
                    " but 'near' has ", near.sizes());
  NERFPIPE_CHECK_CONTIGUOUS("stratified_endpoints", "near", near);
  NERFPIPE_CHECK_CONTIGUOUS("stratified_endpoints", "far", far);
  TORCH_CHECK_VALUE(n_intervals >= 1, fn, ": argument 'n_intervals' must be >= 1, got ", n_intervals);

  const int64_t rays = near.size(0);
  at::Tensor out = at::empty({rays, n_intervals + 1}, near.options());
  if (rays == 0) return out;
  if (near.is_cuda()) {
#ifdef WITH_CUDA
    stratified_endpoints_cuda(near, far, out, randomized, k1, k2);
    return out;
#else
    NERFPIPE_NO_CUDA(fn, "near");
#endif
  }
  AT_DISPATCH_FLOATING_TYPES(near.scalar_type(), "stratified_endpoints_cpu", [&] {
    const scalar_t* pn = near.data_ptr<scalar_t>();
    const scalar_t* pf = far.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const int64_t width = n_intervals + 1;
    const int64_t grain = std::max<int64_t>(1, 16384 / width);
    at::parallel_for(0, rays, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        stratified_row<scalar_t>(pn[r], pf[r], n_intervals, randomized, k1, k2, r * width, po + r * width);
      }
    });
  });
  return out;
}

}  // namespace nerfpipe
