// The math of every pyext op, written once and used by both loops (csrc/cpu_kernels.cpp and
// cuda/kernels.cu). A formula is a functor whose call operator is a template over T:
//   - T = at::opmath_type<scalar_t> (float for float/half/bfloat16, double for double) on the GPU
//     and in the CPU's scalar tail,
//   - T = at::vec::Vectorized<opmath> in the CPU's vectorized body.
// Math<T> supplies exp/log/... for each T; the CPU file adds the Vectorized specialization. A loop calls
// op(args...) for Math<T>, or op.template operator()<T, M>(args...) for other math M over the same T (the
// GPU's approximations for 16-bit elements, cuda/math16.cuh).
// `arity` counts the formula's arguments; a loop feeds each from a tensor or a host constant. A formula
// returns one result, or with kOutputs = K several (Results<T, K>), each stored into its own output.
#pragma once

#include <c10/macros/Macros.h>
#include <c10/util/bit_cast.h>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace pyext {

// Scalar math, host and device. max/min keep a NaN in `a`, like std::max(a, b) and torch's CPU loops.
template <typename T>
struct Math {
  static C10_HOST_DEVICE T exp(T x) { return std::exp(x); }
  static C10_HOST_DEVICE T log(T x) { return std::log(x); }
  static C10_HOST_DEVICE T log1p(T x) { return std::log1p(x); }
  static C10_HOST_DEVICE T abs(T x) { return std::abs(x); }
  // a / b; other math may divide approximately where b lies in [2^-126, 2^126] (the GPU's for 16-bit elements)
  static C10_HOST_DEVICE T div(T a, T b) { return a / b; }
  static C10_HOST_DEVICE T max(T a, T b) { return a < b ? b : a; }
  static C10_HOST_DEVICE T min(T a, T b) { return b < a ? b : a; }
};

// The results of a formula with several outputs.
template <typename T, int K>
struct Results {
  T v[K];
};

// --- elementwise ------------------------------------------------------------------------------

// out = a + alpha b;  d/da = 1, d/db = alpha
template <typename acc_t>
struct AddOp {
  static constexpr int arity = 2;
  acc_t alpha;
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE T operator()(T a, T b) const { return a + T(alpha) * b; }
};

// out = a b;  d/da = b, d/db = a
template <typename acc_t>
struct MulOp {
  static constexpr int arity = 2;
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE T operator()(T a, T b) const { return a * b; }
};

// mul's two gradients in one pass: ga = g b, gb = g a
template <typename acc_t>
struct MulBackwardOp {
  static constexpr int arity = 3;  // g, a, b
  static constexpr int kOutputs = 2;
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE Results<T, 2> operator()(T g, T a, T b) const { return {{g * b, g * a}}; }
};

// y = 1 / (1 + e^-x): e^-x overflows to inf for x << 0, giving exactly 0, as torch does
template <typename acc_t>
struct SigmoidOp {
  static constexpr int arity = 1;
  static constexpr bool kExpOrLog = true;
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE T operator()(T x) const { return T(1) / (T(1) + M::exp(-x)); }
};

// dL/dx = g y (1 - y), from the saved output y
template <typename acc_t>
struct SigmoidBackwardOp {
  static constexpr int arity = 2;
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE T operator()(T g, T y) const { return g * (T(1) - y) * y; }
};

// --- binary cross-entropy on probabilities ------------------------------------------------------

// L = -w (y ln(x) + (1-y) ln(1-x)), each ln clamped at -100 as torch does; x and y must lie in [0, 1]
template <typename acc_t>
struct BceOp {
  static constexpr bool kIsLoss = true;  // a forward loss: may be summed
  static constexpr int arity = 3;  // x, y, w
  static constexpr bool kExpOrLog = true;
  static constexpr bool kUnitIntervalArgs = true;  // arguments 0 and 1 are checked to lie in [0, 1]
  static constexpr unsigned kOptionalArgs = 0b100;  // w: 1 when absent
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE T operator()(T x, T y, T w) const {
    const T loss = (y - T(1)) * M::max(M::log1p(-x), T(-100)) - y * M::max(M::log(x), T(-100));
    return loss * w;
  }
};

