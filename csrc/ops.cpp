// Every pyext op: its schema (declared once, below), its device-agnostic front-end and its
// registration for CPU and CUDA. A front-end validates and names what is wrong, promotes dtypes
// as torch does, plans the iteration (at::TensorIterator: broadcasting without copies, any
// strides, 64-bit sizes, overlap checks), then hands a Formula to the device loop; a loss also
// picks 'none' (elementwise) or 'mean'/'sum' (one fused summing pass).
#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include <ATen/ExpandUtils.h>
#include <ATen/native/TypeProperties.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

#include "kernels.h"
#include "ops.h"

namespace pyext {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

enum Reduction : int64_t { kNone = 0, kMean = 1, kSum = 2 };  // at::Reduction's values

// --- checks: one line each, naming the op and the argument ---------------------------------------

// Messages format numbers with std::to_string rather than iostreams: on a toolchain that links
// libstdc++ statically into the extension (seen on the GPU machine), streaming a number into the
// message crashed while streaming text did not.
std::string shape_str(at::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

bool is_supported(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

void check_reduction(const char* op, int64_t reduction) {
  TORCH_CHECK(reduction == kNone || reduction == kMean || reduction == kSum, op,
              ": reduction must be 0 ('none'), 1 ('mean') or 2 ('sum'), but got ", std::to_string(reduction));
}

void check_same_shape(const char* op, const Tensor& input, const Tensor& other, const char* name) {
  TORCH_CHECK(other.sizes().equals(input.sizes()), op, ": ", name, " has shape ", shape_str(other.sizes()),
              " but input has shape ", shape_str(input.sizes()), "; they must be the same");
}

void check_broadcasts_to(const char* op, const OptTensor& t, const char* name, at::IntArrayRef input_shape) {
  if (!t || !t->defined()) return;
  TORCH_CHECK(at::is_expandable_to(t->sizes(), input_shape), op, ": ", name, " has shape ",
              shape_str(t->sizes()), ", which does not broadcast to the input shape ", shape_str(input_shape));
}

// A loss backward's scale (Formula::param): factor / n after 'mean' over n elements, else factor (the
// formulas multiply by it, where torch divides by n).
double grad_scale(int64_t reduction, int64_t n, double factor = 1.0) {
  return reduction == kMean ? factor / static_cast<double>(n) : factor;
}

void check_loss_grad(const char* op, const Tensor& grad, at::IntArrayRef input_shape, int64_t reduction) {
  if (reduction == kNone) {
    check_broadcasts_to(op, grad, "grad_output", input_shape);
  } else {
    TORCH_CHECK(grad.numel() == 1, op, ": grad_output of a reduced loss must have one element, but has shape ",
                shape_str(grad.sizes()));
  }
}

// --- the one path from checked arguments to a device loop ----------------------------------------

// A tensor argument of a formula, by name; an undefined one must be a constant of the formula.
struct Arg {
  const char* name;
  Tensor tensor;
};

// torch's promotion of the defined tensors among args (tensors of one dtype promote to it).
at::ScalarType result_type(c10::ArrayRef<Arg> args) {
  const at::ScalarType first = args.front().tensor.scalar_type();
  bool same = true;
  for (const Arg& a : args) same &= !a.tensor.defined() || a.tensor.scalar_type() == first;
  if (same) return first;
  at::native::ResultTypeState state;
  for (const Arg& a : args) {
    if (a.tensor.defined()) state = at::native::update_result_type_state(a.tensor, state);
  }
  return at::native::result_type(state);
}

// A new tensor: on the CPU allocated as torch's structured kernels allocate their outputs, not through the
// dispatcher's at::empty (its BackendSelect and CPU kernels cost about 0.13 us of a 1.2 us `mul` of 1024 floats).
// Empty strides mean contiguous in options' memory format.
Tensor empty_output(at::IntArrayRef sizes, at::IntArrayRef strides, const at::TensorOptions& options) {
  if (options.device().is_cpu()) {
    return strides.empty() ? at::detail::empty_cpu(sizes, options)
                           : at::detail::empty_strided_cpu(sizes, strides, options);
  }
  return strides.empty() ? at::empty(sizes, options) : at::empty_strided(sizes, strides, options);
}

// The iteration plan: an at::TensorIterator whose new outputs come from empty_output.
struct Iterator final : at::TensorIteratorBase {
  void set_output_raw_strided(int64_t i, at::IntArrayRef sizes, at::IntArrayRef strides,
                              at::TensorOptions options) override {
    at::OperandInfo& op = operands_[i];
    if (op.tensor_base().defined()) {  // in place: self is an input too, so it is never resized
      TORCH_INTERNAL_ASSERT(!op.will_resize);
      return;
    }
    op.tensor(c10::MaybeOwned<at::TensorBase>::owned(empty_output(sizes, strides, options)));
    op.current_dtype = op.target_dtype;
  }
  const Tensor& maybe_get_output(int64_t i) override { return output(i); }
};

int run(const char* op, at::TensorIteratorBase& iter, const Formula& f, const Tensor* sum_out, double divisor) {
  switch (iter.device_type()) {
    case at::kCPU:
      return sum_out ? cpu::sum(iter, f, *sum_out, divisor) : cpu::elementwise(iter, f);
    case at::kCUDA:
#ifdef PYEXT_WITH_CUDA
      return sum_out ? cuda::sum(iter, f, *sum_out, divisor) : cuda::elementwise(iter, f);
#else
      TORCH_CHECK(false, op, ": pyext was built without CUDA (no CUDA toolkit was found, or PYEXT_CPU_ONLY "
                  "was set); rebuild it with nvcc available: pip install --no-build-isolation -e .");
#endif
    default:
      TORCH_CHECK(false, op, ": pyext has no kernels for device type ", iter.device_type());
  }
}

// Runs formula f over args: returns its outputs (new tensors, or `inplace` when given), or with reduction
// 'mean' or 'sum' a 0-d tensor holding the sum of f (divided by the element count for 'mean').
c10::SmallVector<Tensor, 2> launch_outputs(const char* op, const Formula& f, c10::ArrayRef<Arg> args,
                                           const Tensor* inplace = nullptr, int64_t reduction = kNone) {
  // Devices: every tensor where the first is.
  const Arg& first = args.front();
  for (const Arg& a : args) {
    if (!a.tensor.defined()) continue;
    TORCH_CHECK(a.tensor.device() == first.tensor.device(), op, ": expected ", a.name, " to be on ",
                first.tensor.device(), " like ", first.name, ", but it is on ", a.tensor.device());
  }
  // Dtypes: torch's promotion, then only what our kernels compute.
  const at::ScalarType dtype = result_type(args);
  TORCH_CHECK(is_supported(dtype), op, ": unsupported dtype ", dtype,
              " (pyext kernels take float32, float64, float16 and bfloat16)");
  if (f.kept_for_one) {
    // Into the gradient a loss's forward computed for an incoming gradient of 1: nothing to do where that gradient
    // is 1 and readable here (a constant or a CPU tensor); on a GPU its kernels read it.
    TORCH_INTERNAL_ASSERT(inplace && inplace->scalar_type() == dtype && reduction == kNone, op);
    const int k = grad_arg_index(f);
    const Tensor& g = args[k].tensor;
    const bool on_host = f.is_const[k] || g.is_cpu();
    if (on_host && (f.is_const[k] ? f.value[k] : g.item<double>()) == 1.0) return {*inplace};
  }
  if (inplace && inplace->scalar_type() != dtype) {
    // Compute in the promoted dtype, then store into self, as torch's in-place ops do.
    TORCH_CHECK(at::canCast(dtype, inplace->scalar_type()), op, ": result type ", dtype,
                " can't be cast to the desired output type ", inplace->scalar_type());
    return {inplace->copy_(launch_outputs(op, f, args, nullptr, reduction)[0])};
  }

  // The iterator borrows its operands: copies converted to the promoted dtype are kept alive here.
  c10::SmallVector<Tensor, 5> converted;
  converted.reserve(args.size());
  at::TensorIteratorConfig config;
  config.check_all_same_dtype(true);
  const int outputs = outputs_of(f);
  const bool with_gradient = sums_first(f);  // a loss summed, its gradient stored
  TORCH_INTERNAL_ASSERT(with_gradient ? !inplace && reduction != kNone
                                      : outputs == 1 || (!inplace && reduction == kNone),
                        op, ": a formula of ", outputs, " outputs is neither summed nor in place");
  if (reduction == kNone || with_gradient) {
    if (inplace) {
      config.add_output(*inplace);
    } else {
      for (int o = with_gradient ? 1 : 0; o < outputs; ++o) {
        config.add_owned_output(Tensor());  // undefined: the iterator allocates it (owned: a temporary)
      }
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const Tensor& t = args[i].tensor;
    TORCH_INTERNAL_ASSERT(t.defined() != f.is_const[i], op, ": argument ", args[i].name, " is misassigned");
    if (!t.defined()) continue;
    config.add_const_input(t.scalar_type() == dtype ? t : converted.emplace_back(t.to(dtype)));
  }
  Iterator iter;
  iter.build(config);

  c10::SmallVector<Tensor, 2> out;
  int errors = 0;
  if (reduction == kNone) {
    errors = run(op, iter, f, nullptr, 1.0);
    for (int o = 0; o < outputs; ++o) out.push_back(iter.output(o));
  } else {
    out.push_back(empty_output({}, {}, first.tensor.options().dtype(dtype)));
    const double divisor = reduction == kMean ? static_cast<double>(iter.numel()) : 1.0;
    errors = run(op, iter, f, &out[0], divisor);
    if (with_gradient) out.push_back(iter.output(0));
  }
  TORCH_CHECK(!(errors & kArg0OutOfRange), op, ": all elements of ", args[0].name, " should be between 0 and 1");
  TORCH_CHECK(!(errors & kArg1OutOfRange), op, ": all elements of ", args[1].name, " should be between 0 and 1");
  return out;
}

// The one output of formula f over args (launch_outputs).
Tensor launch(const char* op, const Formula& f, c10::ArrayRef<Arg> args, const Tensor* inplace = nullptr,
              int64_t reduction = kNone) {
  return launch_outputs(op, f, args, inplace, reduction)[0];
}

// A weight that is absent is the constant 1.
Arg optional_arg(Formula& f, int index, const char* name, const OptTensor& t) {
  if (t && t->defined()) return {name, *t};
  f.constant(index, 1.0);
  return {name, Tensor()};
}

// --- add, mul: `other` may be a tensor or a number ----------------------------------------------

// A CPU 0-d tensor (a Python number arrives as one) is read once on the host and passed to the
// loop as a constant, so it may sit beside a CUDA tensor, as in torch.
Tensor binary(const char* op, Formula f, const Tensor& self, const Tensor& other, const Tensor* inplace) {
  Tensor other_tensor = other;
  if (other.dim() == 0 && other.is_cpu()) {
    TORCH_CHECK(!other.is_complex(), op, ": complex other is not supported");
    f.constant(1, other.item<double>());
    other_tensor = Tensor();
  }
  // Promote with `other` as given (a wrapped number does not lift self's dtype), then run.
  const at::ScalarType dtype = result_type({{"input", self}, {"other", other}});
  TORCH_CHECK(is_supported(dtype), op, ": unsupported dtype ", dtype,
              " (pyext kernels take float32, float64, float16 and bfloat16)");
  const Tensor input = self.scalar_type() == dtype ? self : self.to(dtype);
  return launch(op, f, {{"input", input}, {"other", other_tensor}}, inplace);
}

Tensor wrapped(const c10::Scalar& s) {
  Tensor t = at::scalar_to_tensor(s);
  t.unsafeGetTensorImpl()->set_wrapped_number(true);
  return t;
}

Formula add_formula(const c10::Scalar& alpha) {
  TORCH_CHECK(!alpha.isComplex() && !alpha.isBoolean(), "add: alpha must be a real number");
  Formula f{OpKind::Add};
  f.param = alpha.toDouble();
  return f;
}

// Mutating ops (add_, mul_) return nothing, so torch.compile can functionalize them; the Python
// wrappers return self.
Tensor add_tensor(const Tensor& self, const Tensor& other, const c10::Scalar& alpha) {
  return binary("add", add_formula(alpha), self, other, nullptr);
}
Tensor add_scalar(const Tensor& self, const c10::Scalar& other, const c10::Scalar& alpha) {
  return binary("add", add_formula(alpha), self, wrapped(other), nullptr);
}
void add__tensor(Tensor& self, const Tensor& other, const c10::Scalar& alpha) {
  binary("add_", add_formula(alpha), self, other, &self);
}
void add__scalar(Tensor& self, const c10::Scalar& other, const c10::Scalar& alpha) {
  binary("add_", add_formula(alpha), self, wrapped(other), &self);
}
Tensor mul_tensor(const Tensor& self, const Tensor& other) {
  return binary("mul", Formula{OpKind::Mul}, self, other, nullptr);
}
Tensor mul_scalar(const Tensor& self, const c10::Scalar& other) {
  return binary("mul", Formula{OpKind::Mul}, self, wrapped(other), nullptr);
}
void mul__tensor(Tensor& self, const Tensor& other) {
  binary("mul_", Formula{OpKind::Mul}, self, other, &self);
}
void mul__scalar(Tensor& self, const c10::Scalar& other) {
  binary("mul_", Formula{OpKind::Mul}, self, wrapped(other), &self);
}

// d/da (a b) and d/db (a b) for an upstream gradient, in one pass: g b and g a, in the broadcast shape of
// the three (the caller sums each back to its operand's shape).
std::tuple<Tensor, Tensor> mul_backward(const Tensor& grad, const Tensor& self, const Tensor& other) {
  auto out = launch_outputs("mul_backward", Formula{OpKind::MulBackward},
                            {{"grad_output", grad}, {"input", self}, {"other", other}});
  return {std::move(out[0]), std::move(out[1])};
}

// --- sigmoid -------------------------------------------------------------------------------------

Tensor sigmoid(const Tensor& self) {
  // Integer inputs give the default float dtype, as torch.sigmoid does.
  const Tensor input = at::isIntegralType(self.scalar_type(), /*includeBool=*/true)
                           ? self.to(at::typeMetaToScalarType(at::get_default_dtype()))
                           : self;
  return launch("sigmoid", Formula{OpKind::Sigmoid}, {{"input", input}});
}

Tensor sigmoid_backward(const Tensor& grad_output, const Tensor& output) {
  return launch("sigmoid_backward", Formula{OpKind::SigmoidBackward},
                {{"grad_output", grad_output}, {"output", output}});
}

// --- binary cross-entropy ------------------------------------------------------------------------

// The loss, or with_gradient (a reduced loss) the loss and dL/dx for an incoming gradient of 1, in one pass.
c10::SmallVector<Tensor, 2> bce_forward(const Tensor& self, const Tensor& target, const OptTensor& weight,
                                        int64_t reduction, bool with_gradient) {
  const char* op = "binary_cross_entropy";
  check_reduction(op, reduction);
  check_same_shape(op, self, target, "target");
  check_broadcasts_to(op, weight, "weight", self.sizes());
  Formula f{with_gradient ? OpKind::BceAndGrad : OpKind::Bce};
  if (with_gradient) f.param = grad_scale(reduction, self.numel());
  const Arg w = optional_arg(f, 2, "weight", weight);
  return launch_outputs(op, f, {{"input", self}, {"target", target}, w}, nullptr, reduction);
}

Tensor binary_cross_entropy(const Tensor& self, const Tensor& target, const OptTensor& weight, int64_t reduction) {
  return bce_forward(self, target, weight, reduction, /*with_gradient=*/false)[0];
}

// dL/dx, or into `kept` (the gradient from the loss's forward for an incoming gradient of 1: kept_for_one).
Tensor bce_backward(const Tensor& grad, const Tensor& self, const Tensor& target, const OptTensor& weight,
                    int64_t reduction, Tensor* kept) {
  const char* op = "binary_cross_entropy_backward";
  check_reduction(op, reduction);
  check_same_shape(op, self, target, "target");
  check_broadcasts_to(op, weight, "weight", self.sizes());
  check_loss_grad(op, grad, self.sizes(), reduction);
  Formula f{OpKind::BceBackward};
  f.param = grad_scale(reduction, self.numel());
  f.kept_for_one = kept != nullptr;
  const Arg w = optional_arg(f, 3, "weight", weight);
  return launch(op, f, {{"grad_output", grad}, {"input", self}, {"target", target}, w}, kept);
}

Tensor binary_cross_entropy_backward(const Tensor& grad, const Tensor& self, const Tensor& target,
                                     const OptTensor& weight, int64_t reduction) {
  return bce_backward(grad, self, target, weight, reduction, /*kept=*/nullptr);
}

Tensor binary_cross_entropy_target_backward(const Tensor& grad, const Tensor& self, const OptTensor& weight,
                                            int64_t reduction) {
  const char* op = "binary_cross_entropy_target_backward";
  check_reduction(op, reduction);
  check_broadcasts_to(op, weight, "weight", self.sizes());
  check_loss_grad(op, grad, self.sizes(), reduction);
  Formula f{OpKind::BceTargetBackward};
  f.param = grad_scale(reduction, self.numel());
  const Arg w = optional_arg(f, 2, "weight", weight);
  return launch(op, f, {{"grad_output", grad}, {"input", self}, w});
}

// --- binary cross-entropy with logits ------------------------------------------------------------

// The loss, or with_gradient (a reduced loss) the loss and dL/dx for an incoming gradient of 1, in one pass.
c10::SmallVector<Tensor, 2> bce_logits_forward(const Tensor& self, const Tensor& target, const OptTensor& weight,
                                               const OptTensor& pos_weight, int64_t reduction, bool with_gradient) {
  const char* op = "binary_cross_entropy_with_logits";
  check_reduction(op, reduction);
  check_same_shape(op, self, target, "target");
  check_broadcasts_to(op, weight, "weight", self.sizes());
  check_broadcasts_to(op, pos_weight, "pos_weight", self.sizes());
  Formula f{with_gradient ? OpKind::BceLogitsAndGrad : OpKind::BceLogits};
  f.flag = pos_weight && pos_weight->defined();
  if (with_gradient) f.param = grad_scale(reduction, self.numel());
  const Arg w = optional_arg(f, 2, "weight", weight);
  const Arg p = optional_arg(f, 3, "pos_weight", pos_weight);
  return launch_outputs(op, f, {{"input", self}, {"target", target}, w, p}, nullptr, reduction);
}

Tensor binary_cross_entropy_with_logits(const Tensor& self, const Tensor& target, const OptTensor& weight,
                                        const OptTensor& pos_weight, int64_t reduction) {
  return bce_logits_forward(self, target, weight, pos_weight, reduction, /*with_gradient=*/false)[0];
}

// dL/dx, or into `kept` (the gradient from the loss's forward for an incoming gradient of 1: kept_for_one).
Tensor bce_logits_backward(const Tensor& grad, const Tensor& self, const Tensor& target, const OptTensor& weight,
                           const OptTensor& pos_weight, int64_t reduction, Tensor* kept) {
  const char* op = "binary_cross_entropy_with_logits_backward";
  check_reduction(op, reduction);
  check_same_shape(op, self, target, "target");
  check_broadcasts_to(op, weight, "weight", self.sizes());
  check_broadcasts_to(op, pos_weight, "pos_weight", self.sizes());
  check_loss_grad(op, grad, self.sizes(), reduction);
  Formula f{OpKind::BceLogitsBackward};
  f.flag = pos_weight && pos_weight->defined();
  f.param = grad_scale(reduction, self.numel());
  f.kept_for_one = kept != nullptr;
  const Arg w = optional_arg(f, 3, "weight", weight);
  const Arg p = optional_arg(f, 4, "pos_weight", pos_weight);
  return launch(op, f, {{"grad_output", grad}, {"input", self}, {"target", target}, w, p}, kept);
}

Tensor binary_cross_entropy_with_logits_backward(const Tensor& grad, const Tensor& self, const Tensor& target,
                                                 const OptTensor& weight, const OptTensor& pos_weight,
                                                 int64_t reduction) {
  return bce_logits_backward(grad, self, target, weight, pos_weight, reduction, /*kept=*/nullptr);
}

Tensor binary_cross_entropy_with_logits_target_backward(const Tensor& grad, const Tensor& self,
                                                        const OptTensor& weight, const OptTensor& pos_weight,
                                                        int64_t reduction) {
  const char* op = "binary_cross_entropy_with_logits_target_backward";
  check_reduction(op, reduction);
  check_broadcasts_to(op, weight, "weight", self.sizes());
  check_broadcasts_to(op, pos_weight, "pos_weight", self.sizes());
  check_loss_grad(op, grad, self.sizes(), reduction);
  Formula f{OpKind::BceLogitsTargetBackward};
  f.flag = pos_weight && pos_weight->defined();
  f.param = grad_scale(reduction, self.numel());
  const Arg w = optional_arg(f, 2, "weight", weight);
  const Arg p = optional_arg(f, 3, "pos_weight", pos_weight);
  return launch(op, f, {{"grad_output", grad}, {"input", self}, w, p});
}

// --- mean squared error: input and target broadcast, as in torch ---------------------------------

// The loss, or with_gradient (a reduced loss over input and target of one shape) the loss and dL/dx for an
// incoming gradient of 1, in one pass.
c10::SmallVector<Tensor, 2> mse_forward(const Tensor& self, const Tensor& target, int64_t reduction,
                                        bool with_gradient) {
  const char* op = "mse_loss";
  check_reduction(op, reduction);
  Formula f{with_gradient ? OpKind::MseAndGrad : OpKind::Mse};
  if (with_gradient) {
    check_same_shape(op, self, target, "target");
    f.param = grad_scale(reduction, self.numel(), 2.0);
  }
  return launch_outputs(op, f, {{"input", self}, {"target", target}}, nullptr, reduction);
}

Tensor mse_loss(const Tensor& self, const Tensor& target, int64_t reduction) {
  return mse_forward(self, target, reduction, /*with_gradient=*/false)[0];
}

// Gradient for `self`, or into `kept` (the gradient from the loss's forward for an incoming gradient of 1:
// kept_for_one); the gradient for target is this with self and target swapped.
Tensor mse_backward(const Tensor& grad, const Tensor& self, const Tensor& target, int64_t reduction, Tensor* kept) {
  const char* op = "mse_loss_backward";
  check_reduction(op, reduction);
  const auto shape = at::infer_size(self.sizes(), target.sizes());
  const int64_t numel = c10::multiply_integers(shape);
  check_loss_grad(op, grad, shape, reduction);
  Formula f{OpKind::MseBackward};
  f.param = grad_scale(reduction, numel, 2.0);
  f.kept_for_one = kept != nullptr;
  return launch(op, f, {{"grad_output", grad}, {"input", self}, {"target", target}}, kept);
}

Tensor mse_loss_backward(const Tensor& grad, const Tensor& self, const Tensor& target, int64_t reduction) {
  return mse_backward(grad, self, target, reduction, /*kept=*/nullptr);
}

}  // namespace

std::tuple<Tensor, Tensor> binary_cross_entropy_and_grad(const Tensor& self, const Tensor& target,
                                                         const OptTensor& weight, int64_t reduction) {
  auto out = bce_forward(self, target, weight, reduction, /*with_gradient=*/true);
  return {std::move(out[0]), std::move(out[1])};
}

std::tuple<Tensor, Tensor> binary_cross_entropy_with_logits_and_grad(const Tensor& self, const Tensor& target,
                                                                     const OptTensor& weight,
                                                                     const OptTensor& pos_weight, int64_t reduction) {
  auto out = bce_logits_forward(self, target, weight, pos_weight, reduction, /*with_gradient=*/true);
  return {std::move(out[0]), std::move(out[1])};
}

std::tuple<Tensor, Tensor> mse_loss_and_grad(const Tensor& self, const Tensor& target, int64_t reduction) {
  auto out = mse_forward(self, target, reduction, /*with_gradient=*/true);
  return {std::move(out[0]), std::move(out[1])};
}

bool sums_beside_gradient(c10::DeviceType device) {
  switch (device) {
    case at::kCPU:
      return true;
#ifdef PYEXT_WITH_CUDA
    case at::kCUDA:
      return cuda::sums_beside_gradient();
#endif
    default:
      return false;
  }
}

Tensor binary_cross_entropy_backward_into(Tensor& kept, const Tensor& grad, const Tensor& self, const Tensor& target,
                                          const OptTensor& weight, int64_t reduction) {
  return bce_backward(grad, self, target, weight, reduction, &kept);
}

Tensor binary_cross_entropy_with_logits_backward_into(Tensor& kept, const Tensor& grad, const Tensor& self,
                                                      const Tensor& target, const OptTensor& weight,
                                                      const OptTensor& pos_weight, int64_t reduction) {
  return bce_logits_backward(grad, self, target, weight, pos_weight, reduction, &kept);
}

Tensor mse_loss_backward_into(Tensor& kept, const Tensor& grad, const Tensor& self, const Tensor& target,
                              int64_t reduction) {
  return mse_backward(grad, self, target, reduction, &kept);
}

TORCH_LIBRARY(pyext, m) {
  m.def("add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor");
  m.def("add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor");
  m.def("add_.Tensor(Tensor(a!) self, Tensor other, *, Scalar alpha=1) -> ()");
  m.def("add_.Scalar(Tensor(a!) self, Scalar other, Scalar alpha=1) -> ()");
  m.def("mul.Tensor(Tensor self, Tensor other) -> Tensor");
  m.def("mul.Scalar(Tensor self, Scalar other) -> Tensor");
  m.def("mul_.Tensor(Tensor(a!) self, Tensor other) -> ()");
  m.def("mul_.Scalar(Tensor(a!) self, Scalar other) -> ()");
  m.def("mul_backward(Tensor grad_output, Tensor self, Tensor other) -> (Tensor, Tensor)");
  m.def("sigmoid(Tensor self) -> Tensor");
  m.def("sigmoid_backward(Tensor grad_output, Tensor output) -> Tensor");
  m.def("binary_cross_entropy(Tensor self, Tensor target, Tensor? weight=None, int reduction=1) -> Tensor");
  m.def("binary_cross_entropy_backward(Tensor grad_output, Tensor self, Tensor target, Tensor? weight=None, "
        "int reduction=1) -> Tensor");
  m.def("binary_cross_entropy_target_backward(Tensor grad_output, Tensor self, Tensor? weight=None, "
        "int reduction=1) -> Tensor");
  m.def("binary_cross_entropy_with_logits(Tensor self, Tensor target, Tensor? weight=None, "
        "Tensor? pos_weight=None, int reduction=1) -> Tensor");
  m.def("binary_cross_entropy_with_logits_backward(Tensor grad_output, Tensor self, Tensor target, "
        "Tensor? weight=None, Tensor? pos_weight=None, int reduction=1) -> Tensor");
  m.def("binary_cross_entropy_with_logits_target_backward(Tensor grad_output, Tensor self, "
        "Tensor? weight=None, Tensor? pos_weight=None, int reduction=1) -> Tensor");
  m.def("mse_loss(Tensor self, Tensor target, int reduction=1) -> Tensor");
  m.def("mse_loss_backward(Tensor grad_output, Tensor self, Tensor target, int reduction=1) -> Tensor");
  // front-end in sgd.cpp
  m.def("sgd_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] momentum_buffers, *, float lr, "
        "float momentum, float dampening, float weight_decay, bool nesterov, bool maximize, bool is_first_step, "
        "Tensor? lr_tensor=None, Tensor? grad_scale=None, Tensor? found_inf=None) -> ()");
}

// The front-ends are device-agnostic: the same functions serve CPU and CUDA tensors.
#define PYEXT_REGISTER_FRONT_ENDS(m)                                                             \
  m.impl("add.Tensor", &add_tensor);                                                             \
  m.impl("add.Scalar", &add_scalar);                                                             \
  m.impl("add_.Tensor", &add__tensor);                                                           \
  m.impl("add_.Scalar", &add__scalar);                                                           \
  m.impl("mul.Tensor", &mul_tensor);                                                             \
  m.impl("mul.Scalar", &mul_scalar);                                                             \
  m.impl("mul_.Tensor", &mul__tensor);                                                           \
  m.impl("mul_.Scalar", &mul__scalar);                                                           \
  m.impl("mul_backward", &mul_backward);                                                         \
  m.impl("sigmoid", &sigmoid);                                                                   \
  m.impl("sigmoid_backward", &sigmoid_backward);                                                 \
  m.impl("binary_cross_entropy", &binary_cross_entropy);                                         \
  m.impl("binary_cross_entropy_backward", &binary_cross_entropy_backward);                       \
  m.impl("binary_cross_entropy_target_backward", &binary_cross_entropy_target_backward);         \
  m.impl("binary_cross_entropy_with_logits", &binary_cross_entropy_with_logits);                 \
  m.impl("binary_cross_entropy_with_logits_backward", &binary_cross_entropy_with_logits_backward); \
  m.impl("binary_cross_entropy_with_logits_target_backward",                                     \
         &binary_cross_entropy_with_logits_target_backward);                                     \
  m.impl("mse_loss", &mse_loss);                                                                 \
  m.impl("mse_loss_backward", &mse_loss_backward);

TORCH_LIBRARY_IMPL(pyext, CPU, m) { PYEXT_REGISTER_FRONT_ENDS(m) }
TORCH_LIBRARY_IMPL(pyext, CUDA, m) { PYEXT_REGISTER_FRONT_ENDS(m) }

}  // namespace pyext
