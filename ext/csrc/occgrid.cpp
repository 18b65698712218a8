// The occupancy-grid estimator (CPU kernels + host functions): ray marching through occupied cells, volume
// rendering of packed samples (forward and backward) and the grid's EMA update (nerfacc's OccGridEstimator,
// Li et al. 2023). The formulas live in occgrid.h; the torch references are nerfpipe/estimators/marching.py,
// packed.py and occgrid.py.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "checks.h"
#include "common.h"
#include "nerfpipe_ext.h"
#include "occgrid.h"
#include "occgrid_host.h"

namespace nerfpipe {

namespace {

void check_shape(const char* fn, const char* name, const at::Tensor& t, at::IntArrayRef shape,
                 const char* doc) {
  TORCH_CHECK_VALUE(t.sizes() == shape, fn, ": argument '", name, "' must have shape ", doc, " = ", shape,
                    ", got ", t.sizes());
}

// A tensor on `ref`'s device with `ref`'s dtype and the given shape, contiguous.
void check_like(const char* fn, const char* name, const at::Tensor& t, const char* ref_name, const at::Tensor& ref,
                at::IntArrayRef shape, const char* doc) {
  check_same_device(fn, name, t, ref_name, ref);
  check_same_dtype(fn, name, t, ref_name, ref);
  check_shape(fn, name, t, shape, doc);
  check_contiguous(fn, name, t);
}

void check_packed_info(const char* fn, const at::Tensor& info, const at::Tensor& ref, int64_t rays) {
  check_same_device(fn, "packed_info", info, "t_starts", ref);
  TORCH_CHECK_TYPE(info.scalar_type() == at::kLong, fn, ": argument 'packed_info' must be int64, got ",
                   info.scalar_type());
  check_shape(fn, "packed_info", info, {rays, 2}, "[R, 2]");
  check_contiguous(fn, "packed_info", info);
}

// emit() of the CPU march: appends the kept steps to a block's buffers.
template <typename T>
struct CollectSteps {
  std::vector<T>* starts;
  std::vector<T>* ends;
  void operator()(T a, T b) {
    starts->push_back(a);
    ends->push_back(b);
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Ray marching

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occ_march(
    const at::Tensor& origins, const at::Tensor& directions, const at::Tensor& dir_norm, const at::Tensor& near,
    const at::Tensor& far, const at::Tensor& occupied, const at::Tensor& aabb, int64_t resolution,
    double step_size, bool randomized, int64_t s1, int64_t s2) {
  const char* fn = "occ_march";
  const Seeds seeds = seed_args(fn, s1, s2);
  check_device(fn, "origins", origins);
  check_float(fn, "origins", origins);
  check_dim(fn, "origins", origins, 2, "[R, 3]");
  TORCH_CHECK_VALUE(origins.size(1) == 3, fn, ": argument 'origins' must have shape [R, 3], got ",
                    origins.sizes());
  check_contiguous(fn, "origins", origins);
  const int64_t rays = origins.size(0);
  check_like(fn, "directions", directions, "origins", origins, {rays, 3}, "[R, 3]");
  check_like(fn, "dir_norm", dir_norm, "origins", origins, {rays}, "[R]");
  check_like(fn, "near", near, "origins", origins, {rays}, "[R]");
  check_like(fn, "far", far, "origins", origins, {rays}, "[R]");
  check_same_device(fn, "aabb", aabb, "origins", origins);
  check_same_dtype(fn, "aabb", aabb, "origins", origins);
  check_shape(fn, "aabb", aabb, {6}, "[6]");
  check_same_device(fn, "occupied", occupied, "origins", origins);
  TORCH_CHECK_TYPE(occupied.scalar_type() == at::kBool || occupied.scalar_type() == at::kByte, fn,
                   ": argument 'occupied' must be bool or uint8, got ", occupied.scalar_type());
  TORCH_CHECK_VALUE(resolution >= 1 && resolution <= 4096, fn, ": argument 'resolution' must be in [1, 4096], got ",
                    resolution);
  check_shape(fn, "occupied", occupied, {resolution * resolution * resolution}, "[G^3]");
  check_contiguous(fn, "occupied", occupied);
  TORCH_CHECK_VALUE(step_size > 0, fn, ": argument 'step_size' must be > 0, got ", step_size);

  NERFPIPE_ON_CUDA(fn, "origins", origins,
                   return occ_march_cuda(origins, directions, dir_norm, near, far, occupied, aabb, resolution,
                                         step_size, randomized, seeds.s1, seeds.s2));
  const auto i64 = origins.options().dtype(at::kLong);
  at::Tensor counts = at::zeros({rays}, i64);
  at::Tensor t_starts;
  at::Tensor t_ends;
  at::Tensor ray_indices;
  AT_DISPATCH_FLOATING_TYPES(origins.scalar_type(), "occ_march_cpu", [&] {
    using T = scalar_t;
    const MarchGrid<T> g = march_grid<T>(aabb, occupied, resolution);
    const T* po = origins.data_ptr<T>();
    const T* pd = directions.data_ptr<T>();
    const T* pn = dir_norm.data_ptr<T>();
    const T* pnear = near.data_ptr<T>();
    const T* pfar = far.data_ptr<T>();
    const T step = static_cast<T>(step_size);
    int64_t* pc = counts.data_ptr<int64_t>();
    // One march per ray (march_ray: empty cells skipped, output unchanged), its kept steps collected in
    // the buffers of a block of kRays rays; then the blocks are copied to their place (the CUDA kernel
    // marches twice instead: count, then fill).
    constexpr int64_t kRays = 64;
    const int64_t n_blocks = (rays + kRays - 1) / kRays;
    std::vector<std::vector<T>> block_starts(n_blocks);
    std::vector<std::vector<T>> block_ends(n_blocks);
    at::parallel_for(0, n_blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t blk = begin; blk < end; ++blk) {
        CollectSteps<T> sink{&block_starts[blk], &block_ends[blk]};
        for (int64_t r = blk * kRays; r < std::min(rays, (blk + 1) * kRays); ++r) {
          const T u = randomized ? static_cast<T>(hash_uniform(seeds.s1, seeds.s2, r)) : T(0);
          const RaySpan<T> s = ray_span<T>(po + 3 * r, pd + 3 * r, pnear[r], pfar[r], pn[r], g, step, u);
          const size_t before = sink.starts->size();
          march_ray(po + 3 * r, pd + 3 * r, s, g, sink);
          pc[r] = static_cast<int64_t>(sink.starts->size() - before);
        }
      }
    });
    std::vector<int64_t> block_first(n_blocks + 1, 0);
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      block_first[blk + 1] = block_first[blk] + static_cast<int64_t>(block_starts[blk].size());
    }
    const int64_t total = block_first[n_blocks];
    t_starts = at::empty({total}, origins.options());
    t_ends = at::empty({total}, origins.options());
    ray_indices = at::empty({total}, i64);
    T* ps = t_starts.data_ptr<T>();
    T* pe = t_ends.data_ptr<T>();
    int64_t* pr = ray_indices.data_ptr<int64_t>();
    at::parallel_for(0, n_blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t k0 = block_first[blk];
        std::copy(block_starts[blk].begin(), block_starts[blk].end(), ps + k0);
        std::copy(block_ends[blk].begin(), block_ends[blk].end(), pe + k0);
        int64_t k = k0;
        for (int64_t r = blk * kRays; r < std::min(rays, (blk + 1) * kRays); ++r) {
          std::fill(pr + k, pr + k + pc[r], r);
          k += pc[r];
        }
      }
    });
  });
  const at::Tensor starts = at::cumsum(counts, 0).sub_(counts);
  return {ray_indices, t_starts, t_ends, at::stack({starts, counts}, 1)};
}

