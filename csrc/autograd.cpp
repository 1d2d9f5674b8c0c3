// Autograd of every pyext op, registered in C++ (the Autograd dispatch key): a call that records a
// gradient never enters Python, and one that records none skips the graph. Each backward calls pyext
// ops through the dispatcher, so gradients are themselves differentiable: the forward ops' backwards are pyext's
// backward ops (mul_backward, sigmoid_backward, the loss backwards), whose own autograd is here too (second order;
// higher orders follow, as those formulas again call pyext ops, or torch's where pyext has no op:
// division, where, clamp). The first-order formulas are those of csrc/formulas.h.
#include <ATen/ATen.h>
#include <ATen/ExpandUtils.h>
#include <c10/util/accumulate.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>
#include <type_traits>

#include "call.h"

namespace pyext {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// A broadcast gradient summed back to its operand's shape, on the operand's device (a CPU 0-d
// operand beside a CUDA tensor gets its gradient on the CPU, as in torch).
Tensor reduce_to(const Tensor& grad, at::IntArrayRef sizes, c10::Device device) {
  Tensor g = at::sum_to(grad, sizes);
  return g.device() == device ? g : g.to(device);
}
Tensor reduce_to(const Tensor& grad, const Tensor& operand) {
  return reduce_to(grad, operand.sizes(), operand.device());
}

// What add's backward needs of an operand that broadcast (or is a CPU number beside a CUDA tensor): its
// shape and device, to sum its gradient back to. An operand laid out like the output saves nothing (the
// common case: four map entries fewer per call, 0.6 of the 2.6 us of a call, measured in C++).
void save_layout(AutogradContext* ctx, const std::string& key, const Tensor& t, const Tensor& out) {
  if (t.sizes().equals(out.sizes()) && t.device() == out.device()) return;
  ctx->saved_data[key + "_sizes"] = t.sizes();
  ctx->saved_data[key + "_device"] = t.device();
}
Tensor reduce_to_saved(AutogradContext* ctx, const std::string& key, const Tensor& grad) {
  const auto sizes = ctx->saved_data.find(key + "_sizes");
  if (sizes == ctx->saved_data.end()) return grad;
  return reduce_to(grad, sizes->second.toIntVector(), ctx->saved_data.at(key + "_device").toDevice());
}

// A saved optional tensor back as an optional (saved variables store an absent one as undefined).
OptTensor opt(const Tensor& t) { return t.defined() ? OptTensor(t) : std::nullopt; }

void no_weight_grad(const char* op, const OptTensor& w, const OptTensor& p = std::nullopt) {
  const bool needs = at::GradMode::is_enabled() && ((w && w->defined() && w->requires_grad()) ||
                                                   (p && p->defined() && p->requires_grad()));
  TORCH_CHECK_NOT_IMPLEMENTED(!needs, "pyext.", op, ": the derivative for 'weight' and 'pos_weight' is not implemented");
}

// --- when to record ------------------------------------------------------------------------------

// Whether a call must go through its autograd Function: grad mode is on and a tensor argument requires
// grad, or a tensor argument carries a forward-mode tangent (C++ Functions reject those with an error,
// which must not turn into a dropped tangent).
bool records(const Tensor& t) {
  if (!t.defined()) return false;
  return (at::GradMode::is_enabled() && t.requires_grad()) || t._fw_grad(/*level=*/0).defined();
}
bool records(const OptTensor& t) { return t && records(*t); }
template <typename T>
bool records(const T&) { return false; }  // numbers, the reduction

// The autograd kernel of an op: F::apply where the call is recorded, else straight to the kernel below
// autograd (F::op), as torch's own autograd kernels do. Function::apply builds a graph node even when no
// input needs one: 1.4 of the 2.1 us of an add of one-element tensors, measured in C++. An op of two
// outputs returns a tuple, which apply returns as a list.
template <typename F, typename... Args>
auto record(const Args&... args) -> decltype(F::op(args...)) {
  using Result = decltype(F::op(args...));
  if ((records(args) || ...)) {
    if constexpr (std::is_same_v<Result, Tensor>) {
      return F::apply(args...);
    } else {
      static_assert(std::tuple_size_v<Result> == 2, "ops return one tensor or two");
      const variable_list out = F::apply(args...);
      return Result{out[0], out[1]};
    }
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return F::op(args...);
}

// --- add, mul ------------------------------------------------------------------------------------

struct AddFunction : torch::autograd::Function<AddFunction> {
  static constexpr Tensor (*op)(const Tensor&, const Tensor&, const c10::Scalar&) = call::add;
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& b, const c10::Scalar& alpha) {
    ctx->saved_data["alpha"] = alpha;
    Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = op(a, b, alpha);
    }
    save_layout(ctx, "a", a, out);
    save_layout(ctx, "b", b, out);
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // d/da = 1, d/db = alpha
    const c10::Scalar alpha = ctx->saved_data["alpha"].toScalar();
    Tensor ga, gb;
    if (ctx->needs_input_grad(0)) ga = reduce_to_saved(ctx, "a", grads[0]);
    if (ctx->needs_input_grad(1)) gb = reduce_to_saved(ctx, "b", alpha.equal(1) ? grads[0] : call::mul(grads[0], alpha));
    return {ga, gb, Tensor()};
  }
};

