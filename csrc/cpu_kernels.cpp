// CPU loops: every formula of formulas.h, over any layout the iterator plans.
// Rows whose tensors are contiguous (or broadcast scalars) run at::vec::Vectorized in opmath precision (half and
// bfloat16 widened to float), to the row's end in a masked last step where the rest is worth one (a formula with
// exp or log, any formula in half or bfloat16, a tail of four or more); other rows run the scalar formula with
// strides, unless short rows, rows of a few steps and a tail, or strided operands make a block worth running as
// one flat run (RowLoop::plan_block).
// at::TensorIterator splits the work into rows and at::parallel_for spreads rows over threads.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels.h"
#if defined(CPU_CAPABILITY_AVX512)
#include "avx512_math.h"
#elif defined(CPU_CAPABILITY_AVX2)
#include "avx2_math.h"
#endif

namespace pyext {

using at::vec::Vectorized;

template <typename S>
struct Math<Vectorized<S>> {
  using V = Vectorized<S>;
  static V exp(V x) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<S, float>) return avx512::exp(x);
#elif defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<S, float>) return avx2::exp(x);
#endif
    return x.exp();
  }
  // float: ours on AVX-512, Sleef's 3.5-ulp log on AVX2 (2.8x faster than the 1-ulp Vectorized::log; BCE's two
  // logs take UnitIntervalMath's, below, on either).
  static V log(V x) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<S, float>) return avx512::log(x);
#elif defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<S, float>) return Sleef_logf8_u35(x);
#endif
    return x.log();
  }
  // ln(1 + x) = ln(u + c) with u = 1 + x rounded and c = x - (u - 1) its rounding error (exact for |x| <= 1;
  // beyond, under half an ulp of ln u): ln(u) + c / u, the first-order correction. As accurate as ln, also near
  // x = 0 (where it gives x, but +0 for -0), and several times faster than Sleef's vector log1p. ln(u) alone at
  // u = 0 (-inf) and at x = +inf. (BCE's, on AVX-512: UnitIntervalMath below.)
  static V log1p(V x) {
    const V u = V(1) + x;
    const V c = x - (u - V(1));
    const V special = (u == V(0)) | (x == V(std::numeric_limits<S>::infinity()));
    const V ln_u = log(u);
    return V::blendv(ln_u + c / u, ln_u, special);
  }
  // ln(1 + e^z) for z <= 0 (formulas.h's log1p_exp): on AVX-512, a table of polynomials in z; on AVX2, the log of
  // 1 + e^z for that domain only
  static V log1p_exp(V z) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<S, float>) return avx512::log1p_exp(z);
#elif defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<S, float>) return avx2::log1p_exp(z);
#endif
    return log1p(exp(z));
  }
  static V abs(V x) { return x.abs(); }
  static V div(V a, V b) { return a / b; }
  // std::max(a, b) and std::min(a, b), as the scalar Math: a NaN in a kept, one in b not. x86's max and min
  // give their second operand where either is NaN (or both are zeros), so with the operands swapped they are
  // exactly these, in one instruction (at::vec::maximum, which keeps a NaN from either, takes four).
  static V max(V a, V b) { return extremum<true>(a, b); }
  static V min(V a, V b) { return extremum<false>(a, b); }
  template <bool kMax>
  static V extremum(V a, V b) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<S, float>) return kMax ? _mm512_max_ps(b, a) : _mm512_min_ps(b, a);
    if constexpr (std::is_same_v<S, double>) return kMax ? _mm512_max_pd(b, a) : _mm512_min_pd(b, a);
#elif defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<S, float>) return kMax ? _mm256_max_ps(b, a) : _mm256_min_ps(b, a);
    if constexpr (std::is_same_v<S, double>) return kMax ? _mm256_max_pd(b, a) : _mm256_min_pd(b, a);
#endif
    return V::blendv(a, b, kMax ? a < b : b < a);
  }
};

// The math of a formula over T: for float vectors on AVX-512 or AVX2, where the formula's arguments are checked
// to lie in [0, 1] (BCE; formulas.h's ChecksUnitInterval), a log1p (on AVX2 a log too) for that domain only, as
// the GPU's (cuda/math_unit.cuh); an element outside gives an unspecified value, and the call an error. Else
// Math<T>.
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
struct UnitIntervalMath : Math<Vectorized<float>> {
#if defined(CPU_CAPABILITY_AVX512)
  static Vectorized<float> log1p(Vectorized<float> x) { return avx512::log1p_neg_unit(x); }  // x in [-1, 0]
#else
  static Vectorized<float> log(Vectorized<float> x) { return avx2::log_unit(x); }      // x in [0, 1]
  static Vectorized<float> log1p(Vectorized<float> x) { return avx2::log1p_unit(x); }  // x in [-1, 0]
#endif
};
template <typename T, typename Op>
using MathFor = std::conditional_t<std::is_same_v<T, Vectorized<float>> && ChecksUnitInterval<Op>::value,
                                   UnitIntervalMath, Math<T>>;
#else
template <typename T, typename Op>
using MathFor = Math<T>;
#endif

namespace cpu {
namespace {

// Two float vectors rounded to one Vectorized<scalar_t> of half or bfloat16. In a build for AVX512-BF16
// (setup.py's avx512_bf16), bfloat16 takes one vcvtne2ps2bf16 instead of at::vec's rounding in integer
// instructions (bfloat16 sigmoid 4.1 -> 3.1 ns for 16 results, one thread in cache). That instruction rounds to
// nearest even as torch does but flushes subnormal results to zero, so a step with a subnormal result rounds
// the at::vec way.
template <typename scalar_t>
Vectorized<scalar_t> narrow(const Vectorized<float>& lo, const Vectorized<float>& hi) {
#if defined(PYEXT_AVX512_BF16)
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    constexpr int kSubnormal = 0x20;  // vfpclassps' category
    if ((_mm512_fpclass_ps_mask(lo, kSubnormal) | _mm512_fpclass_ps_mask(hi, kSubnormal)) == 0) {
      return Vectorized<scalar_t>(reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
    }
  }
#endif
  return at::vec::convert_from_float<scalar_t>(lo, hi);
}

// A step's operand read as two loads of 256 bits where it is 512 (at::vec's widening loads read half and bfloat16
// that way already). On Zen 4 (setup.py defines PYEXT_HALF_VECTOR_LOADS for AMD's family 25), a loop that reads
// its operands from L3 or memory in 512-bit loads runs 5-15% slower than the same loop reading them in halves; the
// stores' width changes nothing (a loop of float x * y alone, one thread: 2^20 elements 178 -> 166 us, 2^22
// 1919 -> 1622). pyext's `mul_` of 2^18 floats, one thread: 27-28 -> 24 us (torch 22.7); `mul` of 2^20 1.09-1.12x
// -> 1.01-1.02x torch's time (benchmarks/NOTES.md, session 31). In the caches the halves cost their extra
// instructions instead (BCE-with-logits of 65536 floats: 27 -> 31 us), so only the cheap formulas (no exp or
// log) and the SGD step read this way; and not a sum's, whose row loop GCC then compiled to add each row's sums
// through memory (MSE 'mean' beside a column, rows of 16 floats: 9.5 -> 21 us). Half and bfloat16 widened half by
// half are faster in the caches too (bfloat16 `mul` of 65536, one thread: 7.9 -> 6.8 us).
#if defined(PYEXT_HALF_VECTOR_LOADS) && defined(CPU_CAPABILITY_AVX512)
constexpr bool kHalfVectorLoads = true;
#else
constexpr bool kHalfVectorLoads = false;
#endif

template <typename T>
Vectorized<T> load_in_halves(const T* p) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(p)), _mm256_loadu_ps(p + 8), 1);
  } else if constexpr (std::is_same_v<T, double>) {
    return _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_loadu_pd(p)), _mm256_loadu_pd(p + 4), 1);
  }
#endif
  return Vectorized<T>::loadu(p);
}