// ---------------------------------------------------------------------------------------------------------
// Packed volume rendering

namespace {

// The packed samples' shared arguments: t_starts [S] float, t_ends [S] like it, packed_info [R, 2] int64.
int64_t check_packed(const char* fn, const at::Tensor& t_starts, const at::Tensor& t_ends,
                     const at::Tensor& packed_info) {
  check_device(fn, "t_starts", t_starts);
  check_float(fn, "t_starts", t_starts);
  check_dim(fn, "t_starts", t_starts, 1, "[S]");
  check_contiguous(fn, "t_starts", t_starts);
  check_like(fn, "t_ends", t_ends, "t_starts", t_starts, {t_starts.size(0)}, "[S]");
  check_dim(fn, "packed_info", packed_info, 2, "[R, 2]");
  check_packed_info(fn, packed_info, t_starts, packed_info.size(0));
  return packed_info.size(0);
}

// Rays per parallel_for task: about 16k samples each, so that a small batch runs inline instead of waking
// threads for microseconds of work.
inline int64_t ray_grain(int64_t rays, int64_t n_samples) {
  const int64_t per_ray = std::max<int64_t>(1, n_samples / std::max<int64_t>(1, rays));
  return std::max<int64_t>(16, 16384 / per_ray);
}

// A segment outside [0, S) is skipped (its samples keep the zeros of the outputs); the Python wrappers build
// packed_info from sorted ray indices, so this only guards memory.
inline bool valid_segment(int64_t first, int64_t count, int64_t n_samples) {
  return first >= 0 && count >= 0 && first <= n_samples - count;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> packed_weights_forward(const at::Tensor& density, const at::Tensor& t_starts,
                                                          const at::Tensor& t_ends, const at::Tensor& packed_info,
                                                          const at::Tensor& dir_norm) {
  const char* fn = "packed_weights_forward";
  const int64_t rays = check_packed(fn, t_starts, t_ends, packed_info);
  const int64_t n = t_starts.size(0);
  check_like(fn, "density", density, "t_starts", t_starts, {n}, "[S]");
  check_like(fn, "dir_norm", dir_norm, "t_starts", t_starts, {rays}, "[R]");
  at::Tensor weights = at::zeros_like(density);
  at::Tensor trans = at::zeros_like(density);
  if (rays == 0 || n == 0) return {weights, trans};
  NERFPIPE_ON_CUDA(fn, "t_starts", t_starts,
                   packed_weights_forward_cuda(density, t_starts, t_ends, packed_info, dir_norm, weights, trans);
                   return std::make_tuple(weights, trans));
  AT_DISPATCH_FLOATING_TYPES(density.scalar_type(), "packed_weights_forward_cpu", [&] {
    const scalar_t* sigma = density.data_ptr<scalar_t>();
    const scalar_t* ts = t_starts.data_ptr<scalar_t>();
    const scalar_t* te = t_ends.data_ptr<scalar_t>();
    const scalar_t* norm = dir_norm.data_ptr<scalar_t>();
    const int64_t* info = packed_info.data_ptr<int64_t>();
    scalar_t* pw = weights.data_ptr<scalar_t>();
    scalar_t* pt = trans.data_ptr<scalar_t>();
    at::parallel_for(0, rays, ray_grain(rays, n), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        if (!valid_segment(info[2 * r], info[2 * r + 1], n)) continue;
        weights_forward_ray<scalar_t, double>(sigma, ts, te, norm[r], info[2 * r], info[2 * r + 1], pw, pt);
      }
    });
  });
  return {weights, trans};
}

