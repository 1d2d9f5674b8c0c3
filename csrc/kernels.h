// The device loops every front-end calls: one elementwise map and one summing map per device.
// The CPU loops live in csrc/cpu_kernels.cpp, the CUDA ones in cuda/kernels.cu; both take the
// iteration plan (an at::TensorIterator: broadcasting, strides, 64-bit sizes) and a Formula.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/TensorIterator.h>

#include "formulas.h"

namespace pyext {

// Bits a loop returns when a formula's checked arguments leave [0, 1] (see ChecksUnitInterval).
enum DomainError : int { kArg0OutOfRange = 1, kArg1OutOfRange = 2 };

#define PYEXT_DECLARE_LOOPS                                                                     \
  /* Writes f(inputs...) into the iterator's output. Returns DomainError bits. */              \
  int elementwise(at::TensorIterator& iter, const Formula& f);                                 \
  /* Writes sum(f(inputs...)) / divisor into the 0-d `out`; the iterator has inputs only.      \
     Returns DomainError bits. */                                                               \
  int sum(at::TensorIterator& iter, const Formula& f, const at::Tensor& out, double divisor);

namespace cpu { PYEXT_DECLARE_LOOPS }
#ifdef PYEXT_WITH_CUDA
namespace cuda { PYEXT_DECLARE_LOOPS }
#endif

#undef PYEXT_DECLARE_LOOPS

}  // namespace pyext