// A formula with exp or log asks for each operand's line 2 KB ahead of its vector step (with AVX-512 a step is a line).
// Reading from memory, such a loop spends long enough between its loads to leave the hardware's prefetchers behind: on
// an Intel Xeon (family 6 model 207), two threads, sigmoid of 2^20 floats 579 -> 328 us and of 2^22 2135 -> 1444, BCE
// 'none' of 2^20 814 -> 611, a BCE 'mean' forward with its gradient 878 -> 746; in the caches, unchanged
// (benchmarks/NOTES.md). The cheap formulas' loops keep up without it (add and mul unchanged with it).
template <typename T>
C10_ALWAYS_INLINE void prefetch_ahead(const T* p) {
  // an address that may lie past the tensor: computed as an integer (a prefetch never faults)
  const auto ahead = reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + 2048);
  __builtin_prefetch(ahead, /*read*/ 0, /*into every cache level*/ 3);
}

// Loads and stores of one vector step, widened to opmath: one Vectorized<float> for float,
// two for the 16 halves or bfloat16s of a Vectorized<Half>.
template <typename scalar_t>
struct VecIO {
  using acc_t = at::opmath_type<scalar_t>;
  using AV = Vectorized<acc_t>;
  static constexpr int kParts = sizeof(acc_t) / sizeof(scalar_t);
  static constexpr int64_t kStep = Vectorized<scalar_t>::size();
  using Parts = std::array<AV, kParts>;

  // kInHalves: as two loads of half a vector each (load_in_halves), half and bfloat16 each half widened.
  template <bool kInHalves = false>
  static Parts load(const scalar_t* p) {
    if constexpr (kParts == 1) {
      return {kInHalves ? load_in_halves(p) : AV::loadu(p)};
    } else if constexpr (kInHalves) {
      Parts v;
      for (int k = 0; k < kParts; ++k) {
        if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
          at::vec::load_fp32_from_bf16(p + k * AV::size(), v[k]);
        } else {
          at::vec::load_fp32_from_fp16(p + k * AV::size(), v[k]);
        }
      }
      return v;
    } else {
      auto [lo, hi] = at::vec::convert_to_float<scalar_t>(Vectorized<scalar_t>::loadu(p));
      return {lo, hi};
    }
  }
  static void store(scalar_t* p, const Parts& v) {
    if constexpr (kParts == 1) {
      v[0].store(p);
    } else {
      narrow<scalar_t>(v[0], v[1]).store(p);
    }
  }
  // The first `count` elements (fewer than kStep) only; the lanes past them load as zeros.
  static Parts load(const scalar_t* p, int64_t count) {
    if constexpr (kParts == 1) {
      return {AV::loadu(p, count)};
    } else {
      auto [lo, hi] = at::vec::convert_to_float<scalar_t>(Vectorized<scalar_t>::loadu(p, count));
      return {lo, hi};
    }
  }
  static void store(scalar_t* p, const Parts& v, int64_t count) {
    if constexpr (kParts == 1) {
      v[0].store(p, count);
    } else {
      narrow<scalar_t>(v[0], v[1]).store(p, count);
    }
  }
  // A non-temporal store (past the caches, no read of the line first) to p, aligned to the vector size.
  static void stream(scalar_t* p, const Parts& v) {
    Vectorized<scalar_t> x;
    if constexpr (kParts == 1) {
      x = v[0];
    } else {
      x = narrow<scalar_t>(v[0], v[1]);
    }
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<scalar_t, float>) {
      _mm512_stream_ps(p, x);
    } else if constexpr (std::is_same_v<scalar_t, double>) {
      _mm512_stream_pd(p, x);
    } else {
      _mm512_stream_si512(reinterpret_cast<__m512i*>(p), x);
    }
#elif defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<scalar_t, float>) {
      _mm256_stream_ps(p, x);
    } else if constexpr (std::is_same_v<scalar_t, double>) {
      _mm256_stream_pd(p, x);
    } else {
      _mm256_stream_si256(reinterpret_cast<__m256i*>(p), x);
    }
#else
    x.store(p);
#endif
  }
};

// Non-temporal stores exist on this build's vector ISA (x86); they are then ordered by a fence.
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
constexpr bool kCanStream = true;
inline void store_fence() { _mm_sfence(); }
#else
constexpr bool kCanStream = false;
inline void store_fence() {}
#endif

// The share of the last-level cache one process may count on: Linux's cache description of CPU 0 (sysconf may
// report the whole package's, e.g. 320 MiB for ten 32 MiB slices), at most 32 MiB, which is also the size where
// neither says. A server's L3 serves all its cores, and in a VM other guests' too: one such host's CPU 0 reports
// 300 MiB, yet a copy on its two threads falls to memory's bandwidth between working sets of 16 and 128 MiB, and
// its add and mul of 2^22 floats (48 MiB of operands) ran 1.2-1.46x torch's speed streamed, 0.96-1.18x not
// (benchmarks/NOTES.md).
int64_t l3_bytes() {
  static const int64_t bytes = [] {
    constexpr int64_t kMaxShare = int64_t{32} << 20;
    int64_t kib = 0;
    if (std::FILE* f = std::fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r")) {
      long long v = 0;
      if (std::fscanf(f, "%lldK", &v) == 1) kib = v;
      std::fclose(f);
    }
    if (kib > 0) return std::min(kib << 10, kMaxShare);
    const long b = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return b > 0 ? std::min(static_cast<int64_t>(b), kMaxShare) : kMaxShare;
  }();
  return bytes;
}

// Whether the page of the output's last element is mapped in yet (where the system cannot say: yes). In a fresh
// allocation past glibc's mmap threshold (at most 32 MB) it is not: the kernel supplies each page at its first
// store, zeroed through the cache, where an ordinary store then overwrites it; a non-temporal store would write
// the zeroed line back to memory and its own data after it (add and mul of 2^24 floats into fresh pages, two
// threads: 0.93-0.99x torch's speed streamed, 1.01-1.03x not; benchmarks/NOTES.md). The allocator writes a
// block's header, next to its first page, never its last.
bool mapped_in(const at::TensorBase& t) {
#if defined(__linux__)
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  int64_t last = 0;  // outputs have no negative strides
  for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
  const auto address = reinterpret_cast<uintptr_t>(t.const_data_ptr()) + last * t.element_size();
  unsigned char in = 0;
  return mincore(reinterpret_cast<void*>(address & ~(page - 1)), 1, &in) != 0 || (in & 1) != 0;
#else
  (void)t;
  return true;
#endif
}

// BCE's domain check over the vector steps of a row, read once after them. x lies in [0, 1] exactly when the
// bits of x + 0 (which makes -0 +0), read as an unsigned integer, are at most 1's: a negative x has the sign
// bit, NaN and values past 1 larger bits (formulas.h's unit_interval_key). So a step keeps the largest such bits
// of each argument: an add and an unsigned max, no mask or flag (as the GPU does, cuda/kernels.cu). Without an
// unsigned max of the lane width, each step tests its lanes.
template <typename T>
struct UnitIntervalCheck {
  using V = Vectorized<T>;
#if defined(CPU_CAPABILITY_AVX512)
  static constexpr bool kBits = std::is_same_v<T, float> || std::is_same_v<T, double>;
  using Bits = __m512i;
#elif defined(CPU_CAPABILITY_AVX2)
  static constexpr bool kBits = std::is_same_v<T, float>;
  using Bits = __m256i;
#else
  static constexpr bool kBits = false;
  using Bits = int;
#endif
  Bits worst[2] = {};
  int errors = 0;

  static Bits bits(V x) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<T, float>) return _mm512_castps_si512(_mm512_add_ps(x, _mm512_setzero_ps()));
    if constexpr (std::is_same_v<T, double>) return _mm512_castpd_si512(_mm512_add_pd(x, _mm512_setzero_pd()));
#elif defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<T, float>) return _mm256_castps_si256(_mm256_add_ps(x, _mm256_setzero_ps()));
#endif
    return Bits{};
  }
  static Bits larger(Bits a, Bits b) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<T, float>) return _mm512_max_epu32(a, b);
    if constexpr (std::is_same_v<T, double>) return _mm512_max_epu64(a, b);