// dL/dx = g w (x - y) / max(x (1 - x), 1e-12), times scale: 1/n for 'mean', else 1 (the loss backwards multiply
// by 1/n where torch divides by n: at most an ulp apart, and no division per element)
template <typename acc_t>
struct BceBackwardOp {
  static constexpr int arity = 4;  // g, x, y, w
  static constexpr unsigned kGradArg = 0b0001, kOptionalArgs = 0b1000;
  acc_t scale;
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE T operator()(T g, T x, T y, T w) const {
    const T eps = T(1e-12);
    return M::div(g * (x - y), M::max((T(1) - x) * x, eps)) * w * T(scale);
  }
};

// dL/dy = -g w logit(x) = -g w ln(x / (1 - x)), times scale (1/n for 'mean')
template <typename acc_t>
struct BceTargetBackwardOp {
  static constexpr int arity = 3;  // g, x, w
  static constexpr bool kExpOrLog = true;
  static constexpr unsigned kGradArg = 0b001, kOptionalArgs = 0b100;
  acc_t scale;
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE T operator()(T g, T x, T w) const {
    return -M::log(M::div(x, T(1) - x)) * g * w * T(scale);
  }
};

// --- binary cross-entropy on logits -------------------------------------------------------------

// ln(1 + e^z) for z <= 0 (or NaN): M::log1p_exp where the math has one (the CPU's AVX-512 float: a table of
// polynomials, avx512_math.h), else M::log1p(M::exp(z)).
template <typename M, typename T, typename = void>
struct HasLog1pExp : std::false_type {};
template <typename M, typename T>
struct HasLog1pExp<M, T, std::void_t<decltype(M::log1p_exp(std::declval<T>()))>> : std::true_type {};
template <typename T, typename M>
C10_HOST_DEVICE inline T log1p_exp(T z) {
  if constexpr (HasLog1pExp<M, T>::value) {
    return M::log1p_exp(z);
  } else {
    return M::log1p(M::exp(z));
  }
}

// ln sigmoid(x) = min(x, 0) - ln(1 + e^-|x|): never overflows
template <typename T, typename M = Math<T>>
C10_HOST_DEVICE inline T log_sigmoid(T x) {
  return M::min(x, T(0)) - log1p_exp<T, M>(-M::abs(x));
}

// L = w ((1 - y) x - l ln sigmoid(x)), l = 1 + (p - 1) y with pos_weight p (l = 1 without)
template <typename acc_t>
struct BceLogitsOp {
  static constexpr bool kIsLoss = true;  // a forward loss: may be summed
  static constexpr int arity = 4;  // x, y, w, p
  static constexpr bool kExpOrLog = true;
  static constexpr unsigned kOptionalArgs = 0b1100;  // w, p: 1 when absent
  bool has_pos_weight;
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE T operator()(T x, T y, T w, T p) const {
    const T ls = log_sigmoid<T, M>(x);
    const T weighted_ls = has_pos_weight ? ((p - T(1)) * y + T(1)) * ls : ls;
    return ((T(1) - y) * x - weighted_ls) * w;
  }
};

// dL/dx = g w ((p y + 1 - y) sigmoid(x) - p y)   (sigmoid(x) - y without p), times scale (1/n for 'mean')
template <typename acc_t>
struct BceLogitsBackwardOp {
  static constexpr int arity = 5;  // g, x, y, w, p
  static constexpr bool kExpOrLog = true;
  static constexpr unsigned kGradArg = 0b00001, kOptionalArgs = 0b11000;
  bool has_pos_weight;
  acc_t scale;
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE T operator()(T g, T x, T y, T w, T p) const {
    const T s = SigmoidOp<acc_t>{}.template operator()<T, M>(x);
    T d;
    if (has_pos_weight) {
      const T py = p * y;
      d = (py + T(1) - y) * s - py;
    } else {
      d = s - y;
    }
    return d * g * w * T(scale);
  }
};

