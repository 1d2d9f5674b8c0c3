// The GPU's math for 16-bit elements (half, bfloat16): the formulas run in float, but their results are
// rounded to 11 or 8 bits, so full-precision expf/logf/log1pf (software routines of 20-40 instructions
// each) buy nothing the rounding keeps. The hardware's approximations (MUFU.EX2 / MUFU.LG2: exp2 within
// 2 ulp, log2 within 2 ulp, or 2^-22 absolute on [0.5, 2]) take one instruction each. Near 1, where an
// absolute error of the log is a large relative one, ln(1 + d) comes from its series instead:
//   |d| < 1/32:  ln(1 + d) = d - d^2/2 + d^3/3 - d^4/4 + ...  (truncated after d^4: relative error < 2^-22)
//   else:        ln2 log2(1 + d)  (relative error < 2^-17: |log2(1 + d)| >= 0.044 there)
// Subnormal inputs and results are kept (bfloat16 has float's exponent range): exp2 in the .f32 form without
// .ftz; log2 in the .ftz form (no handling of subnormals, 4 instructions fewer per call) of x 2^8, which is
// normal for every 16-bit x (bfloat16's smallest subnormal is 2^-133), for x below 2^120 (the formulas': BCE's
// x in [0, 1], its target gradient's x / (1 - x)); log1p's argument 1 + x is never subnormal.
// Measured over every 16-bit input by benchmarks/check_vector_math.py (--dtype), tested in test_vector_math.
#pragma once

#include <cmath>

#include "../csrc/formulas.h"

namespace pyext {
namespace cuda {

// exp, log, log1p and div replaced; abs, max and min are Math<float>'s.
struct Math16 : Math<float> {
  static constexpr float kLn2 = 0.693147180559945309f;
  static __device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
  }
  // for an x that is never subnormal
  static __device__ __forceinline__ float log2_approx_normal(float x) {
    float y;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
  }
  // ln(1 + d) for |d| < 1/32, to degree 4
  static __device__ __forceinline__ float log1p_series(float d) {
    return d + d * d * (-0.5f + d * (1.0f / 3.0f - 0.25f * d));
  }

  // e^x = 2^(x log2 e); rounding x log2 e adds |x| 2^-24 relative (2^-17 at |x| = 100, where e^-x underflows)
  static __device__ __forceinline__ float exp(float x) { return exp2_approx(x * 1.44269504088896341f); }
  // ln x = ln2 (log2(x 2^8) - 8), the subtraction inside one rounding; x 2^8 normal for every 16-bit x
  static __device__ __forceinline__ float log_by_log2(float x) {
    return fmaf(log2_approx_normal(x * 256.0f), kLn2, -8.0f * kLn2);
  }
  // x - 1 is exact near 1 (Sterbenz)
  static __device__ __forceinline__ float log(float x) {
    const float d = x - 1.0f;
    return fabsf(d) < 0.03125f ? log1p_series(d) : log_by_log2(x);
  }
  // a / b by the hardware's reciprocal and a multiply (__fdividef: within 2 ulp of float for b in
  // [2^-126, 2^126], the formulas' denominators: BCE's max(x (1 - x), 1e-12) and 1 - x, a mean's element count)
  static __device__ __forceinline__ float div(float a, float b) { return __fdividef(a, b); }
  // away from 0, rounding 1 + x adds at most 2^-24 absolute to the log, 2^-19 relative; 1 + x is never
  // subnormal (floats near -1 are 2^-24 apart)
  static __device__ __forceinline__ float log1p(float x) {
    return fabsf(x) < 0.03125f ? log1p_series(x) : kLn2 * log2_approx_normal(1.0f + x);
  }
};

// bfloat16's: log without the series near 1. A bfloat16 x below 1 is at most 1 - 2^-8, where |ln x| >= 2^-8, so
// log2's absolute error (with the rounding of log2(x 2^8), 2^-21) is at most 2^-13.5 relative: a 23rd of
// bfloat16's ulp (benchmarks/emulate_math16.py: 0.503 ulp at worst, 1 result in 16255 not the nearest, at
// MUFU's error bound). 63 fewer instructions per 8 elements in BCE forward. float16's 11 bits keep the series.
struct MathBf16 : Math16 {
  static __device__ __forceinline__ float log(float x) { return log_by_log2(x); }
};

}  // namespace cuda
}  // namespace pyext
