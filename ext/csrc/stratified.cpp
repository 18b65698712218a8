// Stratified interval endpoints along rays (CPU kernel + host function).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "checks.h"
#include "common.h"
#include "nerfpipe_ext.h"
#include "sampling.h"

namespace nerfpipe {

namespace {

// t[r, j] for one ray, in the exact operation order of nerfpipe.sampling.stratified_endpoints_torch.
template <typename scalar_t>
void stratified_row(scalar_t near, scalar_t far, int64_t n, bool randomized, Seeds seeds, int64_t row_offset,
                    scalar_t* out) {
  const scalar_t nf = static_cast<scalar_t>(n);
  auto lin = [&](int64_t j) { return stratified_lin(near, far, j, nf); };
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
    const scalar_t u = static_cast<scalar_t>(hash_uniform(seeds.s1, seeds.s2, row_offset + j));
    out[j] = lower + (upper - lower) * u;
    prev = cur;
    cur = next;
  }
}

}  // namespace

at::Tensor stratified_endpoints(const at::Tensor& near, const at::Tensor& far, int64_t n_intervals,
                                bool randomized, int64_t s1, int64_t s2) {
  const char* fn = "stratified_endpoints";
  const Seeds seeds = seed_args(fn, s1, s2);
  check_float_pair(fn, {"near", near, 1, "[R]"}, {"far", far, 1, "[R]"});
  TORCH_CHECK_VALUE(far.size(0) == near.size(0), fn, ": argument 'far' has shape ", far.sizes(),
                    " but 'near' has ", near.sizes());
  check_contiguous(fn, "near", near);
  check_contiguous(fn, "far", far);
  TORCH_CHECK_VALUE(n_intervals >= 1, fn, ": argument 'n_intervals' must be >= 1, got ", n_intervals);

  const int64_t rays = near.size(0);
  at::Tensor out = at::empty({rays, n_intervals + 1}, near.options());
  if (rays == 0) return out;
  NERFPIPE_ON_CUDA(fn, "near", near, stratified_endpoints_cuda(near, far, out, randomized, seeds.s1, seeds.s2);
                   return out);
  AT_DISPATCH_FLOATING_TYPES(near.scalar_type(), "stratified_endpoints_cpu", [&] {
    const scalar_t* pn = near.data_ptr<scalar_t>();
    const scalar_t* pf = far.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const int64_t width = n_intervals + 1;
    const int64_t grain = std::max<int64_t>(1, 16384 / width);
    at::parallel_for(0, rays, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        stratified_row<scalar_t>(pn[r], pf[r], n_intervals, randomized, seeds, r * width, po + r * width);
      }
    });
  });
  return out;
}

}  // namespace nerfpipe