#elif defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<T, float>) return _mm256_max_epu32(a, b);
#endif
    return a;
  }
  static bool outside(Bits w) {
    [[maybe_unused]] const auto bound = unit_interval_key(T(1));  // the largest key in [0, 1]
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<T, float>) return _mm512_cmpgt_epu32_mask(w, _mm512_set1_epi32(bound));
    if constexpr (std::is_same_v<T, double>) return _mm512_cmpgt_epu64_mask(w, _mm512_set1_epi64(bound));
#elif defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<T, float>) {  // max(w, 1's) == 1's where w <= 1's
      const __m256i one = _mm256_set1_epi32(bound);
      return _mm256_movemask_epi8(_mm256_cmpeq_epi32(_mm256_max_epu32(w, one), one)) != -1;
    }
#endif
    return false;
  }

  void add(V x, V y) {
    if constexpr (kBits) {
      worst[0] = larger(worst[0], bits(x));
      worst[1] = larger(worst[1], bits(y));
    } else {
      const V zero(0), one(1);
      errors |= (((x >= zero) & (x <= one)).zero_mask() ? kArg0OutOfRange : 0) |
                (((y >= zero) & (y <= one)).zero_mask() ? kArg1OutOfRange : 0);
    }
  }
  int result() const {
    if constexpr (kBits) return (outside(worst[0]) ? kArg0OutOfRange : 0) | (outside(worst[1]) ? kArg1OutOfRange : 0);
    return errors;
  }
};

// Whether a sink takes four scalar results at once (SumSink: summed in pairs, then into its one running sum).
template <typename Sink, typename = void>
struct SumsInFours : std::false_type {};
template <typename Sink>
struct SumsInFours<Sink, std::void_t<decltype(&Sink::scalar_four)>> : std::true_type {};

// Runs one formula over rows of the iteration. Sink decides what happens to each result (K of them an
// element: the formula's outputs).
template <typename scalar_t, typename Op>
struct RowLoop {
  using acc_t = at::opmath_type<scalar_t>;
  using IO = VecIO<scalar_t>;
  using Parts = typename IO::Parts;
  static constexpr int N = Op::arity;
  static constexpr int K = Outputs<Op>::value;
  static constexpr int64_t kSize = sizeof(scalar_t);
  // An input's buffer in a flat run (plan_block): a repeated row's tile (the row over and over), for rows of up
  // to a quarter of a buffer (512 bytes), or a segment's elements of an input, gathered.
  static constexpr int64_t kBufferElements = 2048 / kSize;
  // Each with a vector's slack past its end, into which a gathered column's last vector store may run.
  using Buffers = scalar_t[N][kBufferElements + Vectorized<scalar_t>::size()];

  Op op;
  int first_input;       // iterator operand of the first tensor argument (K with outputs, 0 summing)
  int tensor_of[N];      // iterator operand of each argument, -1 for a constant
  acc_t value[N];        // the constants

  RowLoop(Op op_, const Formula& f, int first_input_) : op(op_), first_input(first_input_) {
    int next = first_input;
    for (int a = 0; a < N; ++a) {
      tensor_of[a] = f.is_const[a] ? -1 : next++;
      value[a] = static_cast<acc_t>(f.value[a]);
    }
  }

  // The formula f on one element's or step's arguments. Each loop passes its own copy of op: read through `this`,
  // a formula's constants (add's alpha) may alias what the loop stores, and so are loaded again at every step.
  template <typename T, size_t... I>
  static Results<T, K> call(const Op& f, const std::array<T, N>& v, std::index_sequence<I...>) {
    return as_results<K>(f.template operator()<T, MathFor<T, Op>>(v[I]...));
  }
  template <typename T>
  static Results<T, K> call(const Op& f, const std::array<T, N>& v) {
    return call(f, v, std::make_index_sequence<N>{});
  }

  static int unit_interval_errors(acc_t x, acc_t y) {
    return (in_unit_interval(x) ? 0 : kArg0OutOfRange) | (in_unit_interval(y) ? 0 : kArg1OutOfRange);
  }

  // The vector body of a contiguous row: the steps of IO::kStep elements that fit in n; returns where
  // the scalar tail starts. Constants and broadcast scalars are loaded once: the arguments `once` names
  // (kOnce == kOnceAtRunTime), or those of kOnce's bits (bit a: argument a), compiled in; 0, none.
  // (Unrolling two steps per iteration, as torch's loops do, was measured: no gain for add at 2^22,
  // and the losses 30% slower, their Sleef calls spilling twice the registers.)
  static constexpr unsigned kOnceAtRunTime = ~0u;
  template <unsigned kOnce, typename Sink>
  int64_t vector_steps(const std::array<const char*, N>& in, const std::array<bool, N>& once, int64_t n, Sink& sink,
                       int& errors) const {
    const auto loaded_once = [&](int a) { return kOnce == kOnceAtRunTime ? once[a] : (kOnce >> a & 1u) != 0; };
    const Op f = op;
    std::array<const scalar_t*, N> ptr{};
    std::array<Parts, N> args;
    for (int a = 0; a < N; ++a) {
      if (loaded_once(a)) {
        const acc_t v = in[a] == nullptr ? value[a] : acc_t(*reinterpret_cast<const scalar_t*>(in[a]));
        args[a].fill(Vectorized<acc_t>(v));
      } else {
        ptr[a] = reinterpret_cast<const scalar_t*>(in[a]);
      }
    }
    // A cheap formula's operands in halves where its results are stored, not summed (SumsInFours: the SumSink;
    // SumsFirst: a loss with its gradient); load_in_halves says why.
    constexpr bool kInHalves = kHalfVectorLoads && !ExpOrLog<Op>::value && !SumsInFours<Sink>::value &&
                               !SumsFirst<Op>::value;
    UnitIntervalCheck<acc_t> check;
    int64_t i = 0;
    for (; i + IO::kStep <= n; i += IO::kStep) {
      for (int a = 0; a < N; ++a) {
        if (kOnce == kOnceAtRunTime ? ptr[a] != nullptr : !loaded_once(a)) {
          if constexpr (ExpOrLog<Op>::value) prefetch_ahead(ptr[a] + i);
          args[a] = IO::template load<kInHalves>(ptr[a] + i);
        }
      }
      std::array<Parts, K> result;
      for (int p = 0; p < IO::kParts; ++p) {
        std::array<Vectorized<acc_t>, N> part;
        for (int a = 0; a < N; ++a) part[a] = args[a][p];
        if constexpr (ChecksUnitInterval<Op>::value) check.add(part[0], part[1]);
        const auto r = call(f, part);
        for (int o = 0; o < K; ++o) result[o][p] = r.v[o];
      }
      sink.vec(i, result);
    }
    if constexpr (ChecksUnitInterval<Op>::value) errors |= check.result();
    return i;
  }

  // The last step of a contiguous row, of count elements from i (fewer than a step), for a formula that calls exp or
  // log, whose scalar steps cost far more than a vector step (BCE of 111 floats: 1.21 -> 1.11 us, one thread; a cheap
  // formula's tail: rows_with_tails). Its loads take those lanes only (zeros past them), the formula runs on all lanes,
  // and the sink keeps the first count results. Not inlined, so that the formula's second copy stays out of the loops
  // (where GCC would stop inlining the vector math), and given a sink of its own, so that the row's sink's address
  // never escapes into the call (given the row's sink, BCE-with-logits of 96 floats, with no tail, took 1.20 us instead
  // of 1.14). Returns the domain errors.
  template <typename Sink>
  C10_NOINLINE int partial_step(const std::array<const char*, N>& in, const std::array<bool, N>& once, int64_t i,
                                int64_t count, Sink& sink) const {
    return masked_step(in, once, i, count, sink);
  }
  // The masked step itself: inlined into partial_step, and into the rows of rows_with_tails (a cheap formula), which
  // continue the row's own sink. Its step is vector_steps' loop body written again: shared through one inlined
  // helper, the loops' code changed and BCE 'mean' at 65536 took 2-3% longer.
  template <typename Sink>
  C10_ALWAYS_INLINE int masked_step(const std::array<const char*, N>& in, const std::array<bool, N>& once, int64_t i,
                                    int64_t count, Sink& sink) const {
    const Op f = op;
    std::array<Parts, N> args;
    for (int a = 0; a < N; ++a) {
      if (once[a]) {
        const acc_t v = in[a] == nullptr ? value[a] : acc_t(*reinterpret_cast<const scalar_t*>(in[a]));
        args[a].fill(Vectorized<acc_t>(v));
      } else {
        args[a] = IO::load(reinterpret_cast<const scalar_t*>(in[a]) + i, count);
      }
    }
    UnitIntervalCheck<acc_t> check;
    std::array<Parts, K> result;
    for (int p = 0; p < IO::kParts; ++p) {
      std::array<Vectorized<acc_t>, N> part;
      for (int a = 0; a < N; ++a) part[a] = args[a][p];
      if constexpr (ChecksUnitInterval<Op>::value) check.add(part[0], part[1]);  // zeros past count: in [0, 1]
      const auto r = call(f, part);
      for (int o = 0; o < K; ++o) result[o][p] = r.v[o];
    }
    sink.vec(i, result, count);
    if constexpr (ChecksUnitInterval<Op>::value) return check.result();
    return 0;
  }