struct AddScalarFunction : torch::autograd::Function<AddScalarFunction> {
  static constexpr Tensor (*op)(const Tensor&, const c10::Scalar&, const c10::Scalar&) = call::add;
  static Tensor forward(AutogradContext*, const Tensor& a, const c10::Scalar& b, const c10::Scalar& alpha) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return op(a, b, alpha);
  }
  static variable_list backward(AutogradContext*, variable_list grads) { return {grads[0], Tensor(), Tensor()}; }
};

struct MulFunction : torch::autograd::Function<MulFunction> {
  static constexpr Tensor (*op)(const Tensor&, const Tensor&) = call::mul;
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& b) {
    ctx->save_for_backward({a, b});
    at::AutoDispatchBelowADInplaceOrView guard;
    return op(a, b);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // d/da = b, d/db = a: both in one pass where both are wanted (5 transfers an element, not 6), unless a CPU
    // number sits beside a CUDA tensor (which the pass does not take)
    const auto saved = ctx->get_saved_variables();
    const Tensor &a = saved[0], &b = saved[1], &g = grads[0];
    Tensor ga, gb;
    if (ctx->needs_input_grad(0) && ctx->needs_input_grad(1) && a.device() == b.device()) {
      std::tie(ga, gb) = call::mul_backward(g, a, b);
      return {reduce_to(ga, a), reduce_to(gb, b)};
    }
    if (ctx->needs_input_grad(0)) ga = reduce_to(call::mul(g, b), a);
    if (ctx->needs_input_grad(1)) gb = reduce_to(call::mul(g, a), b);
    return {ga, gb};
  }
};

struct MulScalarFunction : torch::autograd::Function<MulScalarFunction> {
  static constexpr Tensor (*op)(const Tensor&, const c10::Scalar&) = call::mul;
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const c10::Scalar& b) {
    ctx->saved_data["other"] = b;
    at::AutoDispatchBelowADInplaceOrView guard;
    return op(a, b);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {call::mul(grads[0], ctx->saved_data["other"].toScalar()), Tensor()};
  }
};

// --- sigmoid -------------------------------------------------------------------------------------

struct SigmoidFunction : torch::autograd::Function<SigmoidFunction> {
  static constexpr auto op = call::sigmoid;
  static Tensor forward(AutogradContext* ctx, const Tensor& x) {
    Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = op(x);
    }
    ctx->save_for_backward({y});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {call::sigmoid_backward(grads[0], ctx->get_saved_variables()[0])};
  }
};

// --- losses: gradients for input and target ------------------------------------------------------

struct BceFunction : torch::autograd::Function<BceFunction> {
  static constexpr auto op = call::bce;
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& y, const OptTensor& w,
                        int64_t reduction) {
    ctx->save_for_backward({x, y, w.value_or(Tensor())});
    ctx->saved_data["reduction"] = reduction;
    at::AutoDispatchBelowADInplaceOrView guard;
    return op(x, y, w, reduction);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const int64_t red = ctx->saved_data["reduction"].toInt();
    const OptTensor w = opt(s[2]);
    Tensor gx, gy;
    if (ctx->needs_input_grad(0)) gx = call::bce_backward(grads[0], s[0], s[1], w, red);
    if (ctx->needs_input_grad(1)) gy = call::bce_target_backward(grads[0], s[0], w, red);
    return {gx, gy, Tensor(), Tensor()};
  }
};