at::Tensor packed_weights_backward(const at::Tensor& density, const at::Tensor& t_starts, const at::Tensor& t_ends,
                                   const at::Tensor& packed_info, const at::Tensor& dir_norm,
                                   const at::Tensor& weights, const at::Tensor& trans,
                                   const at::Tensor& grad_weights, const at::Tensor& grad_trans) {
  const char* fn = "packed_weights_backward";
  const int64_t rays = check_packed(fn, t_starts, t_ends, packed_info);
  const int64_t n = t_starts.size(0);
  check_like(fn, "density", density, "t_starts", t_starts, {n}, "[S]");
  check_like(fn, "dir_norm", dir_norm, "t_starts", t_starts, {rays}, "[R]");
  check_like(fn, "weights", weights, "t_starts", t_starts, {n}, "[S]");
  check_like(fn, "trans", trans, "t_starts", t_starts, {n}, "[S]");
  check_like(fn, "grad_weights", grad_weights, "t_starts", t_starts, {n}, "[S]");
  check_like(fn, "grad_trans", grad_trans, "t_starts", t_starts, {n}, "[S]");
  at::Tensor grad = at::zeros_like(density);
  if (rays == 0 || n == 0) return grad;
  NERFPIPE_ON_CUDA(fn, "t_starts", t_starts,
                   packed_weights_backward_cuda(density, t_starts, t_ends, packed_info, dir_norm, weights, trans,
                                                grad_weights, grad_trans, grad);
                   return grad);
  AT_DISPATCH_FLOATING_TYPES(density.scalar_type(), "packed_weights_backward_cpu", [&] {
    const int64_t* info = packed_info.data_ptr<int64_t>();
    at::parallel_for(0, rays, ray_grain(rays, n), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        if (!valid_segment(info[2 * r], info[2 * r + 1], n)) continue;
        weights_backward_ray<scalar_t, double>(
            density.data_ptr<scalar_t>(), t_starts.data_ptr<scalar_t>(), t_ends.data_ptr<scalar_t>(),
            dir_norm.data_ptr<scalar_t>()[r], weights.data_ptr<scalar_t>(), trans.data_ptr<scalar_t>(),
            grad_weights.data_ptr<scalar_t>(), grad_trans.data_ptr<scalar_t>(), info[2 * r], info[2 * r + 1],
            grad.data_ptr<scalar_t>());
      }
    });
  });
  return grad;
}

