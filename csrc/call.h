// pyext's ops called from C++ through the dispatcher with typed arguments, so that every layer torch
// puts in front of a kernel (autograd, vmap, tracing, Python modes, CPU or CUDA) applies: used by the
// autograd formulas (csrc/autograd.cpp) and by the eager entry points of the Python module (csrc/module.cpp).
// Named pyext::call::X so that at::X (found by argument-dependent lookup) is never taken instead.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <tuple>

namespace pyext {
namespace call {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name, const char* overload) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload).typed<Signature>();
}

inline Tensor mul(const Tensor& a, const Tensor& b) {
  static const auto h = op<Tensor(const Tensor&, const Tensor&)>("pyext::mul", "Tensor");
  return h.call(a, b);
}
inline Tensor mul(const Tensor& a, const c10::Scalar& b) {
  static const auto h = op<Tensor(const Tensor&, const c10::Scalar&)>("pyext::mul", "Scalar");
  return h.call(a, b);
}
inline std::tuple<Tensor, Tensor> mul_backward(const Tensor& g, const Tensor& a, const Tensor& b) {
  static const auto h =
      op<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&)>("pyext::mul_backward", "");
  return h.call(g, a, b);
}
inline Tensor add(const Tensor& a, const Tensor& b, const c10::Scalar& alpha) {
  static const auto h = op<Tensor(const Tensor&, const Tensor&, const c10::Scalar&)>("pyext::add", "Tensor");
  return h.call(a, b, alpha);
}
inline Tensor add(const Tensor& a, const c10::Scalar& b, const c10::Scalar& alpha) {
  static const auto h = op<Tensor(const Tensor&, const c10::Scalar&, const c10::Scalar&)>("pyext::add", "Scalar");
  return h.call(a, b, alpha);
}
inline void add_(Tensor& self, const Tensor& other, const c10::Scalar& alpha) {
  static const auto h = op<void(Tensor&, const Tensor&, const c10::Scalar&)>("pyext::add_", "Tensor");
  h.call(self, other, alpha);
}
inline void add_(Tensor& self, const c10::Scalar& other, const c10::Scalar& alpha) {
  static const auto h = op<void(Tensor&, const c10::Scalar&, const c10::Scalar&)>("pyext::add_", "Scalar");
  h.call(self, other, alpha);
}
inline void mul_(Tensor& self, const Tensor& other) {
  static const auto h = op<void(Tensor&, const Tensor&)>("pyext::mul_", "Tensor");
  h.call(self, other);
}
inline void mul_(Tensor& self, const c10::Scalar& other) {
  static const auto h = op<void(Tensor&, const c10::Scalar&)>("pyext::mul_", "Scalar");
  h.call(self, other);
}
inline Tensor sigmoid(const Tensor& x) {
  static const auto h = op<Tensor(const Tensor&)>("pyext::sigmoid", "");
  return h.call(x);
}
inline Tensor sigmoid_backward(const Tensor& g, const Tensor& y) {
  static const auto h = op<Tensor(const Tensor&, const Tensor&)>("pyext::sigmoid_backward", "");
  return h.call(g, y);
}
inline Tensor bce(const Tensor& x, const Tensor& y, const OptTensor& w, int64_t reduction) {
  static const auto h =
      op<Tensor(const Tensor&, const Tensor&, const OptTensor&, int64_t)>("pyext::binary_cross_entropy", "");
  return h.call(x, y, w, reduction);
}
inline Tensor bce_backward(const Tensor& g, const Tensor& x, const Tensor& y, const OptTensor& w, int64_t reduction) {
  static const auto h = op<Tensor(const Tensor&, const Tensor&, const Tensor&, const OptTensor&, int64_t)>(
      "pyext::binary_cross_entropy_backward", "");
  return h.call(g, x, y, w, reduction);
}
inline Tensor bce_target_backward(const Tensor& g, const Tensor& x, const OptTensor& w, int64_t reduction) {
  static const auto h = op<Tensor(const Tensor&, const Tensor&, const OptTensor&, int64_t)>(
      "pyext::binary_cross_entropy_target_backward", "");
  return h.call(g, x, w, reduction);
}
inline Tensor bce_logits(const Tensor& x, const Tensor& y, const OptTensor& w, const OptTensor& p, int64_t reduction) {
  static const auto h = op<Tensor(const Tensor&, const Tensor&, const OptTensor&, const OptTensor&, int64_t)>(
      "pyext::binary_cross_entropy_with_logits", "");
  return h.call(x, y, w, p, reduction);
}
inline Tensor bce_logits_backward(const Tensor& g, const Tensor& x, const Tensor& y, const OptTensor& w,
                           const OptTensor& p, int64_t reduction) {
  static const auto h =
      op<Tensor(const Tensor&, const Tensor&, const Tensor&, const OptTensor&, const OptTensor&, int64_t)>(
          "pyext::binary_cross_entropy_with_logits_backward", "");
  return h.call(g, x, y, w, p, reduction);
}
inline Tensor bce_logits_target_backward(const Tensor& g, const Tensor& x, const OptTensor& w, const OptTensor& p,
                                  int64_t reduction) {
  static const auto h = op<Tensor(const Tensor&, const Tensor&, const OptTensor&, const OptTensor&, int64_t)>(
      "pyext::binary_cross_entropy_with_logits_target_backward", "");
  return h.call(g, x, w, p, reduction);
}
inline Tensor mse(const Tensor& x, const Tensor& y, int64_t reduction) {
  static const auto h = op<Tensor(const Tensor&, const Tensor&, int64_t)>("pyext::mse_loss", "");
  return h.call(x, y, reduction);
}
inline Tensor mse_backward(const Tensor& g, const Tensor& x, const Tensor& y, int64_t reduction) {
  static const auto h =
      op<Tensor(const Tensor&, const Tensor&, const Tensor&, int64_t)>("pyext::mse_loss_backward", "");
  return h.call(g, x, y, reduction);
}

inline void sgd_step_(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers, double lr,
                      double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
                      bool is_first_step, const OptTensor& lr_tensor, const OptTensor& grad_scale,
                      const OptTensor& found_inf) {
  static const auto h = op<void(at::TensorList, at::TensorList, at::TensorList, double, double, double, double, bool,
                                bool, bool, const OptTensor&, const OptTensor&, const OptTensor&)>("pyext::sgd_step_", "");
  h.call(params, grads, momentum_buffers, lr, momentum, dampening, weight_decay, nesterov, maximize, is_first_step,
         lr_tensor, grad_scale, found_inf);
}

}  // namespace call

}  // namespace pyext