struct BceLogitsFunction : torch::autograd::Function<BceLogitsFunction> {
  static constexpr auto op = call::bce_logits;
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& y, const OptTensor& w,
                        const OptTensor& p, int64_t reduction) {
    ctx->save_for_backward({x, y, w.value_or(Tensor()), p.value_or(Tensor())});
    ctx->saved_data["reduction"] = reduction;
    at::AutoDispatchBelowADInplaceOrView guard;
    return op(x, y, w, p, reduction);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const int64_t red = ctx->saved_data["reduction"].toInt();
    const OptTensor w = opt(s[2]);
    const OptTensor p = opt(s[3]);
    Tensor gx, gy;
    if (ctx->needs_input_grad(0)) gx = call::bce_logits_backward(grads[0], s[0], s[1], w, p, red);
    if (ctx->needs_input_grad(1)) gy = call::bce_logits_target_backward(grads[0], s[0], w, p, red);
    return {gx, gy, Tensor(), Tensor(), Tensor()};
  }
};

struct MseFunction : torch::autograd::Function<MseFunction> {
  static constexpr auto op = call::mse;
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& y, int64_t reduction) {
    ctx->save_for_backward({x, y});
    ctx->saved_data["reduction"] = reduction;
    at::AutoDispatchBelowADInplaceOrView guard;
    return op(x, y, reduction);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // d/dx = norm (x - y) g; d/dy is the same with x and y swapped
    const auto s = ctx->get_saved_variables();
    const int64_t red = ctx->saved_data["reduction"].toInt();
    Tensor gx, gy;
    if (ctx->needs_input_grad(0)) gx = reduce_to(call::mse_backward(grads[0], s[0], s[1], red), s[0]);
    if (ctx->needs_input_grad(1)) gy = reduce_to(call::mse_backward(grads[0], s[1], s[0], red), s[1]);
    return {gx, gy, Tensor()};
  }
};

// --- the backward ops: second order ---------------------------------------------------------------

constexpr double kBceEps = 1e-12;  // the clamp of BCE's backward denominator, as in torch

// factor / n for 'mean', else factor: what a loss backward multiplies by. n is a SymInt (symbolic under
// torch.compile with dynamic shapes), so the factor is a Scalar that may be symbolic too.
c10::Scalar loss_scale(int64_t reduction, const c10::SymInt& n, double factor = 1.0) {
  return reduction == 1 ? c10::Scalar(factor / n) : c10::Scalar(factor);
}

// The gradient for a loss backward's grad_output from the unreduced term: itself for 'none', its sum
// for 'sum' (grad_output is then one number), the sum divided by n for 'mean'.
Tensor reduce_like(const Tensor& unreduced, int64_t reduction, const c10::SymInt& n) {
  if (reduction == 0) return unreduced;
  const Tensor total = unreduced.sum();
  return reduction == 1 ? call::mul(total, loss_scale(reduction, n)) : total;
}

// g_w = gg w (gg without a weight)
Tensor times_weight(const Tensor& gg, const OptTensor& w) { return w ? call::mul(gg, *w) : gg; }

// ga = g b, gb = g a: d/dg = gg_a b + gg_b a, d/da = gg_b g, d/db = gg_a g
struct MulBackwardFunction : torch::autograd::Function<MulBackwardFunction> {
  static constexpr auto op = call::mul_backward;
  static variable_list forward(AutogradContext* ctx, const Tensor& g, const Tensor& a, const Tensor& b) {
    ctx->save_for_backward({g, a, b});
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [ga, gb] = op(g, a, b);
    return {ga, gb};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const Tensor &g = s[0], &a = s[1], &b = s[2], &gga = grads[0], &ggb = grads[1];
    Tensor g_grad, g_a, g_b;
    if (ctx->needs_input_grad(0)) g_grad = reduce_to(call::add(call::mul(gga, b), call::mul(ggb, a), 1), g);
    if (ctx->needs_input_grad(1)) g_a = reduce_to(call::mul(ggb, g), a);
    if (ctx->needs_input_grad(2)) g_b = reduce_to(call::mul(gga, g), b);
    return {g_grad, g_a, g_b};
  }
};

