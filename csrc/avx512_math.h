// The vector exp and log of float for AVX-512: our own, inlined into the CPU loops (Sleef's, which torch's
// Vectorized<float> calls, are out-of-line calls). Each reduces its argument to a small r and evaluates
// c0 + r + r^2 q(r), with q fitted by benchmarks/fit_polynomials.py (polynomials.h, which the AVX2 math and the
// GPU share). Over every float, against double (benchmarks/cpu_math_exhaustive.cpp): exp within 0.990 ulp
// (Sleef's u10 exp, which torch uses: 0.988); log within 0.922 ulp (Sleef's u35 log: 2.85).
// benchmarks/check_vector_math.py measures what reaches the user through the ops.
// Include only where AVX-512 is enabled (CPU_CAPABILITY_AVX512).
#pragma once

#include <immintrin.h>

#include <cstddef>

#include "polynomials.h"
#include "softplus_table.h"

namespace pyext {
namespace avx512 {

// q(r) = c0 + r Q(r) for the two degrees used (c lowest order first, r2 = r^2), with Q by Estrin's scheme: pairs
// of terms, then pairs of pairs. The loops are bound by the chain of dependent FMAs (BCE's two logs,
// BCE-with-logits' exp then log): 4 here where Horner's rule has 8 (log) or 5 (exp), for one multiply more.
// c0 is added last, by itself, as Horner's rule does: the errors of Q's roundings reach the result times r.
inline __m512 poly(__m512 r, __m512 r2, const float (&c)[9]) {
  auto pair = [&](int i) { return _mm512_fmadd_ps(_mm512_set1_ps(c[i + 1]), r, _mm512_set1_ps(c[i])); };
  const __m512 q = _mm512_fmadd_ps(_mm512_fmadd_ps(pair(7), r2, pair(5)), _mm512_mul_ps(r2, r2),
                                   _mm512_fmadd_ps(pair(3), r2, pair(1)));  // c1 .. c8
  return _mm512_fmadd_ps(q, r, _mm512_set1_ps(c[0]));
}
inline __m512 poly(__m512 r, __m512 r2, const float (&c)[6]) {
  auto pair = [&](int i) { return _mm512_fmadd_ps(_mm512_set1_ps(c[i + 1]), r, _mm512_set1_ps(c[i])); };
  const __m512 q = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(c[5]), r2, pair(3)), r2, pair(1));  // c1 .. c5
  return _mm512_fmadd_ps(q, r, _mm512_set1_ps(c[0]));
}

// e^x = e^r 2^n, x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2; e^r = 1 + r + r^2 q(r), q of degree 5
// (polynomials.h). scalef gives inf past the float range and gradual underflow to 0 below it. x is
// clamped to [-150, 150] first (e^x is then already 0 or inf), so that n ln2 stays finite; min and max return
// their second operand for a NaN, which is x. 1.3x faster than Sleef's u10 exp here, in a sigmoid loop.
inline __m512 exp(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-150.f), _mm512_min_ps(_mm512_set1_ps(150.f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  const __m512 r2 = _mm512_mul_ps(r, r);
  const __m512 e_r = _mm512_add_ps(_mm512_fmadd_ps(r2, poly(r, r2, kExpQ), r), _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(e_r, n);
}

// ln m for m = 1 + r in [0.75, 1.5): r + r^2 q(r), q of degree 8 (polynomials.h)
inline __m512 log_mantissa(__m512 r) {
  const __m512 r2 = _mm512_mul_ps(r, r);
  return _mm512_fmadd_ps(r2, poly(r, r2, kLogQ), r);
}
// ln m + e ln2
inline __m512 log_reduced(__m512 r, __m512 e) {
  return _mm512_fmadd_ps(e, _mm512_set1_ps(kLn2Hi), _mm512_fmadd_ps(e, _mm512_set1_ps(kLn2Lo), log_mantissa(r)));
}

// ln x = e ln2 + ln m, x = m 2^e with m in [0.75, 1.5) (getmant and getexp, which also take subnormals; m is
// NaN for x < 0, e is -inf for 0 and +inf for inf). In the BCE loops, 15-25% faster than with Sleef's u35 log.
inline __m512 log(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_nan);
  __m512 e = _mm512_getexp_ps(x);  // the exponent for a mantissa in [1, 2): one more where m was halved
  e = _mm512_mask_add_ps(e, _mm512_cmp_ps_mask(m, one, _CMP_LT_OQ), e, one);
  return log_reduced(_mm512_sub_ps(m, one), e);
}

// ln(1 + x) for x in [-1, 0] only (BCE's ln(1 - p); elsewhere an unspecified value). 1 + x = m 2^e with m in
// [0.75, 1.5) (within a rounding at either end): e is the exponent of v = (1 + x) 4/3, and 2^-e is read from v's
// bits (2^127 for v = 0, where e is -inf, and so the result). Then r = m - 1 = x 2^-e + (2^-e - 1), one fma, is
// exact: it is x for e = 0 and 1 + 2x for e = -1 (each exact), and below, 1 + x is exact and so m - 1. So the
// rounding of 1 + x, which a log1p must put back, never enters; no special lanes, no getmant. 20 instructions
// against 28 for log1p's general form (u's rounding error joined to r, and two special lanes). Within 0.919 ulp
// over every float in [-1, 0] (benchmarks/cpu_math_exhaustive.cpp).
inline __m512 log1p_neg_unit(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 v = _mm512_mul_ps(_mm512_add_ps(x, one), _mm512_set1_ps(4.f / 3.f));
  const __m512i exponent_bits = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7f800000));
  const __m512 s = _mm512_castsi512_ps(_mm512_sub_epi32(_mm512_set1_epi32(0x7f000000), exponent_bits));  // 2^-e
  return log_reduced(_mm512_fmadd_ps(x, s, _mm512_sub_ps(s, one)), _mm512_getexp_ps(v));
}

