// The error of pyext's CPU exp and log over every float, against the exact value (double's):
// AVX-512's (csrc/avx512_math.h) beside Sleef's (torch's Vectorized<float>::exp, and the u35 log we used before);
// its softplus ln(1 + e^z) over every z <= 0, from the table and the branch (log1p_exp), and as log1p_unit(exp(z));
// and BCE's ln(1 + x) over every x in [-1, 0] (log1p_neg_unit). Then AVX2's (csrc/avx2_math.h): exp, BCE's logs
// over [0, 1] and [-1, 0] (ln 0 need only lie below BCE's clamp at -100; each also compared, bit for bit, with the
// GPU's, cuda/math_unit.cuh, compiled for the host) and the softplus over every z <= 0.
// Build and run (about 8 minutes), with torch's headers and libraries (Sleef is linked into libtorch_cpu):
//   T=$(python -c 'import torch, os; print(os.path.dirname(torch.__file__))')
//   g++ -O2 -std=c++17 -mavx512f -mavx512dq -mavx2 -mfma benchmarks/cpu_math_exhaustive.cpp -I$T/include \
//       -L$T/lib -ltorch_cpu -lc10 -Wl,-rpath,$T/lib -o /tmp/cpu_math && /tmp/cpu_math
#include <sleef.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "../csrc/avx2_math.h"
#include "../csrc/avx512_math.h"
#include "../cuda/math_unit.cuh"

namespace {

// |got - exact| in ulps of the float nearest exact; an inf, a NaN or a 0 must be exactly right.
double ulp_error(float got, double exact) {
  if (std::isnan(got) || std::isnan(exact)) return std::isnan(got) == std::isnan(exact) ? 0 : INFINITY;
  const float nearest = static_cast<float>(exact);
  if (std::isinf(nearest) || std::isinf(got)) return nearest == got ? 0 : INFINITY;
  const double ulp = nearest == 0 ? std::ldexp(1.0, -149)
                                  : std::nextafter(std::fabs(nearest), INFINITY) - std::fabs(double(nearest));
  return std::fabs(double(got) - exact) / ulp;
}

struct Worst {
  double ulps = 0;
  float at = 0;
  void add(float x, float got, double exact) {
    const double e = ulp_error(got, exact);
    if (e > ulps) ulps = e, at = x;
  }
};

// ln(1 + t) for t in [0, 1] (NaN for NaN): u = 1 + t in [1, 2], so its reduction is known without getmant,
// getexp or special lanes: for u < 1.5, m = u and r = t (exactly, where u itself may round); else m = u / 2,
// e = 1 and r = (t - 1) / 2 (exact in one fma); log's polynomial. The softplus as log1p_unit(exp(z)), which
// avx512::log1p_exp's table replaced, is measured beside it.
inline __m512 log1p_unit(__m512 t) {
  const __mmask16 halved = _mm512_cmp_ps_mask(_mm512_add_ps(t, _mm512_set1_ps(1.f)), _mm512_set1_ps(1.5f),
                                              _CMP_GE_OQ);
  const __m512 half = _mm512_set1_ps(0.5f);
  const __m512 r = _mm512_mask_fmsub_ps(t, halved, half, half);  // t, or t / 2 - 1 / 2
  const __m512 ln_m = pyext::avx512::log_mantissa(r);
  const __m512 low = _mm512_mask_add_ps(ln_m, halved, ln_m, _mm512_set1_ps(pyext::kLn2Lo));
  return _mm512_mask_add_ps(low, halved, low, _mm512_set1_ps(pyext::kLn2Hi));
}

// The 16 floats whose bits follow from `bits`, into x and as a vector.
__m512 floats(uint64_t bits, float (&x)[16]) {
  for (int k = 0; k < 16; ++k) {
    const uint32_t u = static_cast<uint32_t>(bits + k);
    std::memcpy(&x[k], &u, sizeof u);
  }
  return _mm512_loadu_ps(x);
}

// AVX2's functions on the 16 floats from `bits` (two vectors), into out
template <typename F>
void avx2_on(F f, uint64_t bits, float (&x)[16], float (&out)[16]) {
  floats(bits, x);
  _mm256_storeu_ps(out, f(_mm256_loadu_ps(x)));
  _mm256_storeu_ps(out + 8, f(_mm256_loadu_ps(x + 8)));
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void avx2() {
  using pyext::cuda::UnitIntervalMath;  // the GPU's BCE logs
  Worst exp, log_unit, log1p_unit, softplus;
  int64_t log_unlike_gpu = 0, log1p_unlike_gpu = 0;
  alignas(64) float x[16], a[16];
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 16) {
    avx2_on(pyext::avx2::exp, bits, x, a);
    for (int k = 0; k < 16; ++k) exp.add(x[k], a[k], std::exp(double(x[k])));
  }
  for (uint64_t bits = 0; bits <= 0x3f800000u; bits += 16) {  // every float from +0 to 1
    avx2_on(pyext::avx2::log_unit, bits, x, a);
    for (int k = 0; k < 16; ++k) {
      if (x[k] > 1.f) continue;
      if (x[k] == 0.f) {  // -inf in exact arithmetic: below BCE's clamp at -100 is all it must be
        if (!(a[k] < -100.f)) log_unit.add(x[k], a[k], -INFINITY);
      } else {
        log_unit.add(x[k], a[k], std::log(double(x[k])));
      }
      log_unlike_gpu += !same_bits(a[k], UnitIntervalMath::log(x[k]));
    }
  }
  for (uint64_t bits = 0x80000000u; bits <= 0xbf800000u; bits += 16) {  // every float from -0 to -1
    avx2_on(pyext::avx2::log1p_unit, bits, x, a);
    for (int k = 0; k < 16; ++k) {
      if (x[k] < -1.f) continue;
      if (x[k] == -1.f) {  // as ln 0 above
        if (!(a[k] < -100.f)) log1p_unit.add(x[k], a[k], -INFINITY);
      } else {
        log1p_unit.add(x[k], a[k], std::log1p(double(x[k])));
      }
      log1p_unlike_gpu += !same_bits(a[k], UnitIntervalMath::log1p(x[k]));
    }
  }
  for (uint64_t bits = 0x80000000u; bits < (uint64_t{1} << 32); bits += 16) {  // every float with the sign bit
    avx2_on(pyext::avx2::log1p_exp, bits, x, a);
    for (int k = 0; k < 16; ++k) softplus.add(x[k], a[k], std::log1p(std::exp(double(x[k]))));
  }
  std::printf("AVX2: exp %.3f ulp (at %.9g); ln x, x in [0, 1]: %.3f ulp (at %.9g), %lld unlike the GPU's; "
              "ln(1 + x), x in [-1, 0]: %.3f ulp (at %.9g), %lld unlike the GPU's; ln(1 + e^z), z <= 0: %.3f ulp "
              "(at %.9g)\n", exp.ulps, exp.at, log_unit.ulps, log_unit.at, static_cast<long long>(log_unlike_gpu),
              log1p_unit.ulps, log1p_unit.at, static_cast<long long>(log1p_unlike_gpu), softplus.ulps, softplus.at);
}

}  // namespace