struct SigmoidBackwardFunction : torch::autograd::Function<SigmoidBackwardFunction> {
  static constexpr auto op = call::sigmoid_backward;
  static Tensor forward(AutogradContext* ctx, const Tensor& g, const Tensor& y) {
    ctx->save_for_backward({g, y});
    at::AutoDispatchBelowADInplaceOrView guard;
    return op(g, y);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // d/dg [g y (1 - y)] = y (1 - y);  d/dy = g (1 - 2y)
    const auto s = ctx->get_saved_variables();
    const Tensor& gg = grads[0];
    Tensor g_grad, g_y;
    if (ctx->needs_input_grad(0)) g_grad = call::sigmoid_backward(gg, s[1]);
    if (ctx->needs_input_grad(1)) g_y = call::mul(call::mul(gg, s[0]), call::add(call::mul(s[1], -2), 1, 1));
    return {g_grad, g_y};
  }
};

// gx = g w (x - y) / D / n, D = max(x (1 - x), eps)
struct BceBackwardFunction : torch::autograd::Function<BceBackwardFunction> {
  static constexpr auto op = call::bce_backward;
  static Tensor forward(AutogradContext* ctx, const Tensor& g, const Tensor& x, const Tensor& y, const OptTensor& w,
                        int64_t reduction) {
    ctx->save_for_backward({g, x, y, w.value_or(Tensor())});
    ctx->saved_data["reduction"] = reduction;
    at::AutoDispatchBelowADInplaceOrView guard;
    return op(g, x, y, w, reduction);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const Tensor &g = s[0], &x = s[1], &y = s[2], &gg = grads[0];
    const OptTensor w = opt(s[3]);
    const int64_t red = ctx->saved_data["reduction"].toInt();
    const c10::SymInt n = x.sym_numel();
    const Tensor d_raw = x * (1 - x);
    const Tensor d = d_raw.clamp_min(kBceEps);
    const Tensor gwg = times_weight(gg, w) * g * loss_scale(red, n);
    Tensor g_grad, g_x, g_y;
    if (ctx->needs_input_grad(0)) g_grad = reduce_like(call::bce_backward(gg, x, y, w, 0), red, n);
    if (ctx->needs_input_grad(1)) {
      const Tensor dd = at::where(d_raw > kBceEps, 1 - 2 * x, at::zeros_like(x));
      g_x = gwg * (d - (x - y) * dd) / (d * d);
    }
    if (ctx->needs_input_grad(2)) g_y = -gwg / d;
    return {g_grad, g_x, g_y, Tensor(), Tensor()};
  }
};

// gy = -g w logit(x) / n
struct BceTargetBackwardFunction : torch::autograd::Function<BceTargetBackwardFunction> {
  static constexpr auto op = call::bce_target_backward;
  static Tensor forward(AutogradContext* ctx, const Tensor& g, const Tensor& x, const OptTensor& w,
                        int64_t reduction) {
    ctx->save_for_backward({g, x, w.value_or(Tensor())});
    ctx->saved_data["reduction"] = reduction;
    at::AutoDispatchBelowADInplaceOrView guard;
    return op(g, x, w, reduction);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const Tensor &g = s[0], &x = s[1], &gg = grads[0];
    const OptTensor w = opt(s[2]);
    const int64_t red = ctx->saved_data["reduction"].toInt();
    const c10::SymInt n = x.sym_numel();
    Tensor g_grad, g_x;
    if (ctx->needs_input_grad(0)) g_grad = reduce_like(call::bce_target_backward(gg, x, w, 0), red, n);
    if (ctx->needs_input_grad(1)) g_x = -times_weight(gg, w) * g * loss_scale(red, n) / (x * (1 - x));
    return {g_grad, g_x, Tensor(), Tensor()};
  }
};

