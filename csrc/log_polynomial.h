// The polynomial of pyext's own float log, shared by the CPU's AVX-512 log (avx512_math.h) and the GPU's log
// for BCE's arguments (cuda/math_unit.cuh): ln x = e ln2 + ln m for x = m 2^e, m in [0.75, 1.5), and
// ln m = r + r^2 q(r), r = m - 1, q of degree 8 fitted by benchmarks/fit_polynomials.py (its output, lowest
// order first; relative error 2^-26.8).
#pragma once

namespace pyext {

constexpr float kLogQ[] = {-0.5f, 0.3333345353603363f, -0.250000536441803f, 0.19990600645542145f,
                           -0.1664775013923645f, 0.14482128620147705f, -0.13162505626678467f,
                           0.10448537021875381f, -0.044908881187438965f};

constexpr float kLn2Hi = 0.693145751953125f;  // ln2 in two parts; the high one has 15 bits, so n kLn2Hi is exact
constexpr float kLn2Lo = 1.428606765330187e-06f;

}  // namespace pyext
