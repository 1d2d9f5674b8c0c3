// Autograd of every pyext op, registered in C++ (the Autograd dispatch key): a call that records a
// gradient never enters Python, and one that records none skips the graph. Each backward calls pyext
// ops through the dispatcher, so gradients are themselves differentiable: the forward ops' backwards are pyext's
// backward ops (mul_backward, sigmoid_backward, the loss backwards), whose own autograd is here too (second order;
// higher orders follow, as those formulas again call pyext ops, or torch's where pyext has no op:
// division, where, clamp). The first-order formulas are those of csrc/formulas.h.
#include <ATen/ATen.h>
#include <ATen/ExpandUtils.h>
#include <ATen/FuncTorchTLS.h>
#include <c10/util/accumulate.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/csrc/dynamo/compiled_autograd.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/library.h>

#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "call.h"
#include "ops.h"

namespace pyext {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
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

// What add's and mul's backwards need of an operand's layout: nothing where it is laid out like the output (the
// common case), else its shape and device, to sum its gradient back to (two numbers of the node's data).
void save_layout(std::vector<c10::IValue>& data, const Tensor& t, const Tensor& out) {
  const bool same = t.sizes().equals(out.sizes()) && t.device() == out.device();
  data.emplace_back(same ? c10::IValue() : c10::IValue(t.sizes()));
  data.emplace_back(same ? c10::IValue() : c10::IValue(t.device()));
}
Tensor reduce_to_saved(c10::ArrayRef<c10::IValue> data, size_t at, const Tensor& grad) {
  if (data[at].isNone()) return grad;
  return reduce_to(grad, data[at].toIntVector(), data[at + 1].toDevice());
}

// A saved optional tensor back as an optional (saved variables store an absent one as undefined).
OptTensor opt(const Tensor& t) { return t.defined() ? OptTensor(t) : std::nullopt; }

void no_weight_grad(const char* op, const OptTensor& w, const OptTensor& p = std::nullopt) {
  const bool needs = at::GradMode::is_enabled() && ((w && w->defined() && w->requires_grad()) ||
                                                   (p && p->defined() && p->requires_grad()));
  TORCH_CHECK_NOT_IMPLEMENTED(!needs, "pyext.", op, ": the derivative for 'weight' and 'pos_weight' is not implemented");
}

// --- when to record ------------------------------------------------------------------------------

// Whether a call must record a graph node: grad mode is on and a tensor argument requires grad, or a tensor
// argument carries a forward-mode tangent (which has no formula here: an error, never a dropped tangent).
bool records(const Tensor& t) {
  if (!t.defined()) return false;
  return (at::GradMode::is_enabled() && t.requires_grad()) || t._fw_grad(/*level=*/0).defined();
}
bool records(const OptTensor& t) { return t && records(*t); }
template <typename T>
bool records(const T&) { return false; }  // numbers, the reduction

bool has_tangent(const Tensor& t) { return t.defined() && t._fw_grad(/*level=*/0).defined(); }
bool has_tangent(const OptTensor& t) { return t && has_tangent(*t); }
template <typename T>
bool has_tangent(const T&) { return false; }

// --- the graph node of a recorded call ------------------------------------------------------------
//
// Each op's autograd is a struct F of three parts: `op`, the call below autograd; `save(node, args..., result)`,
// which keeps what the backward needs (tensors, and numbers in `data`); and `backward(context, grads)`, which
// returns one gradient per tensor argument (undefined where none is wanted). record<F> runs it as torch's
// generated autograd kernels run theirs: one node, its edges to the tensor arguments' gradients, the saved
// tensors as SavedVariables (version checks, saved-tensor hooks, the error of a second backward). That is what
// torch::autograd::Function does too, plus work none of these ops needs (views, in-place outputs, non-
// differentiable outputs, each input's metadata copied): sigmoid of 200 floats with a gradient takes 2.9 us
// through it, 2.2 us through this node, 2.0 us in torch (benchmarks/NOTES.md, session 28).

using torch::autograd::Node;
using torch::autograd::InputMetadata;
using torch::autograd::SavedVariable;
using torch::dynamo::autograd::CompiledNodeArgs;
using torch::dynamo::autograd::PackedArgs;
using torch::dynamo::autograd::SwapSavedVariables;
// std::shared_ptr<Node> in torch 2.11, c10::intrusive_ptr<Node> in 2.13 and later
using NodePtr = decltype(std::declval<Node&>().getptr());

// What a backward formula reads: the saved tensors (in the order saved), the numbers, and which tensor
// arguments want a gradient.
struct Context {
  variable_list saved;
  c10::ArrayRef<c10::IValue> data;
  std::vector<bool> needs;
  bool needs_input_grad(size_t i) const { return needs[i]; }
};

struct RecordedNode : Node {
  std::vector<SavedVariable> saved;
  std::vector<c10::IValue> data;
  void save(const Tensor& t) { saved.emplace_back(t, /*is_output=*/false); }
  void save(const OptTensor& t) { save(t.value_or(Tensor())); }
  void save_output(const Tensor& t) { saved.emplace_back(t, /*is_output=*/true); }
  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& s : saved) s.reset_data();
  }
};