namespace {

// The composite's arguments besides the packed samples: weights [S], rgb [S, 3], near/far [R], background
// [R, 3], all of t_starts' dtype and device.
void check_composite(const char* fn, const at::Tensor& weights, const at::Tensor& rgb, const at::Tensor& t_starts,
                     const at::Tensor& near, const at::Tensor& far, const at::Tensor& background, int64_t rays) {
  const int64_t n = t_starts.size(0);
  check_like(fn, "weights", weights, "t_starts", t_starts, {n}, "[S]");
  check_like(fn, "rgb", rgb, "t_starts", t_starts, {n, 3}, "[S, 3]");
  check_like(fn, "near", near, "t_starts", t_starts, {rays}, "[R]");
  check_like(fn, "far", far, "t_starts", t_starts, {rays}, "[R]");
  check_like(fn, "background", background, "t_starts", t_starts, {rays, 3}, "[R, 3]");
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> packed_composite_forward(
    const at::Tensor& weights, const at::Tensor& rgb, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& packed_info, const at::Tensor& near, const at::Tensor& far, const at::Tensor& background,
    double eps) {
  const char* fn = "packed_composite_forward";
  const int64_t rays = check_packed(fn, t_starts, t_ends, packed_info);
  check_composite(fn, weights, rgb, t_starts, near, far, background, rays);
  at::Tensor color = at::empty({rays, 3}, t_starts.options());
  at::Tensor acc = at::empty({rays}, t_starts.options());
  at::Tensor depth = at::empty({rays}, t_starts.options());
  if (rays == 0) return {color, acc, depth};
  NERFPIPE_ON_CUDA(fn, "t_starts", t_starts,
                   packed_composite_forward_cuda(weights, rgb, t_starts, t_ends, packed_info, near, far, background,
                                                 eps, color, acc, depth);
                   return std::make_tuple(color, acc, depth));
  const int64_t n = t_starts.size(0);
  AT_DISPATCH_FLOATING_TYPES(t_starts.scalar_type(), "packed_composite_forward_cpu", [&] {
    using T = scalar_t;
    const int64_t* info = packed_info.data_ptr<int64_t>();
    at::parallel_for(0, rays, ray_grain(rays, n), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const bool ok = valid_segment(info[2 * r], info[2 * r + 1], n);
        const CompositeSums<T, double> c = composite_sums<T, double>(
            weights.data_ptr<T>(), rgb.data_ptr<T>(), t_starts.data_ptr<T>(), t_ends.data_ptr<T>(),
            ok ? info[2 * r] : 0, ok ? info[2 * r + 1] : 0);
        T raw;
        composite_finish<T, double>(c, background.data_ptr<T>() + 3 * r, near.data_ptr<T>()[r],
                                    far.data_ptr<T>()[r], static_cast<T>(eps), color.data_ptr<T>() + 3 * r,
                                    acc.data_ptr<T>()[r], depth.data_ptr<T>()[r], raw);
      }
    });
  });
  return {color, acc, depth};
}

std::tuple<at::Tensor, at::Tensor> packed_composite_backward(
    const at::Tensor& weights, const at::Tensor& rgb, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& packed_info, const at::Tensor& near, const at::Tensor& far, const at::Tensor& background,
    double eps, const at::Tensor& grad_color, const at::Tensor& grad_acc, const at::Tensor& grad_depth) {
  const char* fn = "packed_composite_backward";
  const int64_t rays = check_packed(fn, t_starts, t_ends, packed_info);
  check_composite(fn, weights, rgb, t_starts, near, far, background, rays);
  check_like(fn, "grad_color", grad_color, "t_starts", t_starts, {rays, 3}, "[R, 3]");
  check_like(fn, "grad_acc", grad_acc, "t_starts", t_starts, {rays}, "[R]");
  check_like(fn, "grad_depth", grad_depth, "t_starts", t_starts, {rays}, "[R]");
  at::Tensor grad_w = at::zeros_like(weights);
  at::Tensor grad_rgb = at::zeros_like(rgb);
  const int64_t n = t_starts.size(0);
  if (rays == 0 || n == 0) return {grad_w, grad_rgb};
  NERFPIPE_ON_CUDA(fn, "t_starts", t_starts,
                   packed_composite_backward_cuda(weights, rgb, t_starts, t_ends, packed_info, near, far,
                                                  background, eps, grad_color, grad_acc, grad_depth, grad_w,
                                                  grad_rgb);
                   return std::make_tuple(grad_w, grad_rgb));
  AT_DISPATCH_FLOATING_TYPES(t_starts.scalar_type(), "packed_composite_backward_cpu", [&] {
    using T = scalar_t;
    const int64_t* info = packed_info.data_ptr<int64_t>();
    at::parallel_for(0, rays, ray_grain(rays, n), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        if (!valid_segment(info[2 * r], info[2 * r + 1], n)) continue;
        composite_backward_ray<T, double>(
            weights.data_ptr<T>(), rgb.data_ptr<T>(), t_starts.data_ptr<T>(), t_ends.data_ptr<T>(), info[2 * r],
            info[2 * r + 1], background.data_ptr<T>() + 3 * r, near.data_ptr<T>()[r], far.data_ptr<T>()[r],
            static_cast<T>(eps), grad_color.data_ptr<T>() + 3 * r, grad_acc.data_ptr<T>()[r],
            grad_depth.data_ptr<T>()[r], grad_w.data_ptr<T>(), grad_rgb.data_ptr<T>());
      }
    });
  });
  return {grad_w, grad_rgb};
}

