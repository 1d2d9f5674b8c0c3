// The polynomials of pyext's own float exp and log, fitted by benchmarks/fit_polynomials.py (its output, lowest
// order first), shared by the CPU's vector math (avx512_math.h, avx2_math.h) and the GPU's log for BCE's
// arguments (cuda/math_unit.cuh):
//   e^x = e^r 2^n, x = n ln2 + r, |r| <= ln2 / 2: e^r = 1 + r + r^2 q(r), q of degree 5 (relative error 2^-29.8);
//   ln x = e ln2 + ln m, x = m 2^e, m in [0.75, 1.5): ln m = r + r^2 q(r), r = m - 1, q of degree 8 (relative
//   error 2^-26.8).
#pragma once

namespace pyext {

constexpr float kExpQ[] = {0.5f, 0.1666666567325592f, 0.04166629537940025f, 0.008333496749401093f,
                           0.0013944663805887103f, 0.00019790371879935265f};

constexpr float kLogQ[] = {-0.5f, 0.3333345353603363f, -0.250000536441803f, 0.19990600645542145f,
                           -0.1664775013923645f, 0.14482128620147705f, -0.13162505626678467f,
                           0.10448537021875381f, -0.044908881187438965f};

constexpr float kLn2Hi = 0.693145751953125f;  // ln2 in two parts; the high one has 15 bits, so n kLn2Hi is exact
constexpr float kLn2Lo = 1.428606765330187e-06f;

}  // namespace pyext
