// Front-ends that C++ calls directly, below the dispatcher (csrc/ops.cpp): autograd's CPU path for a reduced loss
// whose input wants a gradient (csrc/autograd.cpp, LossWithGradient). Each returns the loss, as the loss op does,
// and dL/dx for an incoming gradient of 1, as the loss's backward op would, both from one pass over the operands.
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

}  // namespace pyext