// Saves each argument, in order: a tensor (as an input) among the saved tensors, a number among the numbers.
template <typename... Args>
void save_all(RecordedNode& n, const Args&... args) {
  const auto save = [&](const auto& a) {
    using A = std::decay_t<decltype(a)>;
    if constexpr (std::is_same_v<A, Tensor> || std::is_same_v<A, OptTensor>) {
      n.save(a);
    } else {
      n.data.emplace_back(a);
    }
  };
  (save(args), ...);
}

// The gradients of F's tensor arguments: all undefined where no gradient comes in (as torch's nodes do).
template <typename F>
variable_list backward_of(const Context& c, const variable_list& grads, size_t edges) {
  bool any = false;
  for (const auto& g : grads) any |= g.defined();
  return any ? F::backward(c, grads) : variable_list(edges);
}

// The backward as compiled autograd calls it, from the values apply_with_saved packs.
template <typename F>
variable_list apply_functional(const variable_list& grads, const std::vector<c10::IValue>& args) {
  PackedArgs packed(args);
  Context c;
  c.saved = packed.unpack<variable_list>();
  std::vector<c10::IValue> data(packed.unpack<int64_t>());
  for (auto& d : data) d = packed.unpack<c10::IValue>();
  c.data = data;
  c.needs = packed.unpack<std::vector<bool>>();
  return backward_of<F>(c, grads, c.needs.size());
}

template <typename F>
struct Recorded : RecordedNode {
  std::string name() const override { return std::string("pyext::") + F::name; }

  // The saved tensors unpacked, the numbers, and which tensor arguments want a gradient in this backward.
  Context context() {
    Context c;
    c.saved.reserve(saved.size());
    for (const auto& s : saved) c.saved.push_back(s.unpack(getptr()));
    c.data = data;
    c.needs.reserve(num_outputs());
    for (size_t i = 0; i < num_outputs(); ++i) c.needs.push_back(task_should_compute_output(i));
    return c;
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return backward_of<F>(context(), grads, num_outputs());
  }

  // Compiled autograd: the node's cache key and, when it traces, a call of apply_functional (run eagerly, as
  // for torch::autograd::Function's nodes).
  void compiled_args(CompiledNodeArgs& args) const override {
    args.collect(std::string(F::name));
    args.collect(saved, /*is_output=*/true);
    args.collect(data);
  }
  variable_list apply_with_saved(const variable_list& grads, SwapSavedVariables& swap) override {
    swap.before(saved);
    swap.before(data);
    const Context c = context();
    PackedArgs packed;
    packed.pack(c.saved);
    packed.pack(static_cast<int64_t>(c.data.size()));
    for (const auto& d : c.data) packed.pack(d);
    packed.pack(c.needs);
    const auto& args = packed.vec();
    std::vector<at::TypePtr> schema;
    for (const auto& v : args) schema.push_back(v.isTensor() ? at::TensorType::get() : v.type());
    const auto& py = torch::dynamo::autograd::getPyCompilerInterface();
    const auto fn = py->bind_function(swap.get_py_compiler(), std::string("pyext_") + F::name, apply_functional<F>,
                                      schema, /*is_custom_function=*/true, /*is_traceable=*/false);
    const auto metadata = torch::dynamo::autograd::IValuePacker<std::vector<std::optional<InputMetadata>>>::pack(
        torch::dynamo::autograd::get_input_metadata(next_edges()));
    auto results = py->call_function(swap.get_py_compiler(), "apply_functional", fn, grads, args, metadata);
    swap.after(data);
    swap.after(saved);
    return results;
  }
};