  // What a segment's strides allow, the same for every row of a block, so decided once a block (as in torch's
  // 2-D loops): vector steps where every operand steps one element or (an argument) repeats one value, and no
  // per-argument test in them where every argument is a tensor stepping one element.
  struct Layout {
    std::array<bool, N> once;  // a constant, or a value repeated along the row: loaded once a row
    bool contiguous = true, dense = true;
  };
  Layout layout(const int64_t* strides, bool outputs_contiguous) const {
    Layout l;
    l.contiguous = outputs_contiguous;
    for (int a = 0; a < N; ++a) {
      const int t = tensor_of[a];
      l.once[a] = t < 0 || strides[t] == 0;
      l.contiguous &= l.once[a] || strides[t] == kSize;
      l.dense &= !l.once[a];
    }
    return l;
  }

  // How rows() ends a contiguous row past its vector steps: in scalar steps (and, for an exp or log formula, a
  // masked step), in a masked step (rows_with_tails), or not at all, its rows being whole steps (whole_step_rows).
  enum class RowEnd { kScalarSteps, kMaskedStep, kNone };

  // `count` rows of n elements each, of the given layout; data/strides are the iterator's (bytes), outputs
  // first, and `outer` the steps from one row to the next.
  template <RowEnd kEnd, typename MakeSink>
  int rows(char* const* data, const int64_t* strides, const int64_t* outer, int64_t n, int64_t count,
           const Layout& l, const MakeSink& make_sink) const {
    int errors = 0;
    // Each output's and argument's pointer, stride and step, indexed by output and argument (a constant's below),
    // never by operand: so the compiler keeps them in registers from row to row, and a segment's loop reads no
    // pointer just stored (a load that would wait for the store, at every segment).
    std::array<char*, K> out{};
    std::array<int64_t, K> out_next{};
    std::array<const char*, N> in{};
    std::array<int64_t, N> in_stride{}, in_next{};
    for (int o = 0; o < K; ++o) {  // over K, not first_input (0 summing): a loop of unknown count became memcpy
      if (o < first_input) out[o] = data[o], out_next[o] = outer[o];
    }
    // In float and double, a constant argument is read as a tensor stepping 0 over a copy of it here, so that the
    // scalar steps test no argument for being one, a test GCC kept in their loop (every other float of 65536 and a
    // number, one thread: `add` 42.6 -> 23.8 us, torch 27.8; `mul` 45.5 -> 25.0, torch 44.3).
    constexpr bool kSameType = std::is_same_v<acc_t, scalar_t>;
    std::array<scalar_t, N> constant{};
    for (int a = 0; a < N; ++a) {
      const int t = tensor_of[a];
      if (t >= 0) {
        in[a] = data[t], in_stride[a] = strides[t], in_next[a] = outer[t];
      } else if constexpr (kSameType) {
        constant[a] = value[a];
        in[a] = reinterpret_cast<const char*>(&constant[a]);
      }
    }
    const bool contiguous = l.contiguous, dense = l.dense;  // copies, in registers through the rows
    const std::array<bool, N> once = l.once;
    const Op f = op;
    for (int64_t r = 0; r < count; ++r) {
      auto sink = make_sink(out.data(), strides);
      int64_t i = 0;
      if constexpr (kEnd == RowEnd::kNone) {
        whole_steps(in, once, dense, n, sink, errors);
        i = n;  // and so no scalar steps below
      } else if (contiguous) {
        i = dense ? vector_steps<0>(in, once, n, sink, errors)
                  : vector_steps<kOnceAtRunTime>(in, once, n, sink, errors);
        if constexpr (kEnd == RowEnd::kMaskedStep) {
          if (i < n) {
            errors |= masked_step(in, once, i, n - i, sink);
            i = n;
          }
        } else if constexpr (ExpOrLog<Op>::value) {
          if (i < n) {  // the row's sink finished first: nothing of it is live across the call
            sink.finish();
            auto last = make_sink(out.data(), strides);
            errors |= partial_step(in, once, i, n - i, last);
            sink = last;  // holding the last step's results only, finished below
            i = n;
          }
        }
      }
      // The scalar steps: a row's tail, or a row with strided operands. Float and double run a copy without the
      // per-argument test (their constants read as tensors, above; a strided add_ of 65536 floats, one thread:
      // 31.6 -> 26 us, torch 25.6). Not half and bfloat16, whose conversions cost more than the test, and whose
      // copy slowed the rows of a column of 32 (5.4 -> 5.7 us). The test of i comes first, as an empty branch:
      // without it, or written as one block around the two calls, GCC laid out the rows otherwise, and rows of 16
      // beside a column took 6.9 us instead of 6.0.
      const auto scalar_steps = [&](auto tensors_only) {
        // A sum of a cheap formula over strided float rows, four elements a step: one running sum made each step
        // wait for the last (MSE 'mean' of every third column, 65536 floats: 37 -> 25 us, torch 28). Not for a
        // contiguous row's tail (MSE of rows of 99 sliced from 100 took 5% longer), nor for formulas with exp or
        // log, whose strided operands are gathered. Its arguments are read as the single steps' are, written
        // again: read through one lambda shared with them, the strided add_ and this sum went back to 32 and
        // 37 us (GCC's code for the scalar steps changed; not looked into further).
        if constexpr (SumsInFours<decltype(sink)>::value && !ExpOrLog<Op>::value &&
                      std::is_same_v<acc_t, scalar_t>) {
          static_assert(!ChecksUnitInterval<Op>::value, "the four steps skip the domain check");
          const auto at = [&](int64_t j) {
            std::array<acc_t, N> args;
            for (int a = 0; a < N; ++a) {
              args[a] = *reinterpret_cast<const scalar_t*>(in[a] + j * in_stride[a]);  // constants too (above)
            }
            return call(f, args);
          };
          for (; !contiguous && i + 3 < n; i += 4) sink.scalar_four(at(i), at(i + 1), at(i + 2), at(i + 3));
        }
        // Unrolled four times: a loop this short ran at 1.4 or 2.2 cycles an element by where it fell in its
        // 64-byte blocks (MSE 'none' of every other element, 65536 floats, one thread: 20 or 31 us, with the
        // same instructions); unrolled, 17.3-17.9 us wherever GCC aligns it (torch 22).
#pragma GCC unroll 4
        for (; i < n; ++i) {
          std::array<acc_t, N> args;
          for (int a = 0; a < N; ++a) {
            args[a] = !decltype(tensors_only)::value && in[a] == nullptr
                          ? value[a]
                          : acc_t(*reinterpret_cast<const scalar_t*>(in[a] + i * in_stride[a]));
          }
          if constexpr (ChecksUnitInterval<Op>::value) errors |= unit_interval_errors(args[0], args[1]);
          sink.scalar(i, call(f, args));
        }
      };
      if (i == n) {
      } else if (kSameType) {
        scalar_steps(std::true_type{});
      } else {
        scalar_steps(std::false_type{});
      }
      sink.finish();
      for (int o = 0; o < K; ++o) out[o] += out_next[o];
      for (int a = 0; a < N; ++a) in[a] += in_next[a];
    }
    return errors;
  }