// ln(1 + e^z) for z <= 0 (NaN for NaN), BCE-with-logits' softplus. For z in (-15.5, 0], from a table
// (softplus_table.h, fitted by benchmarks/fit_polynomials.py): piece i = round(-z), u = z + i (exact: z and -i
// lie within a factor of two, or i = 0), hi[i] + (lo[i] + u Q_i(u)) with Q_i's coefficients picked per lane by
// permutes, summed as hi + (q0 u + (lo + u^2 (q1 + q2 u + ...))), which rounds the two large terms once each:
// within 1.11 ulp over every float in (-15.5, 0] (the composed log1p_unit(exp(z)) of
// benchmarks/cpu_math_exhaustive.cpp: 1.70; the order hi + (lo + u Q): 1.95).
// In BCE-with-logits' forward loop, half the time of log1p_unit(exp(z)) (3.3 against 6.9 ns a vector, one
// thread, a Zen 5). The lanes at or below -15.5 and NaN take a branch, taken only by a vector that has such a
// lane: t - t^2 / 2 from t = e^z (within 1.14 ulp there). log1p_unit(exp(z)) there is up to 2.4x slower (z = -60:
// 10.5 against 4.3 ns a vector): its polynomial's powers of t underflow, which this CPU handles slowly. (Below
// -87.3 e^z itself is subnormal: 11.4 ns.)
inline __m512 log1p_exp(__m512 z) {
  const __m512 n = _mm512_roundscale_ps(_mm512_sub_ps(_mm512_setzero_ps(), z),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512i i = _mm512_cvttps_epi32(n);  // the piece; meaningless in the lanes the branch takes
  const __m512 u = _mm512_add_ps(z, n);
  auto coef = [&](const float(&table)[kSoftplusPieces]) { return _mm512_permutexvar_ps(i, _mm512_load_ps(table)); };
  const auto& q = kSoftplusQ;
  const __m512 u2 = _mm512_mul_ps(u, u);
  const __m512 q1_q6 = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_fmadd_ps(coef(q[6]), u, coef(q[5])), u2,
                                                       _mm512_fmadd_ps(coef(q[4]), u, coef(q[3]))),
                                       u2, _mm512_fmadd_ps(coef(q[2]), u, coef(q[1])));
  const __m512 small = _mm512_fmadd_ps(u2, q1_q6, coef(kSoftplusLo));
  __m512 result = _mm512_add_ps(coef(kSoftplusHi), _mm512_fmadd_ps(u, coef(q[0]), small));
  const __mmask16 outside = _mm512_cmp_ps_mask(z, _mm512_set1_ps(-15.5f), _CMP_NGT_UQ);  // z <= -15.5, or NaN
  if (__builtin_expect(outside != 0, 0)) {  // ln(1 + t) = t - t^2 / 2 within 2^-44 for t = e^z < 2e-7
    const __m512 t = exp(z);
    result = _mm512_mask_mov_ps(result, outside, _mm512_fmadd_ps(_mm512_mul_ps(t, _mm512_set1_ps(-0.5f)), t, t));
  }
  return result;
}

}  // namespace avx512
}  // namespace pyext