// ---------------------------------------------------------------------------------------------------------
// Grid update

void occ_grid_update(at::Tensor occ, at::Tensor occupied, const at::Tensor& cells, const at::Tensor& sigma,
                     double decay, double step_size, double threshold) {
  const char* fn = "occ_grid_update";
  check_device(fn, "occ", occ);
  check_float(fn, "occ", occ);
  check_dim(fn, "occ", occ, 1, "[N]");
  check_contiguous(fn, "occ", occ);
  const int64_t n_cells = occ.size(0);
  check_same_device(fn, "occupied", occupied, "occ", occ);
  TORCH_CHECK_TYPE(occupied.scalar_type() == at::kBool, fn, ": argument 'occupied' must be bool, got ",
                   occupied.scalar_type());
  check_shape(fn, "occupied", occupied, {n_cells}, "[N]");
  check_contiguous(fn, "occupied", occupied);
  check_same_device(fn, "cells", cells, "occ", occ);
  TORCH_CHECK_TYPE(cells.scalar_type() == at::kLong, fn, ": argument 'cells' must be int64, got ",
                   cells.scalar_type());
  check_dim(fn, "cells", cells, 1, "[K]");
  check_contiguous(fn, "cells", cells);
  check_like(fn, "sigma", sigma, "occ", occ, {cells.size(0)}, "[K]");
  if (cells.numel() > 0) {
    // One reduction (a sync on CUDA): an index outside the grid would write out of bounds.
    const auto range = at::aminmax(cells);
    const int64_t lo = std::get<0>(range).item<int64_t>();
    const int64_t hi = std::get<1>(range).item<int64_t>();
    TORCH_CHECK_INDEX(lo >= 0 && hi < n_cells, fn, ": argument 'cells' holds indices in [", lo, ", ", hi,
                      "], outside the grid's [0, ", n_cells, ")");
  }
  NERFPIPE_ON_CUDA(fn, "occ", occ, occ_grid_update_cuda(occ, cells, sigma, decay, step_size));
  if (occ.is_cpu()) {
    AT_DISPATCH_FLOATING_TYPES(occ.scalar_type(), "occ_grid_update_cpu", [&] {
      using T = scalar_t;
      using U = typename KeyOf<T>::type;
      const int64_t k_cells = cells.size(0);
      const int64_t* pc = cells.data_ptr<int64_t>();
      const T* ps = sigma.data_ptr<T>();
      T* po = occ.data_ptr<T>();
      // Values from the OLD grid (parallel), then the amax over duplicates (serial: race-free, and cheap next
      // to the density evaluations that produced sigma), then the write back (parallel).
      std::vector<U> key(k_cells);
      at::parallel_for(0, k_cells, 4096, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          key[k] = float_key(ema_value(po[pc[k]], ps[k], static_cast<T>(decay), static_cast<T>(step_size)));
        }
      });
      std::vector<U> best(n_cells, U(0));
      for (int64_t k = 0; k < k_cells; ++k) best[pc[k]] = std::max(best[pc[k]], key[k]);
      at::parallel_for(0, n_cells, 4096, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          if (best[c] != U(0)) po[c] = key_float<T>(best[c]);
        }
      });
    });
  }
  // occupied = occ > min(mean(occ), threshold), with torch's own mean (the reference's, to the last bit).
  at::gt_out(occupied, occ, at::clamp_max(occ.mean(), threshold));
}

}  // namespace nerfpipe