  // A cheap formula's rows that end in a tail of at least kShortestMaskedTail elements. In half or bfloat16,
  // where each scalar step converts, any tail: a row of 48 bfloat16 elements sliced from rows of 64 (a vector
  // step of 32, then 16 scalar steps) took 28 us at 65536 elements, one thread (torch 10); ending in a masked
  // step inlined here, 7. In float and double, tails of 4 or more: float rows of 24 sliced from 32 12 -> 10 us
  // (torch 8), and per row of 64 + t sliced from 128, mul 12.1-12.7 -> 9.6-9.9 ns at t = 15, MSE 13.4 -> 8.1;
  // a tail of 1-3 costs less in scalar steps (MSE t = 1: 7.8 ns scalar, 8.2-8.4 masked). A second copy of the
  // rows, not inlined into loop2d, called only for blocks whose rows end in such a tail.
  static constexpr bool kMaskedTails = !ExpOrLog<Op>::value;
  static constexpr int64_t kShortestMaskedTail = c10::is_reduced_floating_point_v<scalar_t> ? 1 : 4;
  // Whether rows of n elements end in such a tail. Any tail written as `!= 0`: as `>= 1` (n % kStep could be
  // negative, for all GCC knows) or taken unsigned, GCC's code for the rows of half and bfloat16 changed, and rows
  // of 32 bfloat16 elements beside a column took 6.0-6.7 us instead of 5.5.
  static constexpr bool masked_tail(int64_t n) {
    return kShortestMaskedTail == 1 ? n % IO::kStep != 0 : n % IO::kStep >= kShortestMaskedTail;
  }
  template <typename MakeSink>
  C10_NOINLINE int rows_with_tails(char* const* data, const int64_t* strides, const int64_t* outer, int64_t n,
                                   int64_t count, const Layout& l, const MakeSink& make_sink) const {
    return rows<RowEnd::kMaskedStep>(data, strides, outer, n, count, l, make_sink);
  }

  // A cheap formula's contiguous rows of whole vector steps, several in a block (as (R, 16) * (R, 1)): a second
  // copy of the rows with no tail, and, for a binary formula, the argument repeated along each row (a column)
  // compiled into the steps, where rows() tests each argument at each row (about 35 instructions a row, 5 of
  // them taken jumps). (4096, 16) * (4096, 1) floats, one thread, three alternated processes: `mul` 10.7 -> 8.4 us,
  // `add` 11.6 -> 8.9, torch 6.9 and 8.6; (128, 32, 16) * (128, 1, 16), `mul` 14.2 -> 12.6, torch 10.6.
  static constexpr bool kWholeStepRows = !ExpOrLog<Op>::value;
  template <typename Sink>
  C10_ALWAYS_INLINE void whole_steps(const std::array<const char*, N>& in, const std::array<bool, N>& once,
                                     bool dense, int64_t n, Sink& sink, int& errors) const {
    if (dense) {
      vector_steps<0>(in, once, n, sink, errors);
      return;
    }
    if constexpr (N == 2) {
      if (!once[0]) {  // not dense: the second argument is repeated
        vector_steps<0b10>(in, once, n, sink, errors);
        return;
      }
      if (!once[1]) {
        vector_steps<0b01>(in, once, n, sink, errors);
        return;
      }
    }
    vector_steps<kOnceAtRunTime>(in, once, n, sink, errors);
  }
  template <typename MakeSink>
  C10_NOINLINE int whole_step_rows(char* const* data, const int64_t* strides, const int64_t* outer, int64_t n,
                                   int64_t count, const Layout& l, const MakeSink& make_sink) const {
    return rows<RowEnd::kNone>(data, strides, outer, n, count, l, make_sink);
  }

  // How a block of size1 rows of size0 elements runs: row by row where every row vectorizes and is long (or
  // alone), else as one flat run of size0 * size1 in segments of `chunk` elements, where every output continues
  // from row to row. Then each input continues, repeats one element, repeats its row (a broadcast row, as in
  // (R, C) * (C,), read from a tile, a buffer holding the row over and over), or is gathered into a buffer,
  // segment by segment (a transposed or strided operand, or a column repeated along short rows). Short rows,
  // and rows with a strided operand, then run in vector steps, where row by row they would run in scalar steps.
  // Only chunk is set for a block run row by row; the rest is filled where a block runs flat (plan_block).
  struct Plan {
    int64_t chunk = 0;                    // 0: row by row
    std::array<char*, 8> data;            // each operand's segment, from the first on
    std::array<int64_t, 8> strides;       // within a segment (for rows())
    std::array<int64_t, 8> step;          // from one segment to the next
    std::array<char*, 8> tile;            // a repeated row's tile
    std::array<bool, 8> gathered;
  };

  // Not inlined: it runs once a block, and out of the loops it leaves GCC's inlining of the formulas' vector
  // math in them as it was (where rows() had a second caller, BCE-with-logits' log1p_exp became a call: 20% slower).
  C10_NOINLINE void plan_block(char** base, const int64_t* strides, int64_t size0, int64_t size1, int ntensors,
                               Buffers& buffers, Plan& plan) const {
    const int64_t* outer = strides + ntensors;  // from one row to the next
    const int64_t n = size0 * size1;
    bool strided = false, repeated_row = false;
    for (int t = 0; t < ntensors; ++t) {
      strided |= strides[t] != kSize && (t < first_input || strides[t] != 0);
      repeated_row |= t >= first_input && size1 > 1 && strides[t] == kSize && outer[t] == 0;
    }
    // Flat where it is worth it: a repeated row in a tile (under a quarter of a buffer), except for a cheap
    // formula whose rows are whole vector steps, which runs them row by row unless they are one or two steps, at
    // least 256 of them: filling the tile (up to a buffer's elements a block) costs more than the rows it saves
    // (multiplied by a middle-dimension broadcast, 65536 floats, one thread: (128, 32, 16) * (128, 1, 16)
    // 18.5 -> 15.1 us, (64, 32, 32) 15.0 -> 11.1, torch 10.3 and 8.5; (4096, 16) * (16,) tiled 9.5, row by row
    // 10.7; an exp or log formula tiled alike, as its rows cost more); a strided operand
    // (rows() would run scalar steps only) for a formula whose scalar steps cost more than gathering: exp or log,
    // or any formula in half or bfloat16, whose scalar steps convert (bfloat16 add of every other element,
    // 65536, one thread: 72 -> 38 us, torch 51; a transposed operand whose rows lie 4096 bytes apart is the
    // exception, 2048^2: 13.5 -> 23 ms, torch 20); short rows, whose scalar steps and per-row cost exceed
    // gathering; rows of a few steps and a tail. But a cheap formula is not given a gathered copy for the last
    // two reasons alone: its sliced rows end in a masked step (rows_with_tails), cheaper than copying them (rows
    // of 24 floats sliced from 32, multiplied: 12 -> 15 us gathered; rows of 7 sliced from 8, 65536, one thread:
    // 33 us gathered, 22 row by row, torch 19), unless of at most 4, which gather_short_rows copies in a loop of
    // their length (rows of 2 multiplied: 23 us, torch 58; rows of 4 sliced from 8: 21 gathered, 49 row by row,
    // torch 44). (A strided float multiply gathered: twice as slow.)
    const bool short_rows = size1 > 1 && size0 < IO::kStep;
    const bool tail_rows = size1 > 1 && size0 % IO::kStep != 0 && size0 < 4 * IO::kStep;
    const bool exp_or_log = ExpOrLog<Op>::value;
    const bool tiled_row = repeated_row && size0 <= kBufferElements / 4 &&
                           (exp_or_log || size0 % IO::kStep != 0 || (size0 <= 2 * IO::kStep && size1 >= 256));
    const bool costly_scalar_steps = exp_or_log || c10::is_reduced_floating_point_v<scalar_t>;
    const bool gathered_short_rows = short_rows && (exp_or_log || size0 <= 4);
    const bool other_reason = tiled_row || (strided && costly_scalar_steps) || gathered_short_rows;
    const bool worth = other_reason || short_rows || tail_rows, copies_not_worth = !other_reason && !exp_or_log;
    if (n == 0 || !worth) return;
    plan.data.fill(nullptr), plan.strides.fill(0), plan.step.fill(0), plan.tile.fill(nullptr);
    plan.gathered.fill(false);
    bool tiled = false;
    for (int t = 0; t < ntensors; ++t) {
      const int64_t next_row = size1 == 1 ? size0 * strides[t] : outer[t];
      const bool continues = strides[t] == kSize && next_row == size0 * kSize;
      if (t < first_input && !continues) return;  // outputs are written in place
      plan.data[t] = base[t];
      plan.strides[t] = strides[t] == 0 && next_row == 0 ? 0 : kSize;
      if (continues || plan.strides[t] == 0) continue;
      scalar_t* buffer = buffers[t - first_input];
      if (strides[t] == kSize && next_row == 0 && size0 <= kBufferElements / 4) {
        const int64_t filled = std::min(kBufferElements, size0 + n);
        const auto* row = reinterpret_cast<const scalar_t*>(base[t]);
        std::copy(row, row + size0, buffer);  // the row, then copies of what is filled so far
        for (int64_t k = size0; k < filled; k += std::min(k, filled - k)) {
          std::copy(buffer, buffer + std::min(k, filled - k), buffer + k);
        }
        plan.tile[t] = reinterpret_cast<char*>(buffer);
        tiled = true;
      } else {
        if (copies_not_worth && strides[t] != 0) return;  // a copy for a cheap formula: not worth it
        plan.gathered[t] = true;
      }
      plan.data[t] = reinterpret_cast<char*>(buffer);
    }
    // From any offset below size0, a tile holds `chunk` elements of its row.
    plan.chunk = tiled ? (kBufferElements - size0) / IO::kStep * IO::kStep : kBufferElements;
    for (int t = 0; t < ntensors; ++t) {
      plan.step[t] = plan.tile[t] != nullptr ? plan.chunk % size0 * kSize
                     : plan.gathered[t]      ? 0
                                             : plan.strides[t] * plan.chunk;
    }
  }

