// The GPU's float log and log1p for BCE's arguments, which its domain check holds to [0, 1] (formulas.h's
// ChecksUnitInterval; an element outside gives an unspecified value, and the call an error): ln x for x in
// [0, 1] and ln(1 + x) for x in [-1, 0]. Knowing the domain leaves out the handling of negative, infinite and
// NaN arguments, and log1p becomes the log of 1 + x with its rounding put back, not CUDA's longer log1pf:
//   ln x = e ln2 + ln(1 + r), x = (1 + r) 2^e with 1 + r in [0.75, 1.5), ln(1 + r) = r + r^2 q(r)
//     (polynomials.h: the CPU's vector log's polynomial, evaluated here by Horner's rule, which is fewer
//     instructions; the CPU's Estrin form, shorter in latency, may round the last bit otherwise).
//     x is reduced as x 2^23 + 0, which is normal for every x in [0, 1] but 0 (no branch or select for
//     subnormals); 0 and -0 give -150 ln2 = -104.0, below BCE's clamp at -100 (where -inf would be clamped);
//   ln(1 + x): u = 1 + x rounded, c = (1 + x) - u exactly (x + (1 - u), both steps exact for x in [-1, 0]),
//     reduced as u, with c 2^-e added to r (exact scaling) before the polynomial. u is 0 (giving -104.0) or at
//     least 2^-24.
// Plain float arithmetic, so the host computes the same results: tests/test_vector_math.py runs these on the
// CPU against double.
#pragma once

#include <c10/macros/Macros.h>
#include <c10/util/bit_cast.h>

#include <cmath>
#include <cstdint>
#include <iterator>
#include <utility>

#include "../csrc/formulas.h"
#include "../csrc/polynomials.h"

namespace pyext {
namespace cuda {

struct UnitIntervalMath : Math<float> {
  // q(r) by Horner's rule (each coefficient a scalar constant, which device code may read)
  template <size_t K>
  static constexpr float kQ = kLogQ[K];
  template <size_t... K>
  static C10_HOST_DEVICE float log_q(float r, std::index_sequence<K...>) {
    constexpr size_t last = sizeof...(K);
    float q = kQ<last>;
    ((q = std::fma(q, r, kQ<last - 1 - K>)), ...);
    return q;
  }

  // x = m 2^e, m in [0.75, 1.5), for a normal x (0 gives m = 1, e = -127): scale holds e << 23
  struct Reduced {
    float r;  // m - 1, exact
    float e;
    uint32_t scale;
  };
  static C10_HOST_DEVICE Reduced reduce(float x) {
    const uint32_t i = c10::bit_cast<uint32_t>(x);
    const uint32_t scale = (i - 0x3f400000u) & 0xff800000u;
    return {c10::bit_cast<float>(i - scale) - 1.0f, static_cast<float>(static_cast<int32_t>(scale) >> 23), scale};
  }
  // ln(1 + r) + e ln2
  static C10_HOST_DEVICE float log_from(float r, float e) {
    const float ln_m = std::fma(r * r, log_q(r, std::make_index_sequence<std::size(kLogQ) - 1>{}), r);
    return std::fma(e, kLn2Hi, std::fma(e, kLn2Lo, ln_m));
  }

  // ln x for x in [0, 1], reduced as x 2^23: normal for every x but 0. The + 0 makes -0 (in [0, 1] for the
  // domain check, as for torch's) +0, whose log is -104; -0's bits would reduce to +73.5. As one fma, no
  // instruction more (the product is exact; no compiler drops a + 0 without being told signed zeros do not matter).
  static C10_HOST_DEVICE float log(float x) {
    const Reduced d = reduce(std::fma(x, 8388608.0f, 0.0f));
    return log_from(d.r, d.e - 23.0f);
  }

  // ln(1 + x) for x in [-1, 0]: u = 1 + x reduced as u 2^23 (as in log), and r corrected by c 2^-e
  static C10_HOST_DEVICE float log1p(float x) {
    const float u = 1.0f + x;
    const float c = x + (1.0f - u);  // 1 + x = u + c
    const Reduced d = reduce(u * 8388608.0f);
    const float r = std::fma(c, c10::bit_cast<float>(0x4b000000u - d.scale), d.r);  // 0x4b000000 - scale: 2^(23 - e)
    return log_from(r, d.e - 23.0f);
  }
};

}  // namespace cuda
}  // namespace pyext