// gx = g w (l s - p y) / n with s = sigmoid(x), l = p y + 1 - y  (gx = g w (s - y) / n without p)
struct BceLogitsBackwardFunction : torch::autograd::Function<BceLogitsBackwardFunction> {
  static constexpr auto op = call::bce_logits_backward;
  static Tensor forward(AutogradContext* ctx, const Tensor& g, const Tensor& x, const Tensor& y, const OptTensor& w,
                        const OptTensor& p, int64_t reduction) {
    ctx->save_for_backward({g, x, y, w.value_or(Tensor()), p.value_or(Tensor())});
    ctx->saved_data["reduction"] = reduction;
    at::AutoDispatchBelowADInplaceOrView guard;
    return op(g, x, y, w, p, reduction);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const Tensor &g = s[0], &x = s[1], &y = s[2], &gg = grads[0];
    const OptTensor w = opt(s[3]), p = opt(s[4]);
    const int64_t red = ctx->saved_data["reduction"].toInt();
    const c10::SymInt n = x.sym_numel();
    const c10::Scalar scale = loss_scale(red, n);
    const Tensor sx = call::sigmoid(x);
    const Tensor gwg = times_weight(call::mul(gg, g), w);
    Tensor g_grad, g_x, g_y;
    if (ctx->needs_input_grad(0)) g_grad = reduce_like(call::bce_logits_backward(gg, x, y, w, p, 0), red, n);
    if (ctx->needs_input_grad(1)) {
      const Tensor lw = p ? call::mul(gwg, *p * y + 1 - y) : gwg;
      g_x = call::mul(call::sigmoid_backward(lw, sx), scale);
    }
    if (ctx->needs_input_grad(2)) g_y = p ? gwg * ((*p - 1) * sx - *p) * scale : call::mul(gwg, loss_scale(red, n, -1.0));
    return {g_grad, g_x, g_y, Tensor(), Tensor(), Tensor()};
  }
};

// gy = g w (ln sigmoid(-x) - p ln sigmoid(x)) / n  (-g w x / n without p)
struct BceLogitsTargetBackwardFunction : torch::autograd::Function<BceLogitsTargetBackwardFunction> {
  static constexpr auto op = call::bce_logits_target_backward;
  static Tensor forward(AutogradContext* ctx, const Tensor& g, const Tensor& x, const OptTensor& w,
                        const OptTensor& p, int64_t reduction) {
    ctx->save_for_backward({g, x, w.value_or(Tensor()), p.value_or(Tensor())});
    ctx->saved_data["reduction"] = reduction;
    at::AutoDispatchBelowADInplaceOrView guard;
    return op(g, x, w, p, reduction);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const Tensor &g = s[0], &x = s[1], &gg = grads[0];
    const OptTensor w = opt(s[2]), p = opt(s[3]);
    const int64_t red = ctx->saved_data["reduction"].toInt();
    const c10::SymInt n = x.sym_numel();
    const c10::Scalar scale = loss_scale(red, n);
    const Tensor gwg = times_weight(call::mul(gg, g), w);
    Tensor g_grad, g_x;
    if (ctx->needs_input_grad(0)) g_grad = reduce_like(call::bce_logits_target_backward(gg, x, w, p, 0), red, n);
    if (ctx->needs_input_grad(1)) {
      // d/dx ln sigmoid(-x) = -s, d/dx ln sigmoid(x) = 1 - s
      if (p) {
        const Tensor sx = call::sigmoid(x);
        g_x = gwg * (-sx - *p * (1 - sx)) * scale;
      } else {
        g_x = call::mul(gwg, loss_scale(red, n, -1.0));
      }
    }
    return {g_grad, g_x, Tensor(), Tensor(), Tensor()};
  }
};