// A node of type N, owned as torch's autograd owns nodes (its deleter frees long chains without recursion).
template <typename N>
NodePtr make_node() {
  if constexpr (std::is_same_v<NodePtr, std::shared_ptr<Node>>) {
    return std::shared_ptr<N>(new N(), [](N* n) { deleteNode(n); });  // torch::autograd::deleteNode, by ADL
  } else {
    return c10::make_intrusive<N>();
  }
}

template <typename... Args>
torch::autograd::edge_list edges_of(const Args&... args) {
  torch::autograd::edge_list edges;
  const auto add = [&](const auto& a) {
    using A = std::decay_t<decltype(a)>;
    if constexpr (std::is_same_v<A, Tensor>) {
      edges.push_back(a.defined() ? torch::autograd::impl::gradient_edge(a) : torch::autograd::Edge());
    } else if constexpr (std::is_same_v<A, OptTensor>) {
      edges.push_back(a && a->defined() ? torch::autograd::impl::gradient_edge(*a) : torch::autograd::Edge());
    }
  };
  (add(args), ...);
  return edges;
}

// The autograd kernel of an op: a call that records goes through F's node, any other straight to the kernel
// below autograd (F::op), as torch's own autograd kernels do.
template <typename F, typename... Args>
auto record(const Args&... args) -> decltype(F::op(args...)) {
  using Result = decltype(F::op(args...));
  if (!(records(args) || ...)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return F::op(args...);
  }
  if (const auto& functorch = at::functorch::functorchTLSAccessor()) {
    functorch->checkSupportsCppAutogradFunction();  // functorch's transforms: an error, as for C++ Functions
  }
  TORCH_CHECK(!(has_tangent(args) || ...), "pyext: forward-mode AD is not supported (jvp is not implemented)");
  const NodePtr node = make_node<Recorded<F>>();
  node->set_next_edges(edges_of(args...));
  static_cast<RecordedNode&>(*node).saved.reserve(sizeof...(Args) + 1);  // at most each argument and the result
  Result out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = F::op(args...);
  }
  if constexpr (std::is_same_v<Result, Tensor>) {
    torch::autograd::set_history(out, node);
  } else {
    torch::autograd::set_history(std::get<0>(out), node);
    torch::autograd::set_history(std::get<1>(out), node);
  }
  F::save(static_cast<RecordedNode&>(*node), args..., out);
  return out;
}

// --- add, mul ------------------------------------------------------------------------------------

struct AddFunction {
  static constexpr const char* name = "AddBackward";
  static constexpr Tensor (*op)(const Tensor&, const Tensor&, const c10::Scalar&) = call::add;
  static void save(RecordedNode& n, const Tensor& a, const Tensor& b, const c10::Scalar& alpha, const Tensor& out) {
    n.data.reserve(5);
    n.data.emplace_back(alpha);
    save_layout(n.data, a, out);
    save_layout(n.data, b, out);
  }
  static variable_list backward(const Context& c, const variable_list& grads) {
    // d/da = 1, d/db = alpha
    const c10::Scalar alpha = c.data[0].toScalar();
    Tensor ga, gb;
    if (c.needs_input_grad(0)) ga = reduce_to_saved(c.data, 1, grads[0]);
    if (c.needs_input_grad(1)) gb = reduce_to_saved(c.data, 3, alpha.equal(1) ? grads[0] : call::mul(grads[0], alpha));
    return {ga, gb};
  }
};

struct AddScalarFunction {
  static constexpr const char* name = "AddBackward";
  static constexpr Tensor (*op)(const Tensor&, const c10::Scalar&, const c10::Scalar&) = call::add;
  static void save(RecordedNode&, const Tensor&, const c10::Scalar&, const c10::Scalar&, const Tensor&) {}
  static variable_list backward(const Context&, const variable_list& grads) { return {grads[0]}; }
};

