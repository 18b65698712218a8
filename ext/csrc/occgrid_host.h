// Host-side helpers of the occupancy-grid ops shared by the CPU (occgrid.cpp) and CUDA (cuda/occgrid.cu)
// launchers; the formulas both run are in occgrid.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "occgrid.h"

namespace nerfpipe {

// The grid a march reads: the box (copied to the host: six numbers, read by index) and the occupancy
// flags, on the device of `occupied`.
template <typename T>
MarchGrid<T> march_grid(const at::Tensor& aabb, const at::Tensor& occupied, int64_t resolution) {
  const at::Tensor box = aabb.contiguous().cpu();
  const T* b = box.data_ptr<T>();
  MarchGrid<T> g;
  for (int k = 0; k < 3; ++k) {
    g.lo[k] = b[k];
    g.hi[k] = b[3 + k];
  }
  g.res = resolution;
  g.occupied = static_cast<const uint8_t*>(occupied.data_ptr());
  return g;
}

}  // namespace nerfpipe