  // Rows of at most four contiguous elements, `outer` bytes apart, from column i of the first: len elements into
  // buffer, each whole row copied element by element in a loop of its fixed length. Rows of 2 floats sliced from 4,
  // multiplied, 65536 elements, one thread: a vector store for each row (64 bytes written for 8, across two cache
  // lines) 169 us; element by element in the loop of longer rows, the row's length unknown there, 102-107; a loop
  // for each length, 23 (torch 58). (The strided copy's unrolled loop: 150.)
  static void gather_short_rows(scalar_t* buffer, const char* row, int64_t outer, int64_t size0, int64_t i,
                                int64_t len) {
    int64_t k = 0;
    const auto copy = [&](int64_t from, int64_t m) {
      for (int64_t c = 0; c < m; ++c) buffer[k + c] = reinterpret_cast<const scalar_t*>(row)[from + c];
      k += m;
    };
    if (i != 0) {
      copy(i, std::min(size0 - i, len));
      row += outer;
    }
    const auto whole_rows = [&](auto width) {
      constexpr int64_t kWidth = decltype(width)::value;
      for (; k + kWidth <= len; k += kWidth, row += outer) {
        for (int64_t c = 0; c < kWidth; ++c) buffer[k + c] = reinterpret_cast<const scalar_t*>(row)[c];
      }
    };
    switch (size0) {
      case 1: whole_rows(std::integral_constant<int64_t, 1>{}); break;
      case 2: whole_rows(std::integral_constant<int64_t, 2>{}); break;
      case 3: whole_rows(std::integral_constant<int64_t, 3>{}); break;
      default: whole_rows(std::integral_constant<int64_t, 4>{}); break;
    }
    copy(0, len - k);  // the segment's last row, begun
  }

  // Gathers elements [e, e + len) of the block's gathered inputs into their buffers; kShortRows where rows have
  // at most four elements (a second copy: its test in the one copy made rows of 7 bfloat16 elements, gathered for
  // sigmoid, 40 -> 48 us at 65536, one thread).
  template <bool kShortRows>
  C10_NOINLINE void gather(char** base, const int64_t* strides, int64_t size0, int ntensors, const Plan& plan,
                           int64_t e, int64_t len) const {
    for (int t = first_input; t < ntensors; ++t) {
      if (!plan.gathered[t]) continue;
      const int64_t inner = strides[t], outer = strides[ntensors + t];
      auto* buffer = reinterpret_cast<scalar_t*>(plan.data[t]);
      int64_t j = e / size0, i = e - j * size0;  // row and column of element e
      if (kShortRows && inner == kSize) {
        gather_short_rows(buffer, base[t] + j * outer, outer, size0, i, len);
        continue;
      }
      for (int64_t k = 0; k < len; ++j, i = 0) {
        const char* row = base[t] + j * outer;
        const int64_t m = std::min(size0 - i, len - k);  // the rest of the row, or of the segment
        if (inner == 0) {  // a column: the row's value, m times, in vector stores (past m: into the slack)
          const Vectorized<scalar_t> v(*reinterpret_cast<const scalar_t*>(row));
          for (int64_t c = 0; c < m; c += Vectorized<scalar_t>::size()) v.store(buffer + k + c);
        } else if (inner == kSize && m <= 4) {  // a row's first or last part in a segment, element by element
          const auto* from = reinterpret_cast<const scalar_t*>(row) + i;
          for (int64_t c = 0; c < m; ++c) buffer[k + c] = from[c];
        } else if (inner == kSize) {  // rows apart, each contiguous: copied in vectors, the last one masked
          using V = Vectorized<scalar_t>;
          const auto* from = reinterpret_cast<const scalar_t*>(row) + i;
          int64_t c = 0;
          for (; c + V::size() <= m; c += V::size()) V::loadu(from + c).store(buffer + k + c);
          if (c < m) V::loadu(from + c, m - c).store(buffer + k + c);  // past m: into the slack
        } else {  // unrolled as the scalar steps are (sigmoid of every other float, 65536: 31.8 -> 26.5 us)
#pragma GCC unroll 4
          for (int64_t c = 0; c < m; ++c) buffer[k + c] = *reinterpret_cast<const scalar_t*>(row + (i + c) * inner);
        }
        k += m;
      }
    }
  }

  // Adapts rows() to TensorIterator's 2-D loop: size1 rows of size0 elements, run in one call of rows(), or as
  // one flat run (plan_block) in segments, each a call of one row. A cheap formula calls whole_step_rows instead
  // for contiguous rows of whole vector steps, and rows_with_tails for rows that end in a tail worth a masked step.
  template <typename MakeSink>
  auto loop2d(int ntensors, std::atomic<int>& errors, MakeSink make_sink) const {
    return [this, ntensors, make_sink, &errors](char** base, const int64_t* strides, int64_t size0,
                                                int64_t size1) {
      Buffers buffers;
      Plan plan;
      plan_block(base, strides, size0, size1, ntensors, buffers, plan);
      const bool flat = plan.chunk > 0;
      // In a flat run, each operand's segment, its stride within and its step to the next: locals, which no store
      // can alias (the plan's escape into the calls), so that rows()' loops keep them in registers. Copied whole:
      // copied element by element, for each of the iterator's operands, they became three calls of memcpy a block
      // (the iterator's own arrays too, for a block run row by row: `mul` of (128, 32, 16) by (128, 1, 16), 128
      // blocks, 12.2-12.9 -> 11.1-11.7 us, torch 10.1-10.5).
      std::array<char*, 8> data;
      std::array<int64_t, 8> inner, step;
      if (flat) data = plan.data, inner = plan.strides, step = plan.step;
      char** segment = flat ? data.data() : base;
      const int64_t* within = flat ? inner.data() : strides;
      const int64_t length = flat ? plan.chunk : size0 * size1, n = size0 * size1, row_bytes = size0 * kSize;
      const Layout l = layout(within, make_sink(segment, within).contiguous(within));
      int local = 0;
      for (int64_t e = 0; e < n; e += length) {
        const int64_t len = std::min(length, n - e);
        if (flat && size0 <= 4) {
          gather<true>(base, strides, size0, ntensors, plan, e, len);
        } else if (flat) {
          gather<false>(base, strides, size0, ntensors, plan, e, len);
        }
        if (kWholeStepRows && !flat && size1 > 1 && l.contiguous && size0 % IO::kStep == 0) {
          local |= whole_step_rows(segment, within, strides + ntensors, size0, size1, l, make_sink);
        } else if (kMaskedTails && l.contiguous && masked_tail(flat ? len : size0)) {
          local |= rows_with_tails(segment, within, strides + ntensors, flat ? len : size0, flat ? 1 : size1, l,
                                   make_sink);
        } else {
          local |= rows<RowEnd::kScalarSteps>(segment, within, strides + ntensors, flat ? len : size0,
                                              flat ? 1 : size1, l, make_sink);
        }
        for (int t = 0; t < ntensors && flat; ++t) {  // a tile's offset wraps at its row's end
          data[t] += step[t];
          if (plan.tile[t] != nullptr && data[t] >= plan.tile[t] + row_bytes) data[t] -= row_bytes;
        }
      }
      if (local) errors.fetch_or(local);
    };
  }
};