struct MulFunction {
  static constexpr const char* name = "MulBackward";
  static constexpr Tensor (*op)(const Tensor&, const Tensor&) = call::mul;
  // Each operand only where the other's gradient may be wanted, as torch's MulBackward0 saves them (an operand
  // saved for nothing, an activation say, would stay alive with the graph); the layouts to sum gradients back to.
  static void save(RecordedNode& n, const Tensor& a, const Tensor& b, const Tensor& out) {
    n.save(n.should_compute_output(1) ? a : Tensor());
    n.save(n.should_compute_output(0) ? b : Tensor());
    n.data.reserve(4);
    save_layout(n.data, a, out);
    save_layout(n.data, b, out);
  }
  static variable_list backward(const Context& c, const variable_list& grads) {
    // d/da = b, d/db = a: both in one pass where both are wanted (5 transfers an element, not 6), unless a CPU
    // number sits beside a CUDA tensor (which the pass does not take)
    const Tensor &a = c.saved[0], &b = c.saved[1], &g = grads[0];
    Tensor ga, gb;
    if (c.needs_input_grad(0) && c.needs_input_grad(1) && a.device() == b.device()) {
      std::tie(ga, gb) = call::mul_backward(g, a, b);
      return {reduce_to_saved(c.data, 0, ga), reduce_to_saved(c.data, 2, gb)};
    }
    if (c.needs_input_grad(0)) ga = reduce_to_saved(c.data, 0, call::mul(g, b));
    if (c.needs_input_grad(1)) gb = reduce_to_saved(c.data, 2, call::mul(g, a));
    return {ga, gb};
  }
};

struct MulScalarFunction {
  static constexpr const char* name = "MulBackward";
  static constexpr Tensor (*op)(const Tensor&, const c10::Scalar&) = call::mul;
  static void save(RecordedNode& n, const Tensor&, const c10::Scalar& b, const Tensor&) { n.data.emplace_back(b); }
  static variable_list backward(const Context& c, const variable_list& grads) {
    return {call::mul(grads[0], c.data[0].toScalar())};
  }
};

// --- sigmoid -------------------------------------------------------------------------------------

struct SigmoidFunction {
  static constexpr const char* name = "SigmoidBackward";
  static constexpr auto op = call::sigmoid;
  static void save(RecordedNode& n, const Tensor&, const Tensor& y) { n.save_output(y); }
  static variable_list backward(const Context& c, const variable_list& grads) {
    return {call::sigmoid_backward(grads[0], c.saved[0])};
  }
};

// --- losses: gradients for input and target ------------------------------------------------------

struct BceFunction {
  static constexpr const char* name = "BinaryCrossEntropyBackward";
  static constexpr auto op = call::bce;
  static void save(RecordedNode& n, const Tensor& x, const Tensor& y, const OptTensor& w, int64_t reduction,
                   const Tensor&) {
    save_all(n, x, y, w, reduction);
  }
  static variable_list backward(const Context& c, const variable_list& grads) {
    const auto& s = c.saved;
    const int64_t red = c.data[0].toInt();
    const OptTensor w = opt(s[2]);
    Tensor gx, gy;
    if (c.needs_input_grad(0)) gx = call::bce_backward(grads[0], s[0], s[1], w, red);
    if (c.needs_input_grad(1)) gy = call::bce_target_backward(grads[0], s[0], w, red);
    return {gx, gy, Tensor()};
  }
  // dL/dx into the gradient its forward kept (LossWithGradient)
  static Tensor backward_into(Tensor& kept, const Context& c, const Tensor& g) {
    const auto& s = c.saved;
    return binary_cross_entropy_backward_into(kept, g, s[0], s[1], opt(s[2]), c.data[0].toInt());
  }
};

