// What every pyext CUDA kernel file shares: the block size, the 16-byte vector type, the alignment test.
#pragma once

#include <cstdint>

namespace pyext {
namespace cuda {

// Threads per block (a build-time knob for tests/gpu_check.sh's VARIANTS: torch's elementwise loops use 128).
#ifndef PYEXT_CUDA_THREADS
#define PYEXT_CUDA_THREADS 256
#endif
constexpr int kThreads = PYEXT_CUDA_THREADS;
static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps, at most 1024 threads a block");

// VEC elements loaded or stored as one 16-byte access (when VEC * sizeof(scalar_t) == 16).
template <typename scalar_t, int VEC>
struct alignas(sizeof(scalar_t) * VEC) Pack {
  scalar_t v[VEC];
};

// Whether a 16-byte access may start at ptr (a null pointer, an absent operand, never blocks it).
inline bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace cuda
}  // namespace pyext
