// The occupancy-grid estimator (CUDA kernels): marching (one thread per ray, a counting pass and a filling
// pass around an exclusive cumsum), packed volume rendering forward and backward (one thread per ray, its
// segment summed in order: deterministic, no atomics) and the grid update's amax scatter (atomicMax on an
// order-preserving integer key: the max does not depend on the order of the writes). The formulas are
// occgrid.h's, shared with the CPU kernels (nerfacc's OccGridEstimator, Li et al. 2023).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include "common.h"
#include "cuda_utils.cuh"
#include "nerfpipe_ext.h"
#include "occgrid.h"
#include "occgrid_host.h"

namespace nerfpipe {

namespace {

// Sums of float32 in float32 (double is slow on most GPUs), of float64 in float64.
template <typename T>
using Acc = at::opmath_type<T>;

template <typename T>
__device__ __forceinline__ RaySpan<T> ray_span_of(int64_t r, const T* o, const T* d, const T* norm, const T* near,
                                                  const T* far, MarchGrid<T> g, T step, bool randomized,
                                                  uint32_t s1, uint32_t s2) {
  const T u = randomized ? static_cast<T>(hash_uniform(s1, s2, r)) : T(0);
  return ray_span<T>(o + 3 * r, d + 3 * r, near[r], far[r], norm[r], g, step, u);
}

// Pass 1: kept samples of ray r (march_ray: empty cells skipped, output unchanged).
template <typename T>
__global__ void march_count_kernel(const T* __restrict__ o, const T* __restrict__ d, const T* __restrict__ norm,
                                   const T* __restrict__ near, const T* __restrict__ far, MarchGrid<T> g, T step,
                                   bool randomized, uint32_t s1, uint32_t s2, int64_t rays,
                                   int64_t* __restrict__ counts) {
  const int64_t r = thread_index();
  if (r >= rays) return;
  CountSteps count;
  march_ray(o + 3 * r, d + 3 * r, ray_span_of(r, o, d, norm, near, far, g, step, randomized, s1, s2), g, count);
  counts[r] = count.kept;
}

// Pass 2: the same steps, the kept ones written from the ray's first sample on.
template <typename T>
__global__ void march_fill_kernel(const T* __restrict__ o, const T* __restrict__ d, const T* __restrict__ norm,
                                  const T* __restrict__ near, const T* __restrict__ far, MarchGrid<T> g, T step,
                                  bool randomized, uint32_t s1, uint32_t s2, int64_t rays,
                                  const int64_t* __restrict__ first, const int64_t* __restrict__ counts,
                                  int64_t* __restrict__ ray_indices, T* __restrict__ starts, T* __restrict__ ends) {
  const int64_t r = thread_index();
  if (r >= rays || counts[r] == 0) return;
  FillSteps<T> fill{starts, ends, ray_indices, r, first[r]};
  march_ray(o + 3 * r, d + 3 * r, ray_span_of(r, o, d, norm, near, far, g, step, randomized, s1, s2), g, fill);
}

__device__ __forceinline__ bool segment(const int64_t* info, int64_t r, int64_t n, int64_t& first,
                                        int64_t& count) {
  first = info[2 * r];
  count = info[2 * r + 1];
  return first >= 0 && count >= 0 && first <= n - count;
}

template <typename T>
__global__ void weights_forward_kernel(const T* __restrict__ sigma, const T* __restrict__ ts,
                                       const T* __restrict__ te, const int64_t* __restrict__ info,
                                       const T* __restrict__ norm, int64_t rays, int64_t n, T* __restrict__ w,
                                       T* __restrict__ trans) {
  const int64_t r = thread_index();
  int64_t first;
  int64_t count;
  if (r >= rays || !segment(info, r, n, first, count)) return;
  weights_forward_ray<T, Acc<T>>(sigma, ts, te, norm[r], first, count, w, trans);
}

template <typename T>
__global__ void weights_backward_kernel(const T* __restrict__ sigma, const T* __restrict__ ts,
                                        const T* __restrict__ te, const int64_t* __restrict__ info,
                                        const T* __restrict__ norm, const T* __restrict__ w,
                                        const T* __restrict__ trans, const T* __restrict__ gw,
                                        const T* __restrict__ gt, int64_t rays, int64_t n, T* __restrict__ grad) {
  const int64_t r = thread_index();
  int64_t first;
  int64_t count;
  if (r >= rays || !segment(info, r, n, first, count)) return;
  weights_backward_ray<T, Acc<T>>(sigma, ts, te, norm[r], w, trans, gw, gt, first, count, grad);
}

template <typename T>
__global__ void composite_forward_kernel(const T* __restrict__ w, const T* __restrict__ rgb,
                                         const T* __restrict__ ts, const T* __restrict__ te,
                                         const int64_t* __restrict__ info, const T* __restrict__ near,
                                         const T* __restrict__ far, const T* __restrict__ bg, T eps, int64_t rays,
                                         int64_t n, T* __restrict__ color, T* __restrict__ acc,
                                         T* __restrict__ depth) {
  const int64_t r = thread_index();
  if (r >= rays) return;
  int64_t first;
  int64_t count;
  if (!segment(info, r, n, first, count)) first = count = 0;
  const CompositeSums<T, Acc<T>> c = composite_sums<T, Acc<T>>(w, rgb, ts, te, first, count);
  T raw;
  composite_finish<T, Acc<T>>(c, bg + 3 * r, near[r], far[r], eps, color + 3 * r, acc[r], depth[r], raw);
}

template <typename T>
__global__ void composite_backward_kernel(const T* __restrict__ w, const T* __restrict__ rgb,
                                          const T* __restrict__ ts, const T* __restrict__ te,
                                          const int64_t* __restrict__ info, const T* __restrict__ near,
                                          const T* __restrict__ far, const T* __restrict__ bg, T eps,
                                          const T* __restrict__ g_color, const T* __restrict__ g_acc,
                                          const T* __restrict__ g_depth, int64_t rays, int64_t n,
                                          T* __restrict__ grad_w, T* __restrict__ grad_rgb) {
  const int64_t r = thread_index();
  int64_t first;
  int64_t count;
  if (r >= rays || !segment(info, r, n, first, count)) return;
  composite_backward_ray<T, Acc<T>>(w, rgb, ts, te, first, count, bg + 3 * r, near[r], far[r], eps,
                                                g_color + 3 * r, g_acc[r], g_depth[r], grad_w, grad_rgb);
}

__device__ __forceinline__ void atomic_max_key(uint32_t* address, uint32_t key) {
  atomicMax(reinterpret_cast<unsigned int*>(address), key);
}
__device__ __forceinline__ void atomic_max_key(unsigned long long* address, unsigned long long key) {
  atomicMax(address, key);
}

// Values from the OLD grid (occ is only read here), their max per cell into `best` (0 = untouched).
template <typename T>
__global__ void grid_scatter_kernel(const T* __restrict__ occ, const int64_t* __restrict__ cells,
                                    const T* __restrict__ sigma, T decay, T step, int64_t k_cells,
                                    typename KeyOf<T>::type* __restrict__ best) {
  const int64_t k = thread_index();
  if (k >= k_cells) return;
  const int64_t c = cells[k];
  atomic_max_key(best + c, float_key(ema_value(occ[c], sigma[k], decay, step)));
}

template <typename T>
__global__ void grid_write_kernel(const typename KeyOf<T>::type* __restrict__ best, int64_t n_cells,
                                  T* __restrict__ occ) {
  const int64_t c = thread_index();
  if (c >= n_cells || best[c] == 0) return;
  occ[c] = key_float<T>(best[c]);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occ_march_cuda(
    const at::Tensor& origins, const at::Tensor& directions, const at::Tensor& dir_norm, const at::Tensor& near,
    const at::Tensor& far, const at::Tensor& occupied, const at::Tensor& aabb, int64_t resolution,
    double step_size, bool randomized, uint32_t s1, uint32_t s2) {
  const int64_t rays = origins.size(0);
  const auto i64 = origins.options().dtype(at::kLong);
  at::Tensor counts = at::zeros({rays}, i64);
  at::Tensor ray_indices;
  at::Tensor t_starts;
  at::Tensor t_ends;
  AT_DISPATCH_FLOATING_TYPES(origins.scalar_type(), "occ_march_cuda", [&] {
    using T = scalar_t;
    const MarchGrid<T> g = march_grid<T>(aabb, occupied, resolution);
    const T step = static_cast<T>(step_size);
    if (rays > 0) {
      launch_1d(origins.device(), rays, march_count_kernel<T>, origins.data_ptr<T>(), directions.data_ptr<T>(),
                dir_norm.data_ptr<T>(), near.data_ptr<T>(), far.data_ptr<T>(), g, step, randomized, s1, s2, rays,
                counts.data_ptr<int64_t>());
    }
    const at::Tensor first = at::cumsum(counts, 0).sub_(counts);
    const int64_t total = rays > 0 ? counts.sum().item<int64_t>() : 0;  // the one sync: the output size
    ray_indices = at::empty({total}, i64);
    t_starts = at::empty({total}, origins.options());
    t_ends = at::empty({total}, origins.options());
    if (total > 0) {
      launch_1d(origins.device(), rays, march_fill_kernel<T>, origins.data_ptr<T>(), directions.data_ptr<T>(),
                dir_norm.data_ptr<T>(), near.data_ptr<T>(), far.data_ptr<T>(), g, step, randomized, s1, s2, rays,
                first.data_ptr<int64_t>(), counts.data_ptr<int64_t>(), ray_indices.data_ptr<int64_t>(),
                t_starts.data_ptr<T>(), t_ends.data_ptr<T>());
    }
  });
  const at::Tensor starts = at::cumsum(counts, 0).sub_(counts);
  return {ray_indices, t_starts, t_ends, at::stack({starts, counts}, 1)};
}

void packed_weights_forward_cuda(const at::Tensor& density, const at::Tensor& t_starts, const at::Tensor& t_ends,
                                 const at::Tensor& packed_info, const at::Tensor& dir_norm, at::Tensor& weights,
                                 at::Tensor& trans) {
  const int64_t rays = packed_info.size(0);
  AT_DISPATCH_FLOATING_TYPES(density.scalar_type(), "packed_weights_forward_cuda", [&] {
    launch_1d(density.device(), rays, weights_forward_kernel<scalar_t>, density.data_ptr<scalar_t>(),
              t_starts.data_ptr<scalar_t>(), t_ends.data_ptr<scalar_t>(), packed_info.data_ptr<int64_t>(),
              dir_norm.data_ptr<scalar_t>(), rays, t_starts.size(0), weights.data_ptr<scalar_t>(),
              trans.data_ptr<scalar_t>());
  });
}

void packed_weights_backward_cuda(const at::Tensor& density, const at::Tensor& t_starts, const at::Tensor& t_ends,
                                  const at::Tensor& packed_info, const at::Tensor& dir_norm,
                                  const at::Tensor& weights, const at::Tensor& trans, const at::Tensor& grad_weights,
                                  const at::Tensor& grad_trans, at::Tensor& grad) {
  const int64_t rays = packed_info.size(0);
  AT_DISPATCH_FLOATING_TYPES(density.scalar_type(), "packed_weights_backward_cuda", [&] {
    launch_1d(density.device(), rays, weights_backward_kernel<scalar_t>, density.data_ptr<scalar_t>(),
              t_starts.data_ptr<scalar_t>(), t_ends.data_ptr<scalar_t>(), packed_info.data_ptr<int64_t>(),
              dir_norm.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(), trans.data_ptr<scalar_t>(),
              grad_weights.data_ptr<scalar_t>(), grad_trans.data_ptr<scalar_t>(), rays, t_starts.size(0),
              grad.data_ptr<scalar_t>());
  });
}

void packed_composite_forward_cuda(const at::Tensor& weights, const at::Tensor& rgb, const at::Tensor& t_starts,
                                   const at::Tensor& t_ends, const at::Tensor& packed_info, const at::Tensor& near,
                                   const at::Tensor& far, const at::Tensor& background, double eps,
                                   at::Tensor& color, at::Tensor& acc, at::Tensor& depth) {
  const int64_t rays = packed_info.size(0);
  AT_DISPATCH_FLOATING_TYPES(weights.scalar_type(), "packed_composite_forward_cuda", [&] {
    launch_1d(weights.device(), rays, composite_forward_kernel<scalar_t>, weights.data_ptr<scalar_t>(),
              rgb.data_ptr<scalar_t>(), t_starts.data_ptr<scalar_t>(), t_ends.data_ptr<scalar_t>(),
              packed_info.data_ptr<int64_t>(), near.data_ptr<scalar_t>(), far.data_ptr<scalar_t>(),
              background.data_ptr<scalar_t>(), static_cast<scalar_t>(eps), rays, t_starts.size(0),
              color.data_ptr<scalar_t>(), acc.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>());
  });
}

void packed_composite_backward_cuda(const at::Tensor& weights, const at::Tensor& rgb, const at::Tensor& t_starts,
                                    const at::Tensor& t_ends, const at::Tensor& packed_info, const at::Tensor& near,
                                    const at::Tensor& far, const at::Tensor& background, double eps,
                                    const at::Tensor& grad_color, const at::Tensor& grad_acc,
                                    const at::Tensor& grad_depth, at::Tensor& grad_w, at::Tensor& grad_rgb) {
  const int64_t rays = packed_info.size(0);
  AT_DISPATCH_FLOATING_TYPES(weights.scalar_type(), "packed_composite_backward_cuda", [&] {
    launch_1d(weights.device(), rays, composite_backward_kernel<scalar_t>, weights.data_ptr<scalar_t>(),
              rgb.data_ptr<scalar_t>(), t_starts.data_ptr<scalar_t>(), t_ends.data_ptr<scalar_t>(),
              packed_info.data_ptr<int64_t>(), near.data_ptr<scalar_t>(), far.data_ptr<scalar_t>(),
              background.data_ptr<scalar_t>(), static_cast<scalar_t>(eps), grad_color.data_ptr<scalar_t>(),
              grad_acc.data_ptr<scalar_t>(), grad_depth.data_ptr<scalar_t>(), rays, t_starts.size(0),
              grad_w.data_ptr<scalar_t>(), grad_rgb.data_ptr<scalar_t>());
  });
}

void occ_grid_update_cuda(at::Tensor& occ, const at::Tensor& cells, const at::Tensor& sigma, double decay,
                          double step_size) {
  const int64_t k_cells = cells.size(0);
  const int64_t n_cells = occ.size(0);
  if (k_cells == 0) return;
  AT_DISPATCH_FLOATING_TYPES(occ.scalar_type(), "occ_grid_update_cuda", [&] {
    using T = scalar_t;
    using U = typename KeyOf<T>::type;
    // The keys' buffer: int32 / int64 storage of the unsigned keys, zero = untouched.
    at::Tensor best = at::zeros({n_cells}, occ.options().dtype(sizeof(U) == 4 ? at::kInt : at::kLong));
    U* pb = reinterpret_cast<U*>(best.data_ptr());
    launch_1d(occ.device(), k_cells, grid_scatter_kernel<T>, occ.data_ptr<T>(), cells.data_ptr<int64_t>(),
              sigma.data_ptr<T>(), static_cast<T>(decay), static_cast<T>(step_size), k_cells, pb);
    launch_1d(occ.device(), n_cells, grid_write_kernel<T>, static_cast<const U*>(pb), n_cells, occ.data_ptr<T>());
  });
}

}  // namespace nerfpipe