struct BceLogitsFunction {
  static constexpr const char* name = "BinaryCrossEntropyWithLogitsBackward";
  static constexpr auto op = call::bce_logits;
  static void save(RecordedNode& n, const Tensor& x, const Tensor& y, const OptTensor& w, const OptTensor& p,
                   int64_t reduction, const Tensor&) {
    save_all(n, x, y, w, p, reduction);
  }
  static variable_list backward(const Context& c, const variable_list& grads) {
    const auto& s = c.saved;
    const int64_t red = c.data[0].toInt();
    const OptTensor w = opt(s[2]);
    const OptTensor p = opt(s[3]);
    Tensor gx, gy;
    if (c.needs_input_grad(0)) gx = call::bce_logits_backward(grads[0], s[0], s[1], w, p, red);
    if (c.needs_input_grad(1)) gy = call::bce_logits_target_backward(grads[0], s[0], w, p, red);
    return {gx, gy, Tensor(), Tensor()};
  }
  // dL/dx into the gradient its forward kept (LossWithGradient)
  static Tensor backward_into(Tensor& kept, const Context& c, const Tensor& g) {
    const auto& s = c.saved;
    return binary_cross_entropy_with_logits_backward_into(kept, g, s[0], s[1], opt(s[2]), opt(s[3]),
                                                          c.data[0].toInt());
  }
};

// --- a reduced loss whose input wants a gradient: that gradient from the forward's pass -----------------------
//
// A 'mean' or 'sum' loss is nearly always followed by a backward with an incoming gradient of 1 (loss.backward()).
// Such a loss's forward computes dL/dx beside the loss, in its one pass over the operands (LossAndGradOp), and its
// node keeps it. The backward passes it, with its incoming gradient, to the loss's backward front-end, which leaves
// it as it is where that gradient is exactly 1 and otherwise computes into it what the backward op gives: on the
// CPU the front-end reads the gradient, on a GPU the kernel does, which then returns at once (no wait for the GPU).
// So a backward with a gradient of 1 reads nothing again. Any other backward runs the loss's backward op, as
// without it: a backward that records a graph (create_graph), a second backward of a retained graph (the kept
// gradient is given out once), one under a dispatch mode (which then sees the op), compiled autograd. The node
// saves what the plain node saves, so the version checks of x and y stand. Not where a tensor subclass or a
// dispatch mode (FakeTensor, functionalization: torch.compile's tracing) is involved.

// A dense CPU or CUDA tensor that no Python subclass or functionalization wraps (absent: true).
bool plain(const OptTensor& t) {
  if (!t || !t->defined()) return true;
  return (t->is_cpu() || t->is_cuda()) && t->layout() == at::kStrided && !t->key_set().has_any(c10::python_ks) &&
         !t->key_set().has(c10::DispatchKey::Functionalize);
}

// No dispatch mode or functorch transform is active.
bool no_mode() {
  return !c10::impl::dispatch_mode_enabled() && !at::functorch::functorchTLSAccessor();
}

// Whether a loss call records its input's gradient in the forward: see above.
bool forward_gradient(const Tensor& x, std::initializer_list<OptTensor> others, int64_t reduction) {
  if (reduction == at::Reduction::None || !at::GradMode::is_enabled() || !x.requires_grad() || !no_mode()) {
    return false;
  }
  bool all_plain = plain(x);
  for (const auto& t : others) all_plain &= plain(t);
  return all_plain && sums_beside_gradient(x.device().type());
}

// Whether a backward takes the kept gradient with incoming gradient g: one element, of the kept gradient's dtype and
// device, in a backward that records no graph.
bool takes_kept(const Tensor& g, const Tensor& kept) {
  return g.defined() && !at::GradMode::is_enabled() && no_mode() && plain(g) && g.numel() == 1 &&
         g.scalar_type() == kept.scalar_type() && g.device() == kept.device();
}

template <typename F>
struct LossWithGradient final : Recorded<F> {
  Tensor gradient;  // dL/dx for an incoming gradient of 1, until a backward takes it
  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(this->mutex_);
    Context c = this->context();  // the saved tensors unpacked: their version checks
    Tensor kept = std::exchange(gradient, Tensor());
    if (!kept.defined() || !c.needs_input_grad(0) || !takes_kept(grads[0], kept)) {
      return backward_of<F>(c, grads, this->num_outputs());
    }
    c.needs[0] = false;  // the target's gradient, where wanted, as before
    variable_list out = backward_of<F>(c, grads, this->num_outputs());
    out[0] = F::backward_into(kept, c, grads[0]);
    return out;
  }
  void release_variables() override {
    RecordedNode::release_variables();
    std::lock_guard<std::mutex> lock(this->mutex_);
    gradient.reset();
  }
};

