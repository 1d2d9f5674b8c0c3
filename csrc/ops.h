// Front-ends that C++ calls directly, below the dispatcher (csrc/ops.cpp): autograd's path for a reduced loss whose
// input wants a gradient (csrc/autograd.cpp, LossWithGradient). Each *_and_grad returns the loss, as the loss op
// does, and dL/dx for an incoming gradient of 1, as the loss's backward op would, both from one pass over the
// operands. Each *_backward_into takes that gradient (`kept`) and the backward's one-element incoming gradient, and
// returns `kept`: as it is where that gradient is exactly 1 (on a GPU, its kernel reads it and returns at once),
// else overwritten with what the backward op gives.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace pyext {

std::tuple<at::Tensor, at::Tensor> binary_cross_entropy_and_grad(const at::Tensor& self, const at::Tensor& target,
                                                                 const std::optional<at::Tensor>& weight,
                                                                 int64_t reduction);
std::tuple<at::Tensor, at::Tensor> binary_cross_entropy_with_logits_and_grad(
    const at::Tensor& self, const at::Tensor& target, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& pos_weight, int64_t reduction);
// input and target of one shape
std::tuple<at::Tensor, at::Tensor> mse_loss_and_grad(const at::Tensor& self, const at::Tensor& target,
                                                     int64_t reduction);

// Whether the loops of that device compute a loss beside its gradient (the *_and_grad functions).
bool sums_beside_gradient(c10::DeviceType device);

at::Tensor binary_cross_entropy_backward_into(at::Tensor& kept, const at::Tensor& grad, const at::Tensor& self,
                                              const at::Tensor& target, const std::optional<at::Tensor>& weight,
                                              int64_t reduction);
at::Tensor binary_cross_entropy_with_logits_backward_into(at::Tensor& kept, const at::Tensor& grad,
                                                          const at::Tensor& self, const at::Tensor& target,
                                                          const std::optional<at::Tensor>& weight,
                                                          const std::optional<at::Tensor>& pos_weight,
                                                          int64_t reduction);
at::Tensor mse_loss_backward_into(at::Tensor& kept, const at::Tensor& grad, const at::Tensor& self,
                                  const at::Tensor& target, int64_t reduction);

}  // namespace pyext
