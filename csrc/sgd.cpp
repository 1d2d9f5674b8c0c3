// The SGD step's front-end: validates the tensor lists, lines up layouts, and hands one device and
// dtype's tensors to the multi-tensor loop (csrc/cpu_kernels.cpp, cuda/sgd.cu). Its schema is in
// ops.cpp's TORCH_LIBRARY block with the others; pyext.optim.SGD groups parameters per call.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "kernels.h"

namespace pyext {
namespace {

using at::Tensor;

constexpr const char* kOp = "sgd_step_";

// The name of list[i] in a message (built only when a check fails).
std::string item(const char* list, size_t i) { return std::string(list) + "[" + std::to_string(i) + "]"; }

// list[i] must be on params[p]'s device with its dtype, and with its shape unless only the kind must match.
void check_like(const Tensor& t, const char* list, size_t i, const Tensor& param, size_t p, bool same_shape = true) {
  TORCH_CHECK(t.defined(), kOp, ": ", item(list, i), " is undefined");
  TORCH_CHECK(!t.is_sparse(), kOp, ": ", item(list, i), " is sparse; pyext's SGD takes dense tensors only");
  TORCH_CHECK(!same_shape || t.sizes().equals(param.sizes()), kOp, ": ", item(list, i), " and ", item("params", p),
              " have different shapes");
  TORCH_CHECK(t.device() == param.device(), kOp, ": ", item(list, i), " is on ", t.device().str(), " but ",
              item("params", p), " is on ", param.device().str());
  TORCH_CHECK(t.scalar_type() == param.scalar_type(), kOp, ": ", item(list, i), " is ", t.scalar_type(), " but ",
              item("params", p), " is ", param.scalar_type());
}

std::optional<Tensor> scalar_on(const std::optional<Tensor>& t, const char* name, const Tensor& param) {
  if (!t || !t->defined()) return std::nullopt;
  TORCH_CHECK(t->numel() == 1, kOp, ": ", name, " must have one element");
  TORCH_CHECK(t->device() == param.device(), kOp, ": ", name, " is on ", t->device().str(), " but the params are on ",
              param.device().str());
  return t->to(at::kFloat);
}

void sgd_step_(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers, double lr,
               double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
               bool is_first_step, const std::optional<Tensor>& lr_tensor, const std::optional<Tensor>& grad_scale,
               const std::optional<Tensor>& found_inf) {
  TORCH_CHECK(grads.size() == params.size(), kOp, ": got ", std::to_string(params.size()), " params but ",
              std::to_string(grads.size()), " grads");
  const bool has_buffers = momentum != 0.0;
  TORCH_CHECK(momentum_buffers.size() == (has_buffers ? params.size() : 0), kOp, ": with momentum ",
              has_buffers ? "every param needs a momentum buffer" : "0 there are no momentum buffers");
  for (const auto& [name, value] : {std::pair<const char*, double>{"lr", lr}, {"momentum", momentum},
                                    {"dampening", dampening}, {"weight_decay", weight_decay}}) {
    TORCH_CHECK(std::isfinite(value), kOp, ": ", name, " must be finite, but is ", std::to_string(value));
  }
  if (params.empty()) return;
  const Tensor& first = params[0];
  const at::ScalarType dtype = first.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16, kOp,
              ": unsupported dtype ", dtype, " (pyext kernels take float32, float64, float16 and bfloat16)");

  // Each gradient is walked in its parameter's memory order; one laid out otherwise is copied so.
  std::vector<Tensor> grads_like_params;
  grads_like_params.reserve(grads.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    check_like(p, "params", i, first, 0, /*same_shape=*/false);
    TORCH_CHECK(p.is_non_overlapping_and_dense(), kOp, ": ", item("params", i),
                " is not dense (a view with gaps or overlaps); pyext's SGD updates dense tensors");
    check_like(grads[i], "grads", i, p, i);
    grads_like_params.push_back(grads[i].strides().equals(p.strides()) ? grads[i]
                                                                        : at::empty_like(p).copy_(grads[i]));
    if (has_buffers) {
      const Tensor& b = momentum_buffers[i];
      check_like(b, "momentum_buffers", i, p, i);
      TORCH_CHECK(b.strides().equals(p.strides()), kOp, ": ", item("momentum_buffers", i), " is laid out unlike ",
                  item("params", i));
    }
  }
  const SgdArgs args{lr, momentum, dampening, weight_decay, nesterov, maximize, is_first_step,
                     scalar_on(lr_tensor, "lr", first), scalar_on(grad_scale, "grad_scale", first),
                     scalar_on(found_inf, "found_inf", first)};
  if (first.is_cpu()) {
    cpu::sgd_step(params, grads_like_params, momentum_buffers, args);
  } else if (first.is_cuda()) {
#ifdef PYEXT_WITH_CUDA
    cuda::sgd_step(params, grads_like_params, momentum_buffers, args);
#else
    TORCH_CHECK(false, kOp, ": pyext was built without CUDA (no CUDA toolkit was found, or PYEXT_CPU_ONLY was set); "
                "rebuild it with nvcc available: pip install --no-build-isolation -e .");
#endif
  } else {
    TORCH_CHECK(false, kOp, ": pyext has no kernels for device ", first.device().str());
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(pyext, CPU, m) { m.impl("sgd_step_", &sgd_step_); }
TORCH_LIBRARY_IMPL(pyext, CUDA, m) { m.impl("sgd_step_", &sgd_step_); }

}  // namespace pyext