// gx = norm (x - y) g, norm = 2 (2 / n for 'mean'); gy the same with x and y swapped
struct MseBackwardFunction : torch::autograd::Function<MseBackwardFunction> {
  static constexpr auto op = call::mse_backward;
  static Tensor forward(AutogradContext* ctx, const Tensor& g, const Tensor& x, const Tensor& y, int64_t reduction) {
    ctx->save_for_backward({g, x, y});
    ctx->saved_data["reduction"] = reduction;
    at::AutoDispatchBelowADInplaceOrView guard;
    return op(g, x, y, reduction);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const Tensor &g = s[0], &x = s[1], &y = s[2], &gg = grads[0];
    const int64_t red = ctx->saved_data["reduction"].toInt();
    const c10::SymInt n = c10::multiply_integers(at::infer_size_symint(x.sym_sizes(), y.sym_sizes()));
    const Tensor ggn = call::mul(call::mul(gg, g), loss_scale(red, n, 2.0));
    Tensor g_grad, g_x, g_y;
    if (ctx->needs_input_grad(0)) g_grad = reduce_like(call::mse_backward(gg, x, y, 0), red, n);
    if (ctx->needs_input_grad(1)) g_x = reduce_to(ggn, x);
    if (ctx->needs_input_grad(2)) g_y = reduce_to(call::mul(ggn, -1), y);
    return {g_grad, g_x, g_y, Tensor()};
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(pyext, Autograd, m) {
  m.impl("add.Tensor", [](const Tensor& a, const Tensor& b, const c10::Scalar& alpha) {
    return record<AddFunction>(a, b, alpha);
  });
  m.impl("add.Scalar", [](const Tensor& a, const c10::Scalar& b, const c10::Scalar& alpha) {
    return record<AddScalarFunction>(a, b, alpha);
  });
  m.impl("mul.Tensor", [](const Tensor& a, const Tensor& b) { return record<MulFunction>(a, b); });
  m.impl("mul.Scalar", [](const Tensor& a, const c10::Scalar& b) { return record<MulScalarFunction>(a, b); });
  m.impl("sigmoid", [](const Tensor& x) { return record<SigmoidFunction>(x); });
  // (apply runs forward with grad mode off: the weight check comes before it)
  m.impl("binary_cross_entropy", [](const Tensor& x, const Tensor& y, const OptTensor& w, int64_t reduction) {
    no_weight_grad("binary_cross_entropy", w);
    return record<BceFunction>(x, y, w, reduction);
  });
  m.impl("binary_cross_entropy_with_logits", [](const Tensor& x, const Tensor& y, const OptTensor& w,
                                                const OptTensor& p, int64_t reduction) {
    no_weight_grad("binary_cross_entropy_with_logits", w, p);
    return record<BceLogitsFunction>(x, y, w, p, reduction);
  });
  m.impl("mse_loss", [](const Tensor& x, const Tensor& y, int64_t reduction) {
    return record<MseFunction>(x, y, reduction);
  });

  m.impl("mul_backward", [](const Tensor& g, const Tensor& a, const Tensor& b) {
    return record<MulBackwardFunction>(g, a, b);
  });
  m.impl("sigmoid_backward", [](const Tensor& g, const Tensor& y) { return record<SigmoidBackwardFunction>(g, y); });
  m.impl("binary_cross_entropy_backward", [](const Tensor& g, const Tensor& x, const Tensor& y, const OptTensor& w,
                                             int64_t reduction) {
    no_weight_grad("binary_cross_entropy_backward", w);
    return record<BceBackwardFunction>(g, x, y, w, reduction);
  });
  m.impl("binary_cross_entropy_target_backward", [](const Tensor& g, const Tensor& x, const OptTensor& w,
                                                    int64_t reduction) {
    no_weight_grad("binary_cross_entropy_target_backward", w);
    return record<BceTargetBackwardFunction>(g, x, w, reduction);
  });
  m.impl("binary_cross_entropy_with_logits_backward", [](const Tensor& g, const Tensor& x, const Tensor& y,
                                                         const OptTensor& w, const OptTensor& p, int64_t reduction) {
    no_weight_grad("binary_cross_entropy_with_logits_backward", w, p);
    return record<BceLogitsBackwardFunction>(g, x, y, w, p, reduction);
  });
  m.impl("binary_cross_entropy_with_logits_target_backward", [](const Tensor& g, const Tensor& x, const OptTensor& w,
                                                                const OptTensor& p, int64_t reduction) {
    no_weight_grad("binary_cross_entropy_with_logits_target_backward", w, p);
    return record<BceLogitsTargetBackwardFunction>(g, x, w, p, reduction);
  });
  m.impl("mse_loss_backward", [](const Tensor& g, const Tensor& x, const Tensor& y, int64_t reduction) {
    return record<MseBackwardFunction>(g, x, y, reduction);
  });

  // The SGD step records no gradient and, like torch's fused step, runs whatever the grad mode (optimizers
  // call it under no_grad). Its own entry here only spares it autograd's boxed fallback, which would copy
  // its three lists of tensors into boxed values on every step.
  m.impl("sgd_step_", [](at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers, double lr,
                         double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
                         bool is_first_step, const OptTensor& lr_tensor, const OptTensor& grad_scale,
                         const OptTensor& found_inf) {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    call::sgd_step_(params, grads, momentum_buffers, lr, momentum, dampening, weight_decay, nesterov, maximize,
                    is_first_step, lr_tensor, grad_scale, found_inf);
  });
}

}  // namespace pyext
