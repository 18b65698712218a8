// Per-ray and per-cell arithmetic of the occupancy-grid estimator, shared by the CPU (occgrid.cpp) and CUDA
// (cuda/occgrid.cu) kernels (nerfacc's OccGridEstimator, Li et al. 2023, "NerfAcc: Efficient Sampling
// Accelerates NeRFs"). One definition keeps the two backends' marching bit-identical, and both bit-identical
// to the torch reference nerfpipe.estimators.marching.march_rays_torch: every formula is written in the
// reference's operation order with explicitly rounded + - * / (no FMA contraction on either side, whatever
// the compiler flags), and min/max propagate NaN as torch.minimum/maximum do.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common.h"

namespace nerfpipe {

// ---------------------------------------------------------------------------------------------------------
// Correctly rounded arithmetic (device: the _rn intrinsics, never contracted into an FMA)

#if defined(__CUDA_ARCH__)
NERFPIPE_HD float add_rn(float a, float b) { return __fadd_rn(a, b); }
NERFPIPE_HD double add_rn(double a, double b) { return __dadd_rn(a, b); }
NERFPIPE_HD float sub_rn(float a, float b) { return __fsub_rn(a, b); }
NERFPIPE_HD double sub_rn(double a, double b) { return __dsub_rn(a, b); }
NERFPIPE_HD float mul_rn(float a, float b) { return __fmul_rn(a, b); }
NERFPIPE_HD double mul_rn(double a, double b) { return __dmul_rn(a, b); }
NERFPIPE_HD float div_rn(float a, float b) { return __fdiv_rn(a, b); }
NERFPIPE_HD double div_rn(double a, double b) { return __ddiv_rn(a, b); }
NERFPIPE_HD float floor_t(float x) { return floorf(x); }
NERFPIPE_HD double floor_t(double x) { return floor(x); }
NERFPIPE_HD float exp_t(float x) { return expf(x); }
NERFPIPE_HD double exp_t(double x) { return exp(x); }
#else
// The CPU build compiles with -ffp-contract=off, so plain operators are rounded one by one.
template <typename T>
inline T add_rn(T a, T b) { return a + b; }
template <typename T>
inline T sub_rn(T a, T b) { return a - b; }
template <typename T>
inline T mul_rn(T a, T b) { return a * b; }
template <typename T>
inline T div_rn(T a, T b) { return a / b; }
// floor without a libm call (baseline x86-64 has no SSE4.1 rounding instruction, and the marching loop
// floors four times a step): |x| < 2^23 (float) / 2^52 (double) truncates through int64, larger values
// are integers already, NaN passes through. Only a zero's sign can differ from std::floor's (-0 -> +0),
// which no caller observes (they compare and convert the result).
template <typename T>
inline T floor_t(T x) {
  constexpr T big = sizeof(T) == 4 ? T(8388608.0) : T(4503599627370496.0);
  if (!(x > -big && x < big)) return x;
  const T t = static_cast<T>(static_cast<int64_t>(x));
  return t > x ? t - T(1) : t;
}
template <typename T>
inline T exp_t(T x) { return std::exp(x); }
#endif

// torch.maximum / torch.minimum: a NaN operand gives NaN.
template <typename T>
NERFPIPE_HD T max_nan(T a, T b) {
  if (a != a) return a;
  if (b != b) return b;
  return a > b ? a : b;
}
template <typename T>
NERFPIPE_HD T min_nan(T a, T b) {
  if (a != a) return a;
  if (b != b) return b;
  return a < b ? a : b;
}

template <typename T>
NERFPIPE_HD T inf_t() {
  return std::numeric_limits<T>::infinity();
}

// ---------------------------------------------------------------------------------------------------------
// Ray marching (marching.py: ray_aabb, cell_index, march_rays)

// The box and the grid: lo/hi = aabb[:3]/aabb[3:], res = G, occupied [G^3] (0 = empty).
template <typename T>
struct MarchGrid {
  T lo[3];
  T hi[3];
  int64_t res;
  const uint8_t* occupied;
};

// One ray's clipped range [t0, t1], step dt, jitter u and number of fixed steps n (before the occupancy test).
template <typename T>
struct RaySpan {
  T t0;
  T t1;
  T dt;
  T u;
  int64_t n;
};

// ray_aabb's slab method, then march_rays' clipping and step count:
//   t0 = max(near, t_in), t1 = min(far, t_out), dt = (1 / |d|) * step (torch's `step / tensor` is
//   `reciprocal() * step`), n = max(0, floor((t1 - t0) / dt - u)) when t1 > t0, else 0.
// `norm` is |d| as torch.linalg.vector_norm computes it (passed in: its reduction order, an FMA chain on
// AVX CPUs, is the reference's own and not portable to reproduce).
template <typename T>
NERFPIPE_HD RaySpan<T> ray_span(const T* o, const T* d, T near, T far, T norm, const MarchGrid<T>& g, T step,
                                T u) {
  T t_in = -inf_t<T>();
  T t_out = inf_t<T>();
  for (int k = 0; k < 3; ++k) {
    T nk;
    T fk;
    if (d[k] == T(0)) {
      const bool inside = o[k] >= g.lo[k] && o[k] <= g.hi[k];
      nk = inside ? -inf_t<T>() : inf_t<T>();
      fk = inside ? inf_t<T>() : -inf_t<T>();
    } else {
      const T ta = div_rn(sub_rn(g.lo[k], o[k]), d[k]);
      const T tb = div_rn(sub_rn(g.hi[k], o[k]), d[k]);
      nk = min_nan(ta, tb);
      fk = max_nan(ta, tb);
    }
    t_in = k == 0 ? nk : max_nan(t_in, nk);  // amax / amin over the three slabs
    t_out = k == 0 ? fk : min_nan(t_out, fk);
  }
  RaySpan<T> s;
  s.t0 = max_nan(near, t_in);
  s.t1 = min_nan(far, t_out);
  s.dt = mul_rn(div_rn(T(1), norm), step);
  s.u = u;
  const T steps = floor_t(sub_rn(div_rn(sub_rn(s.t1, s.t0), s.dt), u));
  s.n = (s.t1 > s.t0 && steps > T(0)) ? static_cast<int64_t>(steps) : 0;  // NaN -> 0
  return s;
}

// cell_index of one coordinate: floor((x - lo) / (hi - lo) * G) as int64, clamped to [0, G - 1]; a value
// outside int64 (or NaN) converts to INT64_MIN on x86, as torch's .to(int64) does there, and so clamps to 0.
// `in_range` tells whether the floor lay well inside int64 (no such special case).
template <typename T>
NERFPIPE_HD int64_t cell_coord(T x, T lo, T hi, int64_t res, bool& in_range) {
  const T f = floor_t(mul_rn(div_rn(sub_rn(x, lo), sub_rn(hi, lo)), static_cast<T>(res)));
  in_range = f > T(-4.6e18) && f < T(4.6e18);
  if (!(f >= T(-9.2233720368547758e18) && f < T(9.2233720368547758e18))) return 0;
  const int64_t i = static_cast<int64_t>(f);
  return i < 0 ? 0 : (i > res - 1 ? res - 1 : i);
}

// Step j of a ray: [start, end] and the flat cell of its midpoint, as march_rays_torch:
//   start = t0 + (j + u) dt, end = min(t0 + ((j + 1) + u) dt, t1), mid = (start + end) / 2, p = o + mid d.
template <typename T>
NERFPIPE_HD int64_t step_cell(const T* o, const T* d, const RaySpan<T>& s, const MarchGrid<T>& g, int64_t j,
                              T& start, T& end, bool& in_range) {
  const T jf = static_cast<T>(j);
  start = add_rn(s.t0, mul_rn(add_rn(jf, s.u), s.dt));
  end = min_nan(add_rn(s.t0, mul_rn(add_rn(add_rn(jf, T(1)), s.u), s.dt)), s.t1);
  const T mid = div_rn(add_rn(start, end), T(2));
  int64_t idx = 0;
  in_range = true;
  for (int k = 0; k < 3; ++k) {
    bool ok;
    idx = idx * g.res + cell_coord(add_rn(o[k], mul_rn(mid, d[k])), g.lo[k], g.hi[k], g.res, ok);
    in_range = in_range && ok;
  }
  return idx;
}

// A guess of the last step whose midpoint still lies in `cell` (from the exact exit of the cell's box,
// one step early); only a guess: march_ray checks it.
template <typename T>
NERFPIPE_HD int64_t skip_guess(const T* o, const T* d, const RaySpan<T>& s, const MarchGrid<T>& g, int64_t cell,
                               int64_t j) {
  const int64_t ijk[3] = {cell / (g.res * g.res), (cell / g.res) % g.res, cell % g.res};
  T t_exit = inf_t<T>();
  for (int k = 0; k < 3; ++k) {
    if (d[k] == T(0)) continue;
    const T side = static_cast<T>(ijk[k] + (d[k] > T(0) ? 1 : 0));
    const T bound = g.lo[k] + side * ((g.hi[k] - g.lo[k]) / static_cast<T>(g.res));
    t_exit = min_nan(t_exit, (bound - o[k]) / d[k]);
  }
  const T x = (t_exit - s.t0) / s.dt - s.u - T(0.5);  // the step whose midpoint meets t_exit
  if (!(x == x) || x <= static_cast<T>(j)) return j;
  if (x >= static_cast<T>(s.n)) return s.n - 1;
  const int64_t guess = static_cast<int64_t>(floor_t(x)) - 1;
  return guess < j ? j : guess;
}

// Every fixed step of a ray in order, calling emit(start, end) for the kept ones (midpoint in an occupied
// cell). Empty cells are skipped without changing the output: every operation of step_cell is monotone
// (correctly rounded + - * / and floor are non-decreasing in each argument; t0, dt, u, o, d are fixed along
// the ray), so each of the three cell coordinates is monotone in j. Hence when steps j and j' > j land in
// the same cell (both floors inside int64, so the clamping is monotone too), every step between them does,
// and if that cell is empty none of them is kept: the loop jumps to j' + 1. A guess that fails the check
// costs one evaluation and the loop goes on with j + 1.
template <typename T, typename Emit>
NERFPIPE_HD void march_ray(const T* o, const T* d, const RaySpan<T>& s, const MarchGrid<T>& g, Emit& emit) {
  int64_t j = 0;
  while (j < s.n) {
    T a;
    T b;
    bool in_range;
    const int64_t cell = step_cell(o, d, s, g, j, a, b, in_range);
    if (g.occupied[cell] != 0) {
      emit(a, b);
      ++j;
      continue;
    }
    int64_t next = j + 1;
    if (in_range) {
      const int64_t guess = skip_guess(o, d, s, g, cell, j);
      if (guess > j) {
        bool guess_in_range;
        if (step_cell(o, d, s, g, guess, a, b, guess_in_range) == cell && guess_in_range) next = guess + 1;
      }
    }
    j = next;
  }
}

// emit() of march_ray's counting pass.
struct CountSteps {
  int64_t kept = 0;
  template <typename T>
  NERFPIPE_HD void operator()(T, T) {
    ++kept;
  }
};

// emit() of march_ray's filling pass: the kept steps of ray r from index k on.
template <typename T>
struct FillSteps {
  T* starts;
  T* ends;
  int64_t* rays;
  int64_t r;
  int64_t k;
  NERFPIPE_HD void operator()(T a, T b) {
    starts[k] = a;
    ends[k] = b;
    rays[k] = r;
    ++k;
  }
};

// ---------------------------------------------------------------------------------------------------------
// Volume rendering of one ray's packed samples i = first .. first + count - 1 (packed.py). Sums run in the
// accumulator type A, in sample order (per ray, no atomics: deterministic).

// delta_i = (t_end - t_start) |d|;  s_i = sigma_i delta_i (packed_weights_torch's order).
template <typename T>
NERFPIPE_HD T optical_thickness(T sigma, T t_start, T t_end, T norm, T& delta) {
  delta = mul_rn(sub_rn(t_end, t_start), norm);
  return mul_rn(sigma, delta);
}

// Forward of NeRF eq. 3: T_i = exp(-sum_{j<i} s_j), w_i = (1 - exp(-s_i)) T_i.
template <typename T, typename A>
NERFPIPE_HD void weights_forward_ray(const T* sigma, const T* ts, const T* te, T norm, int64_t first,
                                     int64_t count, T* weights, T* trans) {
  A cum = A(0);
  for (int64_t i = first; i < first + count; ++i) {
    T delta;
    const T s = optical_thickness(sigma[i], ts[i], te[i], norm, delta);
    const T t = exp_t(-static_cast<T>(cum));
    weights[i] = mul_rn(sub_rn(T(1), exp_t(-s)), t);
    trans[i] = t;
    cum += static_cast<A>(s);
  }
}

// Backward, the reverse cumulative sum (d w_i / d s_i = T_i exp(-s_i); d w_k / d s_i = -w_k and
// d T_k / d s_i = -T_k for k > i):
//   dL/dsigma_i = delta_i (gw_i T_i exp(-s_i) - sum_{k>i} (gw_k w_k + gT_k T_k)).
template <typename T, typename A>
NERFPIPE_HD void weights_backward_ray(const T* sigma, const T* ts, const T* te, T norm, const T* weights,
                                      const T* trans, const T* gw, const T* gt, int64_t first, int64_t count,
                                      T* grad_sigma) {
  A suffix = A(0);
  for (int64_t i = first + count - 1; i >= first; --i) {
    T delta;
    const T s = optical_thickness(sigma[i], ts[i], te[i], norm, delta);
    const A own = static_cast<A>(gw[i]) * static_cast<A>(trans[i]) * static_cast<A>(exp_t(-s));
    grad_sigma[i] = static_cast<T>((own - suffix) * static_cast<A>(delta));
    suffix += static_cast<A>(gw[i]) * static_cast<A>(weights[i]) + static_cast<A>(gt[i]) * static_cast<A>(trans[i]);
  }
}

// Per-ray sums of packed_composite: acc = sum w_i, c = sum w_i c_i, dsum = sum w_i (t_s + t_e) / 2.
template <typename T, typename A>
struct CompositeSums {
  A acc;
  A rgb[3];
  A dsum;
};

template <typename T, typename A>
NERFPIPE_HD CompositeSums<T, A> composite_sums(const T* w, const T* rgb, const T* ts, const T* te, int64_t first,
                                              int64_t count) {
  CompositeSums<T, A> c{A(0), {A(0), A(0), A(0)}, A(0)};
  for (int64_t i = first; i < first + count; ++i) {
    const A wi = static_cast<A>(w[i]);
    c.acc += wi;
    for (int k = 0; k < 3; ++k) c.rgb[k] += wi * static_cast<A>(rgb[3 * i + k]);
    c.dsum += wi * static_cast<A>(div_rn(add_rn(ts[i], te[i]), T(2)));
  }
  return c;
}

// rgb = c + bg (1 - acc); depth = min(max(dsum / max(acc, eps), near), far) (the raw depth before the clip
// is returned in `raw`).
template <typename T, typename A>
NERFPIPE_HD void composite_finish(const CompositeSums<T, A>& c, const T* bg, T near, T far, T eps, T* rgb_out,
                                  T& acc_out, T& depth_out, T& raw) {
  const T acc = static_cast<T>(c.acc);
  for (int k = 0; k < 3; ++k) rgb_out[k] = add_rn(static_cast<T>(c.rgb[k]), mul_rn(bg[k], sub_rn(T(1), acc)));
  acc_out = acc;
  raw = div_rn(static_cast<T>(c.dsum), max_nan(acc, eps));
  depth_out = min_nan(max_nan(raw, near), far);
}

// The gradient factor of torch.maximum(x, lo) (then torch.minimum(., hi)) with respect to x: 1 inside,
// 0 outside, 1/2 at a tie (torch splits the gradient of equal operands).
template <typename T>
NERFPIPE_HD T clip_grad_factor(T x, T lo, T hi) {
  const T a = x > lo ? T(1) : (x == lo ? T(0.5) : T(0));
  const T y = max_nan(x, lo);
  const T b = y < hi ? T(1) : (y == hi ? T(0.5) : T(0));
  return a * b;
}

// Backward of packed_composite for one ray: with A = max(acc, eps) and raw = dsum / A,
//   dL/dw_i = g_acc + sum_k g_rgb_k (c_ik - bg_k) + g_depth' (t_mid_i - [acc >= eps] raw) / A,
//   dL/dc_ik = w_i g_rgb_k,
// g_depth' being g_depth through the clip to [near, far] (clip_grad_factor; clamp_min passes the gradient
// where acc >= eps, as torch's does).
template <typename T, typename A>
NERFPIPE_HD void composite_backward_ray(const T* w, const T* rgb, const T* ts, const T* te, int64_t first,
                                        int64_t count, const T* bg, T near, T far, T eps, const T* g_color,
                                        T g_acc, T g_depth, T* grad_w, T* grad_rgb) {
  const CompositeSums<T, A> c = composite_sums<T, A>(w, rgb, ts, te, first, count);
  const T acc = static_cast<T>(c.acc);
  const T denom = max_nan(acc, eps);
  const T raw = div_rn(static_cast<T>(c.dsum), denom);
  const A gd = static_cast<A>(g_depth) * static_cast<A>(clip_grad_factor(raw, near, far));
  const A through = acc >= eps ? static_cast<A>(raw) : A(0);
  A base = static_cast<A>(g_acc);
  for (int k = 0; k < 3; ++k) base -= static_cast<A>(g_color[k]) * static_cast<A>(bg[k]);
  for (int64_t i = first; i < first + count; ++i) {
    A g = base;
    for (int k = 0; k < 3; ++k) {
      g += static_cast<A>(g_color[k]) * static_cast<A>(rgb[3 * i + k]);
      grad_rgb[3 * i + k] = mul_rn(w[i], g_color[k]);
    }
    const A t_mid = static_cast<A>(div_rn(add_rn(ts[i], te[i]), T(2)));
    grad_w[i] = static_cast<T>(g + gd * (t_mid - through) / static_cast<A>(denom));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Grid update (occgrid.py: OccupancyGrid.update): amax over duplicate cells through an order-preserving
// unsigned key of the float bits, so that an integer max (CUDA: atomicMax) is the float max; key 0 marks a
// cell no update touched.

template <typename T>
struct KeyOf;
template <>
struct KeyOf<float> {
  using type = uint32_t;
};
template <>
struct KeyOf<double> {
  using type = unsigned long long;
};

template <typename T>
NERFPIPE_HD typename KeyOf<T>::type float_key(T v) {
  using U = typename KeyOf<T>::type;
  U bits;
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) {
    bits = __float_as_uint(v);
  } else {
    bits = static_cast<U>(__double_as_longlong(v));
  }
#else
  std::memcpy(&bits, &v, sizeof(T));
#endif
  // Any NaN (x86's default NaN has the sign bit set) takes the largest key, so it wins the max as torch's
  // scatter_reduce(amax) propagates it; 0 stays reserved for "untouched".
  if (v != v) return ~U(0);
  const U sign = U(1) << (8 * sizeof(T) - 1);
  const U key = (bits & sign) ? ~bits : (bits | sign);
  return key == U(0) ? U(1) : key;
}

template <typename T>
NERFPIPE_HD T key_float(typename KeyOf<T>::type key) {
  using U = typename KeyOf<T>::type;
  const U sign = U(1) << (8 * sizeof(T) - 1);
  const U bits = (key & sign) ? (key & ~sign) : ~key;
  T v;
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) {
    v = __uint_as_float(bits);
  } else {
    v = __longlong_as_double(static_cast<long long>(bits));
  }
#else
  std::memcpy(&v, &bits, sizeof(T));
#endif
  return v;
}

// The EMA value of one chosen cell, from the cell's OLD occupancy: max(decay * occ, sigma * step).
template <typename T>
NERFPIPE_HD T ema_value(T occ_old, T sigma, T decay, T step) {
  return max_nan(mul_rn(occ_old, decay), mul_rn(sigma, step));
}

}  // namespace nerfpipe
