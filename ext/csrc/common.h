// Shared by the CPU (.cpp) and CUDA (.cu) kernels: the counter-based hash that turns
// (key, element index) into a uniform number, bit-identical to nerfpipe.random_keys.hash_index.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define NERFPIPE_HD __host__ __device__ __forceinline__
#else
#define NERFPIPE_HD inline
#endif

namespace nerfpipe {

// "lowbias32" integer finaliser (C. Wellons, hash-prospector): a bijection on 32-bit words
// with low avalanche bias.
NERFPIPE_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Two rounds keyed by the seeds (s1, s2) derived from the user's integer key in Python;
// the high word of the index enters the second round so indices >= 2^32 stay distinct.
NERFPIPE_HD uint32_t hash_index(uint32_t s1, uint32_t s2, int64_t index) {
  const uint64_t i = static_cast<uint64_t>(index);
  const uint32_t lo = static_cast<uint32_t>(i & 0xffffffffULL);
  const uint32_t hi = static_cast<uint32_t>(i >> 32);
  const uint32_t x = mix32(lo ^ s1);
  return mix32(x + s2 + hi * 0x9e3779b9U);
}

// The top 24 bits as a float in [0, 1): exact in float32 (24-bit mantissa) and float64.
NERFPIPE_HD float hash_uniform(uint32_t s1, uint32_t s2, int64_t index) {
  return static_cast<float>(hash_index(s1, s2, index) >> 8) * (1.0f / 16777216.0f);
}

}  // namespace nerfpipe
