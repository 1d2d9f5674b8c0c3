// The device loops every front-end calls: an elementwise map, a summing map and the multi-tensor
// SGD step, once per device. The CPU loops live in csrc/cpu_kernels.cpp, the CUDA ones in
// cuda/kernels.cu and cuda/sgd.cu. The maps take the iteration plan (an at::TensorIteratorBase:
// broadcasting, strides, 64-bit sizes) and a Formula.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/TensorIterator.h>

#include <optional>

#include "formulas.h"

namespace pyext {

// Bits a loop returns when a formula's checked arguments leave [0, 1] (see ChecksUnitInterval).
enum DomainError : int { kArg0OutOfRange = 1, kArg1OutOfRange = 2 };

// One SGD step over lists of tensors of one device and dtype, each dense with its grad and buffer
// laid out alike (so all three are walked as flat arrays). Buffers are empty without momentum.
// lr_tensor, grad_scale and found_inf are optional float32 0-d tensors on the same device.
struct SgdArgs {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize, first_step;
  std::optional<at::Tensor> lr_tensor, grad_scale, found_inf;
};

#define PYEXT_DECLARE_LOOPS                                                                        \
  /* Writes f(inputs...) into the iterator's output. Returns DomainError bits. */                  \
  int elementwise(at::TensorIteratorBase& iter, const Formula& f);                                 \
  /* Writes sum(f(inputs...)) / divisor into the 0-d `out`; the iterator has inputs only.          \
     Returns DomainError bits. */                                                                  \
  int sum(at::TensorIteratorBase& iter, const Formula& f, const at::Tensor& out, double divisor);  \
  void sgd_step(at::TensorList params, at::TensorList grads, at::TensorList buffers, const SgdArgs& args);

namespace cpu { PYEXT_DECLARE_LOOPS }
#ifdef PYEXT_WITH_CUDA
namespace cuda {
PYEXT_DECLARE_LOOPS
// Whether sum() takes a loss beside its gradient (formulas.h's SumsFirst): the build's PYEXT_CUDA_LOSS_GRADIENT.
bool sums_beside_gradient();
}  // namespace cuda
#endif

#undef PYEXT_DECLARE_LOOPS

}  // namespace pyext