// Stores the K results of each element into the K outputs (the iterator's first operands). The pointers are
// kept by value: a store may alias anything read through a pointer, which the loop would then read again.
template <typename scalar_t, int K>
struct StoreSink {
  using Parts = typename VecIO<scalar_t>::Parts;
  std::array<char*, K> out;
  std::array<int64_t, K> stride;
  bool stream;  // non-temporal vector stores (every output aligned to the vector size)
  bool contiguous(const int64_t*) const {
    bool dense = true;
    for (int o = 0; o < K; ++o) dense &= stride[o] == sizeof(scalar_t);
    return dense;
  }
  void vec(int64_t i, const std::array<Parts, K>& r) {
    for (int o = 0; o < K; ++o) {
      scalar_t* p = reinterpret_cast<scalar_t*>(out[o]) + i;
      stream ? VecIO<scalar_t>::stream(p, r[o]) : VecIO<scalar_t>::store(p, r[o]);
    }
  }
  void vec(int64_t i, const std::array<Parts, K>& r, int64_t count) {
    for (int o = 0; o < K; ++o) VecIO<scalar_t>::store(reinterpret_cast<scalar_t*>(out[o]) + i, r[o], count);
  }
  void scalar(int64_t i, const Results<at::opmath_type<scalar_t>, K>& r) {
    for (int o = 0; o < K; ++o) *reinterpret_cast<scalar_t*>(out[o] + i * stride[o]) = static_cast<scalar_t>(r.v[o]);
  }
  void finish() {}
};

// Sums the results of a block: vector results into opmath lanes, or (kExact) into double lanes, one per
// opmath lane, which cannot overflow or lose small terms before the result does; scalar results (a row's
// tail, and whole rows of strided operands) into a double, so that a long strided row stays accurate.
template <typename scalar_t, bool kExact>
struct SumSink {
  using acc_t = at::opmath_type<scalar_t>;
  using Parts = typename VecIO<scalar_t>::Parts;
  static constexpr int kLanes = Vectorized<acc_t>::size();
  using Lanes = std::conditional_t<kExact, std::array<double, kLanes * VecIO<scalar_t>::kParts>, Parts>;
  Lanes* lanes;
  double* tail;
  // A row's sums, added to *lanes by finish(): kept in registers through the row, where sums through the
  // pointer were stored and loaded again at every step (bfloat16 BCE-with-logits 'mean' 4.8 -> 4.1 ns for 16
  // elements, one thread in cache). Zeros: value-initialized.
  Lanes row_lanes{};
  bool contiguous(const int64_t*) const { return true; }
  void vec(int64_t, const std::array<Parts, 1>& results) {
    const Parts& r = results[0];
    for (size_t p = 0; p < r.size(); ++p) {
      if constexpr (kExact) {
        __at_align__ acc_t v[kLanes];
        r[p].store(v);
        for (int k = 0; k < kLanes; ++k) row_lanes[p * kLanes + k] += v[k];
      } else {
        row_lanes[p] += r[p];
      }
    }
  }
  // The first `count` lanes only (lanes of the parts in order).
  void vec(int64_t i, const std::array<Parts, 1>& results, int64_t count) {
    std::array<Parts, 1> kept;
    for (int p = 0; p < VecIO<scalar_t>::kParts; ++p) {
      const int64_t lanes = std::clamp<int64_t>(count - p * kLanes, 0, kLanes);
      kept[0][p] = Vectorized<acc_t>::set(Vectorized<acc_t>(0), results[0][p], lanes);
    }
    vec(i, kept);
  }
  void scalar(int64_t, const Results<acc_t, 1>& r) { *tail += r.v[0]; }
  void scalar_four(const Results<acc_t, 1>& r, const Results<acc_t, 1>& s, const Results<acc_t, 1>& t,
                   const Results<acc_t, 1>& u) {
    *tail += (double(r.v[0]) + double(s.v[0])) + (double(t.v[0]) + double(u.v[0]));
  }
  void finish() {
    for (size_t k = 0; k < row_lanes.size(); ++k) (*lanes)[k] += row_lanes[k];
  }
};

// Sums result 0 as SumSink does and stores result 1 into the iterator's one output (LossAndGradOp: a loss and its
// input's gradient).
template <typename scalar_t, bool kExact>
struct SumStoreSink {
  using Parts = typename VecIO<scalar_t>::Parts;
  SumSink<scalar_t, kExact> sum;
  char* out;
  int64_t stride;
  bool contiguous(const int64_t*) const { return stride == sizeof(scalar_t); }
  void vec(int64_t i, const std::array<Parts, 2>& r) {
    sum.vec(i, {r[0]});
    VecIO<scalar_t>::store(reinterpret_cast<scalar_t*>(out) + i, r[1]);
  }
  void vec(int64_t i, const std::array<Parts, 2>& r, int64_t count) {
    sum.vec(i, {r[0]}, count);
    VecIO<scalar_t>::store(reinterpret_cast<scalar_t*>(out) + i, r[1], count);
  }
  void scalar(int64_t i, const Results<at::opmath_type<scalar_t>, 2>& r) {
    sum.scalar(i, {{r.v[0]}});
    *reinterpret_cast<scalar_t*>(out + i * stride) = static_cast<scalar_t>(r.v[1]);
  }
  void finish() { sum.finish(); }
};

constexpr int64_t kSumBlock = 8192;

// One block's sum: in opmath lanes (a block is short enough for them to stay accurate) or exactly.
template <typename scalar_t, bool kExact, typename Loop>
double block_sum(const at::TensorIteratorBase& iter, const Loop& loop, std::atomic<int>& errors, int64_t begin,
                 int64_t end) {
  using Sink = SumSink<scalar_t, kExact>;
  typename Sink::Lanes lanes;
  if constexpr (kExact) {
    lanes.fill(0.0);
  } else {
    lanes.fill(Vectorized<typename Sink::acc_t>(0));
  }
  double tail = 0;
  iter.serial_for_each(loop.loop2d(iter.ntensors(), errors,
                                   [&](char** out, const int64_t* strides) {
                                     if constexpr (Loop::K == 2) {  // LossAndGradOp: its gradient stored
                                       return SumStoreSink<scalar_t, kExact>{{&lanes, &tail}, out[0], strides[0]};
                                     } else {
                                       return Sink{&lanes, &tail};
                                     }
                                   }),
                       {begin, end});
  double total = tail;
  if constexpr (kExact) {
    for (double x : lanes) total += x;
  } else {
    for (const auto& v : lanes) {
      __at_align__ typename Sink::acc_t lane[Sink::kLanes];
      v.store(lane);
      for (auto x : lane) total += x;
    }
  }
  return total;
}

