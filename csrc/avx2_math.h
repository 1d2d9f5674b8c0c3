// The vector exp, and BCE's and the softplus's logs, of float for AVX2: our own, inlined into the CPU loops, where
// at::vec would call Sleef's out of line (and its general log1p). AVX2 has none of AVX-512's getexp, getmant,
// scalef or 16-lane permutes (avx512_math.h), so the reductions work on the bits, as the GPU's BCE logs do
// (cuda/math_unit.cuh); the polynomials are the same (polynomials.h), by Horner's rule. Over every float, against
// double (benchmarks/cpu_math_exhaustive.cpp): exp within 0.988 ulp, the logs within 0.913 (the GPU's, bit for
// bit), the softplus within 1.684; benchmarks/check_vector_math.py measures what reaches the user through the ops.
// Include only where AVX2 is enabled (CPU_CAPABILITY_AVX2).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "polynomials.h"

namespace pyext {
namespace avx2 {

// c[0] + r (c[1] + r (c[2] + ...)): the polynomial q of polynomials.h
template <size_t K>
inline __m256 horner(__m256 r, const float (&c)[K]) {
  __m256 q = _mm256_set1_ps(c[K - 1]);
  for (size_t k = K - 1; k-- > 0;) q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(c[k]));
  return q;
}

// e^x = e^r 2^n, x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2; e^r = 1 + r + r^2 q(r). x is clamped to
// [-150, 150] first (e^x is then 0 or inf already); min and max return their second operand for a NaN, which is
// x. 2^n is applied as two exact powers of two, 2^(n - n/2) and 2^(n/2), each a normal float for |n| <= 216:
// the first product is exact, and the second rounds once, to inf past the float range and gradually to 0 below
// it (what AVX-512's scalef does in one instruction).
inline __m256 exp(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-150.f), _mm256_min_ps(_mm256_set1_ps(150.f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  const __m256 e_r =
      _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(r, r), horner(r, kExpQ), r), _mm256_set1_ps(1.f));
  const __m256i whole = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(whole, 1);
  auto power_of_two = [](__m256i k) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
  };
  return _mm256_mul_ps(_mm256_mul_ps(e_r, power_of_two(_mm256_sub_epi32(whole, half))), power_of_two(half));
}

// x = m 2^e, m in [0.75, 1.5), for a normal x (0 gives m = 1, e = -127): r = m - 1 (exact), e, and e << 23
struct Reduced {
  __m256 r, e;
  __m256i scale;
};
inline Reduced reduce(__m256 x) {
  const __m256i bits = _mm256_castps_si256(x);
  const __m256i scale =
      _mm256_and_si256(_mm256_sub_epi32(bits, _mm256_set1_epi32(0x3f400000)), _mm256_set1_epi32(0xff800000));
  return {_mm256_sub_ps(_mm256_castsi256_ps(_mm256_sub_epi32(bits, scale)), _mm256_set1_ps(1.f)),
          _mm256_cvtepi32_ps(_mm256_srai_epi32(scale, 23)), scale};
}
// ln(1 + r) + e ln2
inline __m256 log_from(__m256 r, __m256 e) {
  const __m256 ln_m = _mm256_fmadd_ps(_mm256_mul_ps(r, r), horner(r, kLogQ), r);
  return _mm256_fmadd_ps(e, _mm256_set1_ps(kLn2Hi), _mm256_fmadd_ps(e, _mm256_set1_ps(kLn2Lo), ln_m));
}

// ln x for x in [0, 1] only (BCE's; elsewhere an unspecified value), reduced as x 2^23 + 0: normal for every x
// there but 0, so subnormals need no select; 0 and -0 (the + 0 makes it +0) give -150 ln2 = -104.0, below
// BCE's clamp at -100.
inline __m256 log_unit(__m256 x) {
  const Reduced d = reduce(_mm256_fmadd_ps(x, _mm256_set1_ps(8388608.f), _mm256_setzero_ps()));
  return log_from(d.r, _mm256_sub_ps(d.e, _mm256_set1_ps(23.f)));
}

// ln(1 + x) for x in [-1, 1] only (BCE's ln(1 - p), the softplus's ln(1 + e^z)): u = 1 + x rounded, and its
// rounding error c = (1 + x) - u, exact for |x| <= 1, added to r as c 2^-e (exact scaling). u is reduced as in
// log_unit: u = 0 gives -104.0. NaN for NaN.
inline __m256 log1p_unit(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.f);
  const __m256 u = _mm256_add_ps(one, x);
  const __m256 c = _mm256_add_ps(x, _mm256_sub_ps(one, u));
  const Reduced d = reduce(_mm256_mul_ps(u, _mm256_set1_ps(8388608.f)));
  const __m256 two_to_23_minus_e = _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_set1_epi32(0x4b000000), d.scale));
  return log_from(_mm256_fmadd_ps(c, two_to_23_minus_e, d.r), _mm256_sub_ps(d.e, _mm256_set1_ps(23.f)));
}

// ln(1 + e^z) for z <= 0 (NaN for NaN), BCE-with-logits' softplus: log1p_unit(e^z), but at or below z = -15.5,
// where t = e^z < 2e-7, t - t^2 / 2 (within 2^-44), in a branch taken only by a vector with such a lane. There
// log1p_unit's powers of t would underflow, which CPUs handle slowly: it is given t no smaller than 2^-40.
inline __m256 log1p_exp(__m256 z) {
  const __m256 t = exp(z);
  __m256 result = log1p_unit(_mm256_max_ps(_mm256_set1_ps(0x1p-40f), t));
  const __m256 outside = _mm256_cmp_ps(z, _mm256_set1_ps(-15.5f), _CMP_LE_OQ);
  if (__builtin_expect(_mm256_movemask_ps(outside) != 0, 0)) {
    result = _mm256_blendv_ps(result, _mm256_fmadd_ps(_mm256_mul_ps(t, _mm256_set1_ps(-0.5f)), t, t), outside);
  }
  return result;
}

}  // namespace avx2
}  // namespace pyext