int main() {
  Worst exp_ours, exp_sleef, log_ours, log_sleef;
  alignas(64) float x[16], a[16], b[16], c[16], d[16];
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 16) {
    const __m512 v = floats(bits, x);
    _mm512_store_ps(a, pyext::avx512::exp(v));
    _mm512_store_ps(b, Sleef_expf16_u10(v));
    _mm512_store_ps(c, pyext::avx512::log(v));
    _mm512_store_ps(d, Sleef_logf16_u35(v));
    for (int k = 0; k < 16; ++k) {
      const double e = std::exp(double(x[k])), l = std::log(double(x[k]));
      exp_ours.add(x[k], a[k], e);
      exp_sleef.add(x[k], b[k], e);
      log_ours.add(x[k], c[k], l);
      log_sleef.add(x[k], d[k], l);
    }
  }
  Worst table, branch, composed;
  for (uint64_t bits = 0x80000000u; bits < (uint64_t{1} << 32); bits += 16) {  // every float with the sign bit
    const __m512 v = floats(bits, x);
    _mm512_store_ps(a, pyext::avx512::log1p_exp(v));
    _mm512_store_ps(b, log1p_unit(pyext::avx512::exp(v)));
    for (int k = 0; k < 16; ++k) {
      const double e = std::log1p(std::exp(double(x[k])));
      (x[k] > -15.5f ? table : branch).add(x[k], a[k], e);
      composed.add(x[k], b[k], e);
    }
  }
  Worst log1p_neg;  // ln(1 + x) for BCE's x in [-1, 0]: every float from -0 to -1
  for (uint64_t bits = 0x80000000u; bits <= 0xbf800000u; bits += 16) {
    const __m512 v = floats(bits, x);
    _mm512_store_ps(a, pyext::avx512::log1p_neg_unit(v));
    for (int k = 0; k < 16; ++k) {
      if (x[k] >= -1.f) log1p_neg.add(x[k], a[k], std::log1p(double(x[k])));
    }
  }
  std::printf("ln(1 + x), x in [-1, 0]: log1p_neg_unit %.3f ulp (at %.9g)\n", log1p_neg.ulps, log1p_neg.at);
  std::printf("ln(1 + e^z), z <= 0: table %.3f ulp (at %.9g), branch %.3f ulp (at %.9g); log1p_unit(exp(z)) "
              "everywhere %.3f ulp (at %.9g)\n", table.ulps, table.at, branch.ulps, branch.at, composed.ulps,
              composed.at);
  std::printf("exp: pyext %.3f ulp (at %.9g), Sleef u10 %.3f ulp (at %.9g)\n", exp_ours.ulps, exp_ours.at,
              exp_sleef.ulps, exp_sleef.at);
  std::printf("log: pyext %.3f ulp (at %.9g), Sleef u35 %.3f ulp (at %.9g)\n", log_ours.ulps, log_ours.at,
              log_sleef.ulps, log_sleef.at);
  avx2();
  return 0;
}