// The sum of a formula over the iteration: fixed blocks of kSumBlock elements (so the result does
// not depend on the thread count), each summed in opmath lanes, the blocks added in double. A block
// whose opmath sum is not finite is summed again in double: a float sum of huge finite terms then
// overflows only where the result does (torch's float sums may give inf where the mean is finite).
template <typename scalar_t, typename Loop>
double sum_blocks(const at::TensorIteratorBase& iter, const Loop& loop, std::atomic<int>& errors) {
  const int64_t numel = iter.numel();
  const int64_t blocks = (numel + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(blocks, 0.0);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = b * kSumBlock, end = std::min(numel, begin + kSumBlock);
      double total = block_sum<scalar_t, false>(iter, loop, errors, begin, end);
      if (!std::isfinite(total)) total = block_sum<scalar_t, true>(iter, loop, errors, begin, end);
      partial[b] = total;
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

// An elementwise formula's loop: its outputs stored (streamed past the last-level cache).
template <typename scalar_t, typename Op>
void elementwise_loop(at::TensorIteratorBase& iter, const Formula& f, const Op& op, std::atomic<int>& errors) {
  using Loop = RowLoop<scalar_t, Op>;
  const Loop loop(op, f, /*first_input=*/Loop::K);
  // Where the operands together are larger than the last-level cache, the outputs would be evicted
  // before anything reads them: outputs already mapped in are written with non-temporal stores, which
  // skip reading each line first (add of 2^22 floats, one thread: 2.24 -> 1.15 ms on one host; on another,
  // gains and losses within its neighbours' noise: benchmarks/NOTES.md). Smaller outputs stay cached. A
  // broadcast operand counts its own elements (a row of 1024 beside (4096, 1024): 4 KB, not 16 MB). An
  // output that shares memory with an input (in place) has each line read into the cache just before its
  // store: streamed, that line is then evicted and written back as well (`mul_` of 2^22 floats, two threads,
  // 1.6-2.0x torch's time streamed, 1.0-1.3x not).
  int64_t bytes = 0;
  for (int t = 0; t < iter.ntensors(); ++t) bytes += iter.tensor_base(t).numel() * iter.element_size(t);
  bool stream = kCanStream && bytes > l3_bytes();
  for (int o = 0; o < Loop::K && stream; ++o) {
    stream = mapped_in(iter.tensor_base(o));
    for (int t = Loop::K; t < iter.ntensors() && stream; ++t) {
      stream = !iter.tensor_base(o).is_alias_of(iter.tensor_base(t));
    }
  }
  constexpr size_t kVecBytes = sizeof(Vectorized<scalar_t>);
  auto rows = loop.loop2d(iter.ntensors(), errors, [stream](char** data, const int64_t* strides) {
    StoreSink<scalar_t, Loop::K> sink{{}, {}, stream};
    for (int o = 0; o < Loop::K; ++o) {
      sink.out[o] = data[o];
      sink.stride[o] = strides[o];
      sink.stream &= reinterpret_cast<uintptr_t>(data[o]) % kVecBytes == 0;
    }
    return sink;
  });
  iter.for_each([&](char** data, const int64_t* strides, int64_t size0, int64_t size1) {
    rows(data, strides, size0, size1);
    if (stream) store_fence();  // this thread's non-temporal stores are visible before the op returns
  });
}

}  // namespace

int elementwise(at::TensorIteratorBase& iter, const Formula& f) {
  std::atomic<int> errors{0};
  if (iter.numel() == 0) return 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, iter.dtype(0), "pyext_cpu_elementwise", [&] {
    visit_formula<at::opmath_type<scalar_t>>(f, [&](auto op) {
      if constexpr (SumsFirst<decltype(op)>::value) {
        TORCH_INTERNAL_ASSERT(false, "pyext: a loss with its gradient is summed, not mapped");
      } else {
        elementwise_loop<scalar_t>(iter, f, op, errors);
      }
    });
  });
  return errors.load();
}

int sum(at::TensorIteratorBase& iter, const Formula& f, const at::Tensor& out, double divisor) {
  std::atomic<int> errors{0};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "pyext_cpu_sum", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    double total = 0;
    visit_formula<acc_t>(f, [&](auto op) {
      using Op = decltype(op);
      if constexpr (IsLoss<Op>::value || SumsFirst<Op>::value) {
        // (a LossAndGradOp's gradient is the iterator's one output)
        const int first_input = SumsFirst<Op>::value ? 1 : 0;
        total = sum_blocks<scalar_t>(iter, RowLoop<scalar_t, Op>(op, f, first_input), errors);
      } else {
        TORCH_INTERNAL_ASSERT(false, "pyext: only loss formulas are summed");
      }
    });
    *out.data_ptr<scalar_t>() = static_cast<scalar_t>(total / divisor);
  });
  return errors.load();
}

void sgd_step(at::TensorList params, at::TensorList grads, at::TensorList buffers, const SgdArgs& args) {
  if (args.found_inf && args.found_inf->item<float>() != 0.0f) return;  // a skipped step changes nothing
  // One parallel pass over the elements of every tensor, as if they were laid end to end: each thread
  // gets an equal share of elements, whatever the mix of tensor sizes. start[t] is where tensor t begins.
  constexpr int64_t kSgdGrain = 16384;  // the fewest elements worth a thread of their own
  std::vector<int64_t> start(params.size() + 1, 0);
  for (size_t t = 0; t < params.size(); ++t) start[t + 1] = start[t] + params[t].numel();
  const bool has_buffer = !buffers.empty();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, params[0].scalar_type(), "pyext_cpu_sgd", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    using IO = VecIO<scalar_t>;
    using AV = Vectorized<acc_t>;
    const SgdStepOp<acc_t> op{static_cast<acc_t>(args.weight_decay), static_cast<acc_t>(args.momentum),
                              static_cast<acc_t>(args.dampening), args.nesterov, args.maximize, args.first_step};
    const acc_t lr = args.lr_tensor ? static_cast<acc_t>(args.lr_tensor->item<double>()) : static_cast<acc_t>(args.lr);
    const bool scaled = args.grad_scale.has_value();
    const acc_t scale = scaled ? static_cast<acc_t>(args.grad_scale->item<double>()) : acc_t(1);
    at::parallel_for(0, start.back(), kSgdGrain, [&](int64_t e0, int64_t e1) {
      // The first tensor that ends after e0, then each tensor's part of [e0, e1).
      size_t t = std::upper_bound(start.begin(), start.end(), e0) - start.begin() - 1;
      for (; t < params.size() && start[t] < e1; ++t) {
        scalar_t* p = params[t].data_ptr<scalar_t>();
        const scalar_t* g = grads[t].const_data_ptr<scalar_t>();
        scalar_t* b = has_buffer ? buffers[t].data_ptr<scalar_t>() : nullptr;
        const int64_t end = std::min(e1, start[t + 1]) - start[t];
        int64_t i = std::max(e0, start[t]) - start[t];
        for (; i + IO::kStep <= end; i += IO::kStep) {
          auto pv = IO::template load<kHalfVectorLoads>(p + i);
          auto gv = IO::template load<kHalfVectorLoads>(g + i);
          typename IO::Parts bv{};
          if (has_buffer && !args.first_step) bv = IO::template load<kHalfVectorLoads>(b + i);
          for (int k = 0; k < IO::kParts; ++k) {
            op(pv[k], scaled ? gv[k] / AV(scale) : gv[k], bv[k], AV(lr));
          }
          IO::store(p + i, pv);
          if (has_buffer) IO::store(b + i, bv);
        }
        for (; i < end; ++i) {
          acc_t pi = p[i], bi = has_buffer && !args.first_step ? acc_t(b[i]) : acc_t(0);
          op(pi, scaled ? acc_t(g[i]) / scale : acc_t(g[i]), bi, lr);
          p[i] = static_cast<scalar_t>(pi);
          if (has_buffer) b[i] = static_cast<scalar_t>(bi);
        }
      }
    });
  });
}

}  // namespace cpu
}  // namespace pyext