// dL/dy = g w (ln sigmoid(-x) - p ln sigmoid(x))   (-x without p), times scale (1/n for 'mean')
template <typename acc_t>
struct BceLogitsTargetBackwardOp {
  static constexpr int arity = 4;  // g, x, w, p
  static constexpr bool kExpOrLog = true;  // with a pos_weight
  static constexpr unsigned kGradArg = 0b0001, kOptionalArgs = 0b1100;
  bool has_pos_weight;
  acc_t scale;
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE T operator()(T g, T x, T w, T p) const {
    const T d = has_pos_weight ? log_sigmoid<T, M>(-x) - log_sigmoid<T, M>(x) * p : -x;
    return d * g * w * T(scale);
  }
};

// --- mean squared error --------------------------------------------------------------------------

// L = (x - y)^2
template <typename acc_t>
struct MseOp {
  static constexpr bool kIsLoss = true;  // a forward loss: may be summed
  static constexpr int arity = 2;
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE T operator()(T x, T y) const {
    const T d = x - y;
    return d * d;
  }
};

// dL/dx = norm (x - y) g, norm = 2 (2/n for 'mean');  dL/dy is the same with x and y swapped
template <typename acc_t>
struct MseBackwardOp {
  static constexpr int arity = 3;  // g, x, y
  static constexpr unsigned kGradArg = 0b001;
  acc_t norm;
  template <typename T, typename M = Math<T>>
  C10_HOST_DEVICE T operator()(T g, T x, T y) const { return T(norm) * (x - y) * g; }
};

// BCE's check of its input and target, x in [0, 1] (false for NaN), as a key: x + 0 (which makes -0 +0) lies in
// [0, 1] exactly when its bits, read as an unsigned integer, are at most 1's (a negative number has the sign
// bit set; NaN, inf and every number above 1 have larger bits). The GPU keeps the largest key of each argument
// (one add and one integer max per element), and so do the CPU's vector loops; its scalar loops test each
// value.
C10_HOST_DEVICE inline uint32_t unit_interval_key(float x) { return c10::bit_cast<uint32_t>(x + 0.0f); }
C10_HOST_DEVICE inline uint64_t unit_interval_key(double x) { return c10::bit_cast<uint64_t>(x + 0.0); }
template <typename T>
C10_HOST_DEVICE inline bool in_unit_interval(T x) {
  return unit_interval_key(x) <= unit_interval_key(T(1));
}

// Whether a formula's first two arguments must lie in [0, 1] (BCE's input and target).
template <typename Op, typename = void>
struct ChecksUnitInterval : std::false_type {};
template <typename Op>
struct ChecksUnitInterval<Op, std::void_t<decltype(Op::kUnitIntervalArgs)>>
    : std::bool_constant<Op::kUnitIntervalArgs> {};

// The arguments a call often gives one value for every element (bit k: argument k): kGradArg, the incoming
// gradient of a loss backward (one value after 'mean' or 'sum'), and kOptionalArgs, a loss's optional
// weights (1 when absent). The GPU's flat loop is compiled for these patterns (cuda/kernels.cu).
template <typename Op, typename = void>
struct GradArg : std::integral_constant<unsigned, 0> {};
template <typename Op>
struct GradArg<Op, std::void_t<decltype(Op::kGradArg)>> : std::integral_constant<unsigned, Op::kGradArg> {};
template <typename Op, typename = void>
struct OptionalArgs : std::integral_constant<unsigned, 0> {};
template <typename Op>
struct OptionalArgs<Op, std::void_t<decltype(Op::kOptionalArgs)>> : std::integral_constant<unsigned, Op::kOptionalArgs> {};

// Whether a formula calls exp or log (kExpOrLog): the CPU's scalar steps of it then cost several times what
// gathering its arguments into a buffer for vector steps does (cpu_kernels.cpp, plan_block).
template <typename Op, typename = void>
struct ExpOrLog : std::false_type {};
template <typename Op>
struct ExpOrLog<Op, std::void_t<decltype(Op::kExpOrLog)>> : std::bool_constant<Op::kExpOrLog> {};