// record<F>, with the loss and its input's gradient from `forward` (a function of the same arguments, returning
// both), the gradient kept in the node.
template <typename F, typename Forward, typename... Args>
Tensor record_with_gradient(const Forward& forward, const Args&... args) {
  TORCH_CHECK(!(has_tangent(args) || ...), "pyext: forward-mode AD is not supported (jvp is not implemented)");
  const NodePtr node = make_node<LossWithGradient<F>>();
  node->set_next_edges(edges_of(args...));
  auto& n = static_cast<LossWithGradient<F>&>(*node);
  n.saved.reserve(sizeof...(Args) + 1);
  Tensor loss;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(loss, n.gradient) = forward(args...);
  }
  torch::autograd::set_history(loss, node);
  F::save(n, args..., loss);
  return loss;
}

struct MseFunction {
  static constexpr const char* name = "MseLossBackward";
  static constexpr auto op = call::mse;
  static void save(RecordedNode& n, const Tensor& x, const Tensor& y, int64_t reduction, const Tensor&) {
    save_all(n, x, y, reduction);
  }
  static variable_list backward(const Context& c, const variable_list& grads) {
    // d/dx = norm (x - y) g; d/dy is the same with x and y swapped
    const auto& s = c.saved;
    const int64_t red = c.data[0].toInt();
    Tensor gx, gy;
    if (c.needs_input_grad(0)) gx = reduce_to(call::mse_backward(grads[0], s[0], s[1], red), s[0]);
    if (c.needs_input_grad(1)) gy = reduce_to(call::mse_backward(grads[0], s[1], s[0], red), s[1]);
    return {gx, gy};
  }
  // dL/dx into the gradient its forward kept (LossWithGradient; input and target of one shape)
  static Tensor backward_into(Tensor& kept, const Context& c, const Tensor& g) {
    return mse_loss_backward_into(kept, g, c.saved[0], c.saved[1], c.data[0].toInt());
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

// ga = g b, gb = g a: d/dg = gg_a b + gg_b a, d/da = gg_b g, d/db = gg_a g. Either incoming gradient may be
// undefined (that result unused): its terms are zero.
struct MulBackwardFunction {
  static constexpr const char* name = "MulBackwardBackward";
  static constexpr auto op = call::mul_backward;
  static void save(RecordedNode& n, const Tensor& g, const Tensor& a, const Tensor& b,
                   const std::tuple<Tensor, Tensor>&) {
    save_all(n, g, a, b);
  }
  static variable_list backward(const Context& c, const variable_list& grads) {
    const Tensor &g = c.saved[0], &a = c.saved[1], &b = c.saved[2], &gga = grads[0], &ggb = grads[1];
    Tensor g_grad, g_a, g_b;
    if (c.needs_input_grad(0)) {
      const Tensor from_a = gga.defined() ? call::mul(gga, b) : Tensor();
      const Tensor from_b = ggb.defined() ? call::mul(ggb, a) : Tensor();
      g_grad = reduce_to(!from_a.defined() ? from_b : !from_b.defined() ? from_a : call::add(from_a, from_b, 1), g);
    }
    if (c.needs_input_grad(1) && ggb.defined()) g_a = reduce_to(call::mul(ggb, g), a);
    if (c.needs_input_grad(2) && gga.defined()) g_b = reduce_to(call::mul(gga, g), b);
    return {g_grad, g_a, g_b};
  }
};

struct SigmoidBackwardFunction {
  static constexpr const char* name = "SigmoidBackwardBackward";
  static constexpr auto op = call::sigmoid_backward;
  static void save(RecordedNode& n, const Tensor& g, const Tensor& y, const Tensor&) { save_all(n, g, y); }
  static variable_list backward(const Context& c, const variable_list& grads) {
    // d/dg [g y (1 - y)] = y (1 - y);  d/dy = g (1 - 2y)
    const auto& s = c.saved;
    const Tensor& gg = grads[0];
    Tensor g_grad, g_y;
    if (c.needs_input_grad(0)) g_grad = call::sigmoid_backward(gg, s[1]);
    if (c.needs_input_grad(1)) g_y = call::mul(call::mul(gg, s[0]), call::add(call::mul(s[1], -2), 1, 1));
    return {g_grad, g_y};
  }
};

// gx = g w (x - y) / D / n, D = max(x (1 - x), eps)
struct BceBackwardFunction {
  static constexpr const char* name = "BinaryCrossEntropyBackwardBackward";
  static constexpr auto op = call::bce_backward;
  static void save(RecordedNode& n, const Tensor& g, const Tensor& x, const Tensor& y, const OptTensor& w,
                   int64_t reduction, const Tensor&) {
    save_all(n, g, x, y, w, reduction);
  }
  static variable_list backward(const Context& c, const variable_list& grads) {
    const auto& s = c.saved;
    const Tensor &g = s[0], &x = s[1], &y = s[2], &gg = grads[0];
    const OptTensor w = opt(s[3]);
    const int64_t red = c.data[0].toInt();
    const c10::SymInt n = x.sym_numel();
    const Tensor d_raw = x * (1 - x);
    const Tensor d = d_raw.clamp_min(kBceEps);
    const Tensor gwg = times_weight(gg, w) * g * loss_scale(red, n);
    Tensor g_grad, g_x, g_y;
    if (c.needs_input_grad(0)) g_grad = reduce_like(call::bce_backward(gg, x, y, w, 0), red, n);
    if (c.needs_input_grad(1)) {
      const Tensor dd = at::where(d_raw > kBceEps, 1 - 2 * x, at::zeros_like(x));
      g_x = gwg * (d - (x - y) * dd) / (d * d);
    }
    if (c.needs_input_grad(2)) g_y = -gwg / d;
    return {g_grad, g_x, g_y, Tensor()};
  }
};

// gy = -g w logit(x) / n
struct BceTargetBackwardFunction {
  static constexpr const char* name = "BinaryCrossEntropyTargetBackwardBackward";
  static constexpr auto op = call::bce_target_backward;
  static void save(RecordedNode& n, const Tensor& g, const Tensor& x, const OptTensor& w, int64_t reduction,
                   const Tensor&) {
    save_all(n, g, x, w, reduction);
  }
  static variable_list backward(const Context& c, const variable_list& grads) {
    const auto& s = c.saved;
    const Tensor &g = s[0], &x = s[1], &gg = grads[0];
    const OptTensor w = opt(s[2]);
    const int64_t red = c.data[0].toInt();
    const c10::SymInt n = x.sym_numel();
    Tensor g_grad, g_x;
    if (c.needs_input_grad(0)) g_grad = reduce_like(call::bce_target_backward(gg, x, w, 0), red, n);
    if (c.needs_input_grad(1)) g_x = -times_weight(gg, w) * g * loss_scale(red, n) / (x * (1 - x));
    return {g_grad, g_x, Tensor()};
  }
};

// gx = g w (l s - p y) / n with s = sigmoid(x), l = p y + 1 - y  (gx = g w (s - y) / n without p)
struct BceLogitsBackwardFunction {
  static constexpr const char* name = "BinaryCrossEntropyWithLogitsBackwardBackward";
  static constexpr auto op = call::bce_logits_backward;
  static void save(RecordedNode& n, const Tensor& g, const Tensor& x, const Tensor& y, const OptTensor& w,
                   const OptTensor& p, int64_t reduction, const Tensor&) {
    save_all(n, g, x, y, w, p, reduction);
  }
  static variable_list backward(const Context& c, const variable_list& grads) {
    const auto& s = c.saved;
    const Tensor &g = s[0], &x = s[1], &y = s[2], &gg = grads[0];
    const OptTensor w = opt(s[3]), p = opt(s[4]);
    const int64_t red = c.data[0].toInt();
    const c10::SymInt n = x.sym_numel();
    const c10::Scalar scale = loss_scale(red, n);
    const Tensor sx = call::sigmoid(x);
    const Tensor gwg = times_weight(call::mul(gg, g), w);
    Tensor g_grad, g_x, g_y;
    if (c.needs_input_grad(0)) g_grad = reduce_like(call::bce_logits_backward(gg, x, y, w, p, 0), red, n);
    if (c.needs_input_grad(1)) {
      const Tensor lw = p ? call::mul(gwg, *p * y + 1 - y) : gwg;
      g_x = call::mul(call::sigmoid_backward(lw, sx), scale);
    }
    if (c.needs_input_grad(2)) g_y = p ? gwg * ((*p - 1) * sx - *p) * scale : call::mul(gwg, loss_scale(red, n, -1.0));
    return {g_grad, g_x, g_y, Tensor(), Tensor()};
  }
};

// gy = g w (ln sigmoid(-x) - p ln sigmoid(x)) / n  (-g w x / n without p)
struct BceLogitsTargetBackwardFunction {
  static constexpr const char* name = "BinaryCrossEntropyWithLogitsTargetBackwardBackward";
  static constexpr auto op = call::bce_logits_target_backward;
  static void save(RecordedNode& n, const Tensor& g, const Tensor& x, const OptTensor& w, const OptTensor& p,
                   int64_t reduction, const Tensor&) {
    save_all(n, g, x, w, p, reduction);
  }
  static variable_list backward(const Context& c, const variable_list& grads) {
    const auto& s = c.saved;
    const Tensor &g = s[0], &x = s[1], &gg = grads[0];
    const OptTensor w = opt(s[2]), p = opt(s[3]);
    const int64_t red = c.data[0].toInt();
    const c10::SymInt n = x.sym_numel();
    const c10::Scalar scale = loss_scale(red, n);
    const Tensor gwg = times_weight(call::mul(gg, g), w);
    Tensor g_grad, g_x;
    if (c.needs_input_grad(0)) g_grad = reduce_like(call::bce_logits_target_backward(gg, x, w, p, 0), red, n);
    if (c.needs_input_grad(1)) {
      // d/dx ln sigmoid(-x) = -s, d/dx ln sigmoid(x) = 1 - s
      if (p) {
        const Tensor sx = call::sigmoid(x);
        g_x = gwg * (-sx - *p * (1 - sx)) * scale;
      } else {
        g_x = call::mul(gwg, loss_scale(red, n, -1.0));
      }
    }
    return {g_grad, g_x, Tensor(), Tensor()};
  }
};

// gx = norm (x - y) g, norm = 2 (2 / n for 'mean'); gy the same with x and y swapped
struct MseBackwardFunction {
  static constexpr const char* name = "MseLossBackwardBackward";
  static constexpr auto op = call::mse_backward;
  static void save(RecordedNode& n, const Tensor& g, const Tensor& x, const Tensor& y, int64_t reduction,
                   const Tensor&) {
    save_all(n, g, x, y, reduction);
  }
  static variable_list backward(const Context& c, const variable_list& grads) {
    const auto& s = c.saved;
    const Tensor &g = s[0], &x = s[1], &y = s[2], &gg = grads[0];
    const int64_t red = c.data[0].toInt();
    const c10::SymInt n = c10::multiply_integers(at::infer_size_symint(x.sym_sizes(), y.sym_sizes()));
    const Tensor ggn = call::mul(call::mul(gg, g), loss_scale(red, n, 2.0));
    Tensor g_grad, g_x, g_y;
    if (c.needs_input_grad(0)) g_grad = reduce_like(call::mse_backward(gg, x, y, 0), red, n);
    if (c.needs_input_grad(1)) g_x = reduce_to(ggn, x);
    if (c.needs_input_grad(2)) g_y = reduce_to(call::mul(ggn, -1), y);
    return {g_grad, g_x, g_y};
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
    if (forward_gradient(x, {y, w}, reduction)) {
      return record_with_gradient<BceFunction>(binary_cross_entropy_and_grad, x, y, w, reduction);
    }
    return record<BceFunction>(x, y, w, reduction);
  });
  m.impl("binary_cross_entropy_with_logits", [](const Tensor& x, const Tensor& y, const OptTensor& w,
                                                const OptTensor& p, int64_t reduction) {
    no_weight_grad("binary_cross_entropy_with_logits", w, p);
    if (forward_gradient(x, {y, w, p}, reduction)) {
      return record_with_gradient<BceLogitsFunction>(binary_cross_entropy_with_logits_and_grad, x, y, w, p,
                                                     reduction);
    }
    return record<BceLogitsFunction>(x, y, w, p, reduction);
  });
  m.impl("mse_loss", [](const Tensor& x, const Tensor& y, int64_t reduction) {
    if (x.sizes().equals(y.sizes()) && forward_gradient(x, {y}, reduction)) {  // (not where they broadcast)
      return record_with_gradient<MseFunction>(mse_loss_and_grad, x, y, reduction);
    }
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
