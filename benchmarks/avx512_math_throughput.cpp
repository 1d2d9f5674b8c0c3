// The cost of pyext's AVX-512 exp and log (csrc/avx512_math.h) in this CPU's cycles a vector of 16 floats, over
// independent vectors in L1 (so throughput, not latency), beside pieces with a known count of instructions: what
// a loop of the losses can hope for on a CPU that runs 512-bit vectors in two halves (Zen 4), or whole (Zen 5).
// Build and run (seconds):
//   g++ -O3 -march=native -std=c++17 benchmarks/avx512_math_throughput.cpp -o /tmp/throughput && /tmp/throughput
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>

#include "../csrc/avx512_math.h"

namespace {

using pyext::avx512::exp;
using pyext::avx512::log;

constexpr int kFloats = 4096, kPasses = 2000;
alignas(64) float input[kFloats], output[kFloats];

// The clock, from a chain of dependent integer adds (one a cycle).
double cycles_per_second() {
  constexpr uint64_t kAdds = 400000000;
  uint64_t x = 0;
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < kAdds; i += 4) asm volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
  return kAdds / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

template <typename F>
void time(const char* name, double hz, F f) {
  double best = 1e30;
  for (int round = 0; round < 15; ++round) {
    const auto start = std::chrono::steady_clock::now();
    for (int pass = 0; pass < kPasses; ++pass) {
      asm volatile("" ::: "memory");  // each pass loads and stores again
      for (int i = 0; i < kFloats; i += 16) _mm512_store_ps(output + i, f(_mm512_load_ps(input + i)));
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::printf("%-36s %6.2f cycles a vector\n", name, best * hz / (double(kPasses) * kFloats / 16));
}

}  // namespace

int main() {
  for (int i = 0; i < kFloats; ++i) input[i] = (i + 0.5f) / kFloats;  // (0, 1): BCE's arguments
  const double hz = cycles_per_second();
  std::printf("clock %.2f GHz\n", hz / 1e9);
  time("8 dependent fmas", hz, [](__m512 x) {
    __m512 a = x;
    for (int k = 0; k < 8; ++k) a = _mm512_fmadd_ps(a, x, x);
    return a;
  });
  time("getmant + getexp + add", hz, [](__m512 x) {
    return _mm512_add_ps(_mm512_getmant_ps(x, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_nan), _mm512_getexp_ps(x));
  });
  time("exp", hz, [](__m512 x) { return exp(x); });
  time("log", hz, [](__m512 x) { return log(x); });
  time("log(x) + log(1 - x)", hz, [](__m512 x) { return _mm512_add_ps(log(x), log(_mm512_sub_ps(_mm512_set1_ps(1.f), x))); });
}