// --- a loss and its input's gradient in one pass --------------------------------------------------

// The loss (result 0, summed by the loop) and dL/dx times scale for an incoming gradient of 1 (result 1, stored):
// what autograd computes in the forward of a 'mean' or 'sum' loss whose input wants a gradient, so that
// the usual backward, with a gradient of 1, reads nothing again (csrc/autograd.cpp, LossWithGradient). Grad is the
// loss's backward formula, whose arguments are the incoming gradient and then the loss's own.
template <typename Loss, typename Grad>
struct LossAndGradOp {
  static constexpr bool kSumsFirst = true;  // result 0 summed, result 1 stored: the summing loops only
  static constexpr int arity = Loss::arity;
  static constexpr int kOutputs = 2;
  static constexpr bool kExpOrLog = ExpOrLog<Loss>::value || ExpOrLog<Grad>::value;
  static constexpr bool kUnitIntervalArgs = ChecksUnitInterval<Loss>::value;
  static constexpr unsigned kOptionalArgs = OptionalArgs<Loss>::value;
  Loss loss;
  Grad grad;
  template <typename T, typename M = Math<T>, typename... A>
  C10_HOST_DEVICE Results<T, 2> operator()(A... a) const {
    static_assert(sizeof...(A) == arity && (std::is_same_v<A, T> && ...), "one T per argument");
    return {{loss.template operator()<T, M>(a...), grad.template operator()<T, M>(T(1), a...)}};
  }
};

// --- optimizer step ------------------------------------------------------------------------------

// torch.optim.SGD's rule, with the gradient already unscaled (grad / grad_scale):
//   g = (maximize ? -grad : grad) + wd p
//   with momentum mu: b = first step ? g : mu b + (1 - dampening) g;  g = nesterov ? g + mu b : b
//   p = p - lr g
template <typename acc_t>
struct SgdStepOp {
  acc_t weight_decay, momentum, dampening;
  bool nesterov, maximize, first_step;
  template <typename T>
  C10_HOST_DEVICE void operator()(T& p, T g, T& buf, T lr) const {
    if (maximize) g = -g;
    if (weight_decay != acc_t(0)) g = g + T(weight_decay) * p;
    if (momentum != acc_t(0)) {
      buf = first_step ? g : T(momentum) * buf + T(acc_t(1) - dampening) * g;
      g = nesterov ? g + T(momentum) * buf : buf;
    }
    p = p - lr * g;
  }
};

// --- the formula a front-end asks a loop to run --------------------------------------------------

enum class OpKind : int8_t {
  Add, Mul, MulBackward, Sigmoid, SigmoidBackward,
  Bce, BceBackward, BceTargetBackward,
  BceLogits, BceLogitsBackward, BceLogitsTargetBackward,
  Mse, MseBackward,
  BceAndGrad, BceLogitsAndGrad, MseAndGrad,
};

constexpr int kMaxArity = 5;

// One call of a formula: which op, its host constants, and for each argument whether it is
// read from the next tensor input of the iterator or is a constant (a Python number, a CPU
// 0-d tensor beside a CUDA tensor, or an absent weight, which is 1).
struct Formula {
  OpKind op;
  double param = 0;          // add: alpha; a loss backward (or a loss with its gradient): its scale (1/n, 2/n
                             // for MSE, after 'mean')
  bool flag = false;         // BCE with logits: pos_weight given
  bool kept_for_one = false;  // a loss backward into outputs that already hold its results for an incoming
                              // gradient (kGradArg) of 1: left as they are where that gradient is exactly 1
  bool is_const[kMaxArity] = {false, false, false, false, false};
  double value[kMaxArity] = {0, 0, 0, 0, 0};

  Formula& constant(int arg, double v) {
    is_const[arg] = true;
    value[arg] = v;
    return *this;
  }
};

// Calls fn(op) with the functor for f.op, its constants cast to acc_t. One switch for both devices.
template <typename acc_t, typename Fn>
inline void visit_formula(const Formula& f, Fn&& fn) {
  const acc_t p = static_cast<acc_t>(f.param);
  switch (f.op) {
    case OpKind::Add: return fn(AddOp<acc_t>{p});
    case OpKind::Mul: return fn(MulOp<acc_t>{});
    case OpKind::MulBackward: return fn(MulBackwardOp<acc_t>{});
    case OpKind::Sigmoid: return fn(SigmoidOp<acc_t>{});
    case OpKind::SigmoidBackward: return fn(SigmoidBackwardOp<acc_t>{});
    case OpKind::Bce: return fn(BceOp<acc_t>{});
    case OpKind::BceBackward: return fn(BceBackwardOp<acc_t>{p});
    case OpKind::BceTargetBackward: return fn(BceTargetBackwardOp<acc_t>{p});
    case OpKind::BceLogits: return fn(BceLogitsOp<acc_t>{f.flag});
    case OpKind::BceLogitsBackward: return fn(BceLogitsBackwardOp<acc_t>{f.flag, p});
    case OpKind::BceLogitsTargetBackward: return fn(BceLogitsTargetBackwardOp<acc_t>{f.flag, p});
    case OpKind::Mse: return fn(MseOp<acc_t>{});
    case OpKind::MseBackward: return fn(MseBackwardOp<acc_t>{p});
    case OpKind::BceAndGrad: return fn(LossAndGradOp<BceOp<acc_t>, BceBackwardOp<acc_t>>{{}, {p}});
    case OpKind::BceLogitsAndGrad:
      return fn(LossAndGradOp<BceLogitsOp<acc_t>, BceLogitsBackwardOp<acc_t>>{{f.flag}, {f.flag, p}});
    case OpKind::MseAndGrad: return fn(LossAndGradOp<MseOp<acc_t>, MseBackwardOp<acc_t>>{{}, {p}});
  }
}

// The outputs of a formula (kOutputs, else 1), and a formula's result as Results of that many.
template <typename Op, typename = void>
struct Outputs : std::integral_constant<int, 1> {};
template <typename Op>
struct Outputs<Op, std::void_t<decltype(Op::kOutputs)>> : std::integral_constant<int, Op::kOutputs> {};
template <int K, typename T>
C10_HOST_DEVICE inline Results<T, K> as_results(const Results<T, K>& r) {
  return r;
}
template <int K, typename T>
C10_HOST_DEVICE inline Results<T, 1> as_results(const T& r) {
  static_assert(K == 1, "a formula of several outputs returns Results");
  return {{r}};
}

// The outputs f's formula writes (a front-end allocates them).
inline int outputs_of(const Formula& f) {
  int k = 1;
  visit_formula<float>(f, [&](auto op) { k = Outputs<decltype(op)>::value; });
  return k;
}

// Whether a formula sums its first result and stores its second (kSumsFirst: LossAndGradOp).
template <typename Op, typename = void>
struct SumsFirst : std::false_type {};
template <typename Op>
struct SumsFirst<Op, std::void_t<decltype(Op::kSumsFirst)>> : std::bool_constant<Op::kSumsFirst> {};

// Whether f's formula sums its first result and stores its second.
inline bool sums_first(const Formula& f) {
  bool sums = false;
  visit_formula<float>(f, [&](auto op) { sums = SumsFirst<decltype(op)>::value; });
  return sums;
}

// The argument of f's formula that is its incoming gradient (kGradArg), or -1.
inline int grad_arg_index(const Formula& f) {
  int index = -1;
  visit_formula<float>(f, [&](auto op) {
    constexpr unsigned kBits = GradArg<decltype(op)>::value;
    for (int k = 0; k < kMaxArity && index < 0; ++k) index = (kBits >> k) & 1u ? k : -1;
  });
  return index;
}

// Whether a formula is a forward loss, the only formulas the summing loops instantiate.
template <typename Op, typename = void>
struct IsLoss : std::false_type {};
template <typename Op>
struct IsLoss<Op, std::void_t<decltype(Op::kIsLoss)>> : std::bool_constant<Op::kIsLoss> {};

}  // namespace pyext
