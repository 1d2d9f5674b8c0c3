// CUDA loops: every formula of csrc/formulas.h, over any layout the iterator plans.
//   flat: every tensor a contiguous run of n elements, or one value broadcast to all;
//   rows: two dimensions, rows anywhere (any byte stride, 0 for an operand repeated on every row),
//     each row a contiguous run or one value per row: (N, 1024) * (1024,), (N, 1) * (N, 1024), slices
//     of wider rows. A pack's row and column come from one 32-bit division by a magic multiply;
//   strided: any other layout, each element's offsets from the iterator's sizes and byte strides.
// flat and rows load and store 16-byte packs when every address and row stride allows. The flat kernel in
// packs is also compiled for each formula's common argument patterns (which arguments are tensors, which
// one value: formulas.h's kGradArg, kOptionalArgs), the others reading each argument's kind from the plan.
// Grid-stride loops with int64_t indices (tensors past 2^31 elements) on a Grid: torch's for the plain maps
// (128 threads a block, about 8 elements a thread), eight times as many blocks as fit on the GPU at once for
// the sums and BCE's forward (the occupancy of each kernel), math in opmath (float for
// half/bfloat16; for 16-bit elements the hardware's approximate exp2/log2, math16.cuh). Summing
// (loss 'mean'/'sum'): per-thread opmath sums, a block reduction to one partial per block, then one
// block adds the partials in double: deterministic for a given size. A loss beside its gradient (formulas.h's
// LossAndGradOp, for autograd) sums the loss and stores the gradient in the same pass; a loss backward into that
// gradient (Formula::kept_for_one) returns at once where its incoming gradient is 1.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "../csrc/kernels.h"
#include "common.cuh"
#include "math16.cuh"
#include "math_unit.cuh"

// Build-time knobs, timed against each other with tests/gpu_check.sh's VARIANTS (the figures behind each
// default: benchmarks/NOTES.md):
//   PYEXT_CUDA_MIN_BLOCKS: blocks each map kernel asks the compiler to fit on one SM (__launch_bounds__'s
//     second argument, which caps registers);
//   PYEXT_CUDA_WAVES: the grid of the sums and of BCE's forward, in GPU-fulls of blocks of kThreads (more blocks,
//     each fewer steps: 8 ran faster than 1 on an H200);
//   PYEXT_CUDA_MAP_THREADS, PYEXT_CUDA_ELEMS_PER_THREAD: the grid of every other map: blocks of MAP_THREADS
//     (default 128), as many as give each thread about ELEMS_PER_THREAD elements (default 8; N / 4 float packs,
//     N / 8 bfloat16 ones, at least one): torch's grid (2.14's CUDALoops.cuh), which brought float and bfloat16
//     add, mul and sigmoid to torch's time on an H200. BCE's forward (heavier math; slower on it in bfloat16)
//     and the sums (whose partials stay few) keep the grid in GPU-fulls. ELEMS_PER_THREAD=0 gives every map
//     that grid;
//   PYEXT_CUDA_BCE_ELEMS_PER_THREAD (default 0, the grid in GPU-fulls): BCE's forward ('none'; the sums keep
//     their grid) on the maps' grid with N elements a thread;
//   PYEXT_CUDA_ELEMS_AHEAD (default 0: one pack, the loop as the compiler unrolls it): every map kernel, sums
//     too, loads about M elements of each tensor argument before the math of any (M / 4 float packs, M / 8
//     16-bit ones, 1 to 4), in a loop that is not unrolled, or on the maps' grid in one step a thread (no loop).
//     Torch's kernels load all 8 elements of a thread, then compute, then store, with no loop; ours is a loop
//     that the compiler unrolls twice behind a trip count (a 32-bit division: about 25 instructions, a MUFU.RCP
//     among them, before the first load), and it cannot load the second pack before the first's store (the
//     output may be an input). With the maps' grid, ELEMS_AHEAD=8 is torch's shape (float BCE with
//     BCE_ELEMS_PER_THREAD=8: 48 registers, no spills);
//   PYEXT_CUDA_FAST16: 1 (default) for Math16's approximations with 16-bit elements, 0 for full precision;
//   PYEXT_CUDA_UNIT_MATH: 1 (default) for UnitIntervalMath's log and log1p in float BCE, 0 for logf and log1pf;
//   PYEXT_CUDA_BCE_REGISTERS: the registers a thread of a float BCE forward kernel may use (default 48, which
//     keeps 5 blocks of 256 threads on an SM; uncapped, ptxas takes 54-68 for no fewer instructions); 0: no cap.
//     At 48 ptxas issues the target's load only after the input's log math in both float BCE forward kernels
//     ('none' and the sum; sm_90 SASS), so each pack waits for memory twice, one load after the other; at 64
//     (55 registers for 'none', 48 for the sum) or uncapped the two loads are side by side, as in every other
//     kernel;
//   PYEXT_CUDA_DOMAIN_FLAG: BCE's domain check, read back by the host each call (a clear error) from mapped
//     pinned host memory (2, default: the wait only; faster on an H200) or from device memory (1: an
//     allocation, a memset, a copy and the wait); 0 for the device-side assertion only, as under CUDA graph
//     capture: a build to measure what the wait costs;
//   PYEXT_CUDA_SPECIALIZE: 1 (default) for flat kernels compiled for each formula's common argument patterns,
//     0 for one flat kernel that reads every argument's kind from the plan;
//   PYEXT_CUDA_SMALL_PARAMS: 1 for the strided layout's sizes and strides in the strided kernels' parameters
//     only (Dims); 0 (default) in every kernel's: about 910 bytes of parameters for two arguments, copied at
//     every launch, where torch's elementwise kernels take 32;
//   PYEXT_CUDA_LOSS_GRADIENT: 1 (default) for a reduced loss's gradient from its forward's pass (the summing
//     kernel storing it; autograd asks sums_beside_gradient()), 0 for a loss's forward and backward in two
//     passes, as before it: the same call's A/B, and the way back should it fail on a GPU.
#ifndef PYEXT_CUDA_MIN_BLOCKS
#define PYEXT_CUDA_MIN_BLOCKS 1
#endif
#ifndef PYEXT_CUDA_WAVES
#define PYEXT_CUDA_WAVES 8
#endif
#ifndef PYEXT_CUDA_MAP_THREADS
#define PYEXT_CUDA_MAP_THREADS 128
#endif
#ifndef PYEXT_CUDA_ELEMS_PER_THREAD
#define PYEXT_CUDA_ELEMS_PER_THREAD 8
#endif
#ifndef PYEXT_CUDA_BCE_ELEMS_PER_THREAD
#define PYEXT_CUDA_BCE_ELEMS_PER_THREAD 0
#endif
#ifndef PYEXT_CUDA_ELEMS_AHEAD
#define PYEXT_CUDA_ELEMS_AHEAD 0
#endif
#if PYEXT_CUDA_ELEMS_AHEAD > 0
#define PYEXT_CUDA_MAP_LOOP_UNROLL _Pragma("unroll 1")
#else
#define PYEXT_CUDA_MAP_LOOP_UNROLL
#endif
#ifndef PYEXT_CUDA_FAST16
#define PYEXT_CUDA_FAST16 1
#endif
#ifndef PYEXT_CUDA_UNIT_MATH
#define PYEXT_CUDA_UNIT_MATH 1
#endif
#ifndef PYEXT_CUDA_BCE_REGISTERS
#define PYEXT_CUDA_BCE_REGISTERS 48
#endif
#ifndef PYEXT_CUDA_DOMAIN_FLAG
#define PYEXT_CUDA_DOMAIN_FLAG 2
#endif
#ifndef PYEXT_CUDA_SPECIALIZE
#define PYEXT_CUDA_SPECIALIZE 1
#endif
#ifndef PYEXT_CUDA_SMALL_PARAMS
#define PYEXT_CUDA_SMALL_PARAMS 0
#endif
#ifndef PYEXT_CUDA_LOSS_GRADIENT
#define PYEXT_CUDA_LOSS_GRADIENT 1
#endif

namespace pyext {
namespace cuda {
namespace {

constexpr int kMaxDims = 25;  // more than at::TensorIterator leaves after coalescing

enum class Layout { kFlat, kRows, kStrided };

// Where a formula argument comes from: a host constant, one value for every element, one element
// per element, or (rows layout) one value per row.
enum ArgKind : int8_t { kConstant, kBroadcast, kTensor, kPerRow };

// A kernel's TENSORS parameter: bit k set when argument k is read element by element (kTensor), the others
// being one value (kConstant or kBroadcast), known when the kernel is compiled; or kKindsFromPlan, every
// kind read from the plan at run time. Known kinds leave out the per-element choice of source and the
// registers of packs never loaded: float32 BCE forward 60 -> 47 registers (sm_90; benchmarks/NOTES.md).
constexpr unsigned kKindsFromPlan = ~0u;

// Everything a kernel of N arguments and K results needs but the strided layout's dimensions. Byte strides;
// indices 0 to K - 1 of a stride array are the results' outputs' (summing, result 0 has none), index K + k argument
// k's.
template <typename scalar_t, int N, int K>
struct PlanBase {
  using acc_t = at::opmath_type<scalar_t>;
  char* out[K];
  const char* in[N];
  acc_t value[N];
  ArgKind kind[N];
  // Formula::kept_for_one: the incoming gradient's argument, whose one element each thread reads first, returning
  // where it is 1 (the outputs already hold the results); -1: none.
  int8_t unless_one = -1;
  // rows: packs per row, and each row's byte stride
  at::cuda::detail::IntDivider<uint32_t> packs_per_row;
  int64_t row_stride[K + N];
};
// The strided layout's sizes and strides, fastest dimension first: 0.8 KB for two arguments, which every kernel
// takes, or with PYEXT_CUDA_SMALL_PARAMS=1 the strided kernels only (DimsFor): the flat and rows kernels'
// parameters, copied at every launch, then about 110 bytes instead of 910 (torch's elementwise kernels take a
// few dozen).
template <int N, int K>
struct Dims {
  int ndim;
  int64_t sizes[kMaxDims];
  int64_t strides[kMaxDims][K + N];
};
struct NoDims {};
template <Layout L, int N, int K>
using DimsFor = std::conditional_t<L == Layout::kStrided || !PYEXT_CUDA_SMALL_PARAMS, Dims<N, K>, NoDims>;
// Everything a kernel of layout L needs, passed by value.
template <typename scalar_t, int N, int K, Layout L>
struct Plan : PlanBase<scalar_t, N, K> {
  DimsFor<L, N, K> dims;
};

// The math of a kernel's formulas: for 16-bit elements, whose results keep 8 or 11 bits, the hardware's
// approximations (math16.cuh; bfloat16's log without the series near 1); for float formulas whose arguments
// are checked to lie in [0, 1] (BCE), a log and log1p for that domain only (math_unit.cuh); else the
// full-precision functions.
template <typename scalar_t, typename Op>
using MathFor = std::conditional_t<
    sizeof(scalar_t) == 2 && PYEXT_CUDA_FAST16, std::conditional_t<std::is_same_v<scalar_t, at::BFloat16>, MathBf16, Math16>,
    std::conditional_t<std::is_same_v<scalar_t, float> && ChecksUnitInterval<Op>::value && PYEXT_CUDA_UNIT_MATH,
                       UnitIntervalMath, Math<at::opmath_type<scalar_t>>>>;

// A map's grid (the knobs above): kPerThread for blocks of PYEXT_CUDA_MAP_THREADS, each thread about
// kElemsPerThread elements; else blocks of kThreads, PYEXT_CUDA_WAVES GPU-fulls of them. kPacksAhead: the packs
// of VEC elements of each argument a thread loads before the math of any (1 but under PYEXT_CUDA_ELEMS_AHEAD).
template <typename Op, bool kSum, int VEC = 1>
struct Grid {
  static constexpr bool kBce = ChecksUnitInterval<Op>::value && !kSum;  // BCE's forward, 'none'
  static constexpr int kElemsPerThread = kBce ? PYEXT_CUDA_BCE_ELEMS_PER_THREAD : PYEXT_CUDA_ELEMS_PER_THREAD;
  static constexpr bool kPerThread = !kSum && kElemsPerThread > 0;
  static constexpr int kBlock = kPerThread ? PYEXT_CUDA_MAP_THREADS : kThreads;  // a sum's is block_sum's
  static constexpr int kPacksAhead = std::min(std::max(PYEXT_CUDA_ELEMS_AHEAD / VEC, 1), 4);
  // On the maps' grid a thread has kPacksPerThread packs; loading at least as many ahead, one step does them all
  // (no loop: launch_kernel sizes the grid for it).
  static constexpr int kPacksPerThread = std::max(kElemsPerThread / VEC, 1);
  static constexpr bool kOneStep = kPerThread && PYEXT_CUDA_ELEMS_AHEAD > 0 && kPacksAhead >= kPacksPerThread;
  static_assert(kBlock % 32 == 0 && kBlock <= 1024, "whole warps, at most 1024 threads a block");
};

// The blocks a map kernel asks ptxas to fit on one SM (__launch_bounds__, which caps registers):
// PYEXT_CUDA_MIN_BLOCKS, or for float BCE forward as many as PYEXT_CUDA_BCE_REGISTERS allow in the 64K
// registers of an SM (sm_70 to sm_90).
template <typename scalar_t, typename Op, bool kSum>
constexpr int min_blocks() {
  constexpr int registers = PYEXT_CUDA_BCE_REGISTERS;
  if constexpr (std::is_same_v<scalar_t, float> && ChecksUnitInterval<Op>::value && registers > 0) {
    return std::max(PYEXT_CUDA_MIN_BLOCKS, 65536 / (std::max(registers, 1) * Grid<Op, kSum>::kBlock));
  } else {
    return PYEXT_CUDA_MIN_BLOCKS;
  }
}

template <typename M, typename Op, typename acc_t, int N, size_t... I>
__device__ __forceinline__ Results<acc_t, Outputs<Op>::value> call(const Op& op, const acc_t (&a)[N],
                                                                   std::index_sequence<I...>) {
  return as_results<Outputs<Op>::value>(op.template operator()<acc_t, M>(a[I]...));
}

template <typename acc_t>
__device__ __forceinline__ acc_t block_sum(acc_t v) {
  __shared__ acc_t warp_sums[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : acc_t(0);
  if (warp == 0) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  return v;  // valid in thread 0
}

// A pack's place: its row (0 in the flat layout) and the column of its first element.
struct Spot {
  int64_t row, col;
};

// One kernel for every layout, storing each of a formula's K results. VEC elements per pack (VEC > 1 only where
// every address allows 16-byte accesses); kSum: add result 0 into partial[blockIdx.x] instead of storing it (and
// store the others: a loss beside its gradient, SumsFirst);
// TENSORS: the arguments read element by element, or kKindsFromPlan. errors: BCE's two domain flags
// (DomainFlags), or null.
template <int VEC, Layout L, bool kSum, unsigned TENSORS, typename scalar_t, typename Op>
__global__ void __launch_bounds__((Grid<Op, kSum>::kBlock), (min_blocks<scalar_t, Op, kSum>()))
    map_kernel(const Plan<scalar_t, Op::arity, Outputs<Op>::value, L> p, const int64_t n, const Op op,
               at::opmath_type<scalar_t>* partial, int* errors) {
  using acc_t = at::opmath_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  constexpr int N = Op::arity;
  constexpr int K = Outputs<Op>::value;
  static_assert(K == 1 || !kSum || SumsFirst<Op>::value, "a sum has one result, or sums its first");
  constexpr int kFirstStored = kSum ? 1 : 0;  // the results stored: kFirstStored to K - 1
  constexpr auto seq = std::make_index_sequence<N>{};
  constexpr int64_t kSize = sizeof(scalar_t);
  static_assert(TENSORS == kKindsFromPlan || L == Layout::kFlat, "known kinds: the flat layout only");
  auto is_tensor = [&](int k) -> bool {
    if constexpr (TENSORS == kKindsFromPlan) {
      return p.kind[k] == kTensor;
    } else {
      return (TENSORS >> k) & 1u;
    }
  };

  if constexpr (!kSum) {
    if (p.unless_one >= 0 && acc_t(*reinterpret_cast<const scalar_t*>(p.in[p.unless_one])) == acc_t(1)) return;
  }
  acc_t fixed[N];  // constants, and broadcast values read once
#pragma unroll
  for (int k = 0; k < N; ++k) {
    fixed[k] = p.kind[k] == kBroadcast ? acc_t(*reinterpret_cast<const scalar_t*>(p.in[k])) : p.value[k];
  }
  // The domain check (ChecksUnitInterval): the largest key of arguments 0 and 1, turned into DomainError bits
  // once, at the thread's end. Elements outside the domain give unspecified values; the call raises.
  decltype(unit_interval_key(acc_t(0))) key0 = 0, key1 = 0;
  acc_t sum = 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;

  auto finish = [&](const acc_t (&a)[N]) -> Results<acc_t, K> {
    if constexpr (ChecksUnitInterval<Op>::value) {
      key0 = max(key0, unit_interval_key(a[0]));
      key1 = max(key1, unit_interval_key(a[1]));
    }
    return call<MathFor<scalar_t, Op>>(op, a, seq);
  };

  if constexpr (L == Layout::kStrided) {
    for (int64_t i = first; i < n; i += stride) {
      int64_t off[K + N] = {};
      int64_t rest = i;
      for (int d = 0; d < p.dims.ndim; ++d) {
        const int64_t idx = rest % p.dims.sizes[d];
        rest /= p.dims.sizes[d];
#pragma unroll
        for (int k = 0; k < K + N; ++k) off[k] += idx * p.dims.strides[d][k];
      }
      acc_t a[N];
#pragma unroll
      for (int k = 0; k < N; ++k) {
        a[k] = is_tensor(k) ? acc_t(*reinterpret_cast<const scalar_t*>(p.in[k] + off[K + k])) : fixed[k];
      }
      const Results<acc_t, K> r = finish(a);
      if constexpr (kSum) sum += r.v[0];
#pragma unroll
      for (int o = kFirstStored; o < K; ++o) {
        *reinterpret_cast<scalar_t*>(p.out[o] + off[o]) = static_cast<scalar_t>(r.v[o]);
      }
    }
  } else {
    // Pack i's place; then the byte offset of its first element in operand k (below K: an output).
    auto spot = [&](int64_t i) -> Spot {
      if constexpr (L == Layout::kRows) {  // the launcher keeps n, hence i, below 2^31
        const auto rc = p.packs_per_row.divmod(static_cast<uint32_t>(i));
        return {rc.div, static_cast<int64_t>(rc.mod) * VEC};
      } else {
        return {0, i * VEC};
      }
    };
    auto offset = [&](int k, const Spot& s) -> int64_t {
      if constexpr (L == Layout::kRows) {
        return s.row * p.row_stride[k] + s.col * kSize;
      } else {
        return s.col * kSize;
      }
    };
    const int64_t packs = n / VEC;  // rows: every row holds whole packs
    // Each step: U packs, stride apart, all loaded before the math of any (Grid::kPacksAhead).
    constexpr int U = Grid<Op, kSum, VEC>::kPacksAhead;
    PYEXT_CUDA_MAP_LOOP_UNROLL
    for (int64_t i0 = first; i0 < packs; i0 += U * stride) {
      Spot at[U];
      P loaded[U][N];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (u > 0 && i0 + u * stride >= packs) break;
        at[u] = spot(i0 + u * stride);
#pragma unroll
        for (int k = 0; k < N; ++k) {
          if (is_tensor(k)) {
            loaded[u][k] = *reinterpret_cast<const P*>(p.in[k] + offset(K + k, at[u]));
          } else if (L == Layout::kRows && p.kind[k] == kPerRow) {
            loaded[u][k].v[0] = *reinterpret_cast<const scalar_t*>(p.in[k] + at[u].row * p.row_stride[K + k]);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (u > 0 && i0 + u * stride >= packs) break;
        P result[K];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          acc_t a[N];
#pragma unroll
          for (int k = 0; k < N; ++k) {
            a[k] = is_tensor(k)                                 ? acc_t(loaded[u][k].v[j])
                   : L == Layout::kRows && p.kind[k] == kPerRow ? acc_t(loaded[u][k].v[0])
                                                                : fixed[k];
          }
          const Results<acc_t, K> r = finish(a);
          if constexpr (kSum) sum += r.v[0];
#pragma unroll
          for (int o = kFirstStored; o < K; ++o) result[o].v[j] = static_cast<scalar_t>(r.v[o]);
        }
#pragma unroll
        for (int o = kFirstStored; o < K; ++o) *reinterpret_cast<P*>(p.out[o] + offset(o, at[u])) = result[o];
      }
      if constexpr (Grid<Op, kSum, VEC>::kOneStep) break;
    }
    if constexpr (L == Layout::kFlat) {
      for (int64_t i = packs * VEC + first; i < n; i += stride) {  // the tail, fewer than VEC elements
        acc_t a[N];
#pragma unroll
        for (int k = 0; k < N; ++k) {
          a[k] = is_tensor(k) ? acc_t(reinterpret_cast<const scalar_t*>(p.in[k])[i]) : fixed[k];
        }
        const Results<acc_t, K> r = finish(a);
        if constexpr (kSum) sum += r.v[0];
#pragma unroll
        for (int o = kFirstStored; o < K; ++o) {
          reinterpret_cast<scalar_t*>(p.out[o])[i] = static_cast<scalar_t>(r.v[o]);
        }
      }
    }
  }
  if constexpr (kSum) {
    sum = block_sum(sum);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
  }
  if constexpr (ChecksUnitInterval<Op>::value) {
    const auto one = unit_interval_key(acc_t(1));
    const int err = (key0 <= one ? 0 : kArg0OutOfRange) | (key1 <= one ? 0 : kArg1OutOfRange);
    if (err) {
      // No flags while a CUDA graph is captured (the host cannot wait for them): the replay fails instead, as
      // torch's own BCE does.
      CUDA_KERNEL_ASSERT_MSG(errors, "pyext: binary_cross_entropy: an element of input or target outside [0, 1]");
      // one word per argument, set by plain stores: no atomics (the words may lie in host memory)
      if (err & kArg0OutOfRange) errors[0] = 1;
      if (err & kArg1OutOfRange) errors[1] = 1;
    }
  }
}

// out = (sum of the partials, in double) / divisor; one block.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    finish_sum_kernel(const acc_t* partial, int64_t count, double divisor, scalar_t* out) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < count; i += kThreads) s += static_cast<double>(partial[i]);
  s = block_sum(s);
  if (threadIdx.x == 0) *out = static_cast<scalar_t>(s / divisor);
}

int sm_count(int device) {
  static int cache[64] = {};
  if (device >= 64) device = 63;
  if (cache[device] == 0) {
    int v = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device));
    cache[device] = v;
  }
  return cache[device];
}

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus capture;
  C10_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  return capture != cudaStreamCaptureStatusNone;
}

// BCE's domain check: two words the kernel sets (input, target outside [0, 1]), which the host reads after it.
class DomainFlags {
 public:
  DomainFlags(int device, cudaStream_t stream) : stream_(stream) {
    if (PYEXT_CUDA_DOMAIN_FLAG == 2) {
      words_ = mapped(device);
      words_[0] = words_[1] = 0;  // this host thread's previous call has finished: it waited
    } else {
      owner_ = at::empty({2}, at::TensorOptions().dtype(at::kInt).device(at::kCUDA, device));
      words_ = owner_.data_ptr<int>();
      C10_CUDA_CHECK(cudaMemsetAsync(words_, 0, 2 * sizeof(int), stream));
    }
  }
  int* words() const { return words_; }
  // Waits for the kernel; DomainError bits.
  int read() const {
    int host[2];
    if (PYEXT_CUDA_DOMAIN_FLAG == 2) {
      C10_CUDA_CHECK(cudaStreamSynchronize(stream_));
      host[0] = static_cast<const volatile int*>(words_)[0];
      host[1] = static_cast<const volatile int*>(words_)[1];
    } else {
      C10_CUDA_CHECK(cudaMemcpyAsync(host, words_, sizeof(host), cudaMemcpyDeviceToHost, stream_));
      C10_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    return (host[0] ? kArg0OutOfRange : 0) | (host[1] ? kArg1OutOfRange : 0);
  }

 private:
  // Two words of mapped pinned host memory per device and host thread (whose calls wait one after another),
  // freed when the thread ends.
  static int* mapped(int device) {
    struct PerThread {
      int* words[64] = {};
      ~PerThread() {
        for (int* w : words) {
          if (w) (void)cudaFreeHost(w);
        }
      }
    };
    thread_local PerThread per_thread;
    int*& w = per_thread.words[std::min(device, 63)];
    if (!w) {
      C10_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&w), 2 * sizeof(int), cudaHostAllocMapped));
      void* on_device = nullptr;
      C10_CUDA_CHECK(cudaHostGetDevicePointer(&on_device, w, 0));
      TORCH_INTERNAL_ASSERT(on_device == w, "pyext: mapped host memory without unified addressing");
    }
    return w;
  }

  cudaStream_t stream_;
  at::Tensor owner_;
  int* words_ = nullptr;
};

// Launches one map kernel over n elements (then, summing, the kernel adding its partials) on its Grid: enough
// blocks for PYEXT_CUDA_ELEMS_PER_THREAD elements a thread, or as many as fit on the GPU at once (times
// PYEXT_CUDA_WAVES), fewer when the work is smaller. The blocks that fit on an SM follow from the kernel's
// registers: asked once, of the first GPU it runs on.
template <int VEC, Layout L, bool kSum, unsigned TENSORS, typename scalar_t, typename Op>
void launch_kernel(const PlanBase<scalar_t, Op::arity, Outputs<Op>::value>& base,
                   const Dims<Op::arity, Outputs<Op>::value>& dims, int64_t n, const Op& op, const at::Tensor* sum_out,
                   double divisor, int* errors, int device, cudaStream_t stream) {
  using acc_t = at::opmath_type<scalar_t>;
  using G = Grid<Op, kSum, VEC>;
  constexpr auto kernel = map_kernel<VEC, L, kSum, TENSORS, scalar_t, Op>;
  static const int resident = [] {
    int v = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&v, kernel, G::kBlock, 0));
    return std::max(v, 1);
  }();
  const int64_t units = n / VEC + n % VEC;  // packs, and the tail's elements
  constexpr int64_t kPerBlock = G::kBlock * (G::kPerThread ? G::kPacksPerThread : 1);
  const int64_t cap = G::kPerThread ? std::numeric_limits<int>::max()
                                    : static_cast<int64_t>(sm_count(device)) * resident * PYEXT_CUDA_WAVES;
  const int64_t wanted = (units + kPerBlock - 1) / kPerBlock;
  TORCH_INTERNAL_ASSERT(!G::kOneStep || wanted <= cap, "pyext: ", n, " elements need more blocks than a grid has");
  const int blocks = static_cast<int>(std::min<int64_t>(cap, wanted));
  at::Tensor partial;
  acc_t* partial_ptr = nullptr;
  if constexpr (kSum) {
    partial = at::empty({std::max(blocks, 1)},
                        at::TensorOptions().dtype(c10::CppTypeToScalarType<acc_t>::value).device(at::kCUDA, device));
    partial_ptr = partial.data_ptr<acc_t>();
  }
  if (blocks > 0) {
    Plan<scalar_t, Op::arity, Outputs<Op>::value, L> p{base, {}};
    if constexpr (!std::is_same_v<decltype(p.dims), NoDims>) p.dims = dims;
    kernel<<<blocks, G::kBlock, 0, stream>>>(p, n, op, partial_ptr, errors);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if constexpr (kSum) {
    finish_sum_kernel<<<1, kThreads, 0, stream>>>(partial_ptr, static_cast<int64_t>(blocks), divisor,
                                                  sum_out->data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

// Plans and launches one formula over the iteration: elementwise (sum_out undefined) or summed (result 0; a
// SumsFirst formula's other results stored into the iterator's outputs).
template <typename scalar_t, typename Op>
int launch_map(at::TensorIteratorBase& iter, const Formula& f, const Op& op, const at::Tensor* sum_out,
               double divisor) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int N = Op::arity;
  constexpr int K = Outputs<Op>::value;
  constexpr bool kSumsFirst = SumsFirst<Op>::value;
  constexpr bool kLoss = IsLoss<Op>::value || kSumsFirst;  // the summing kernels exist for the losses only
  constexpr int kVec = 16 / sizeof(scalar_t);
  constexpr int64_t kSize = sizeof(scalar_t);
  TORCH_INTERNAL_ASSERT(!sum_out || kLoss, "pyext: only loss formulas are summed");
  TORCH_INTERNAL_ASSERT(sum_out || !kSumsFirst, "pyext: a loss with its gradient is summed, not mapped");
  static_assert(kMaxDims == 25, "the message below names the limit");
  TORCH_CHECK(iter.ndim() <= kMaxDims, "pyext: iterations over more than 25 dimensions are not supported");

  const int ndim = iter.ndim();
  const int64_t n = iter.numel();
  const int first_stored = sum_out ? 1 : 0;  // results first_stored to K - 1 are stored
  const int outputs = K - first_stored;      // into the iterator's first operands
  const int first_input = outputs;
  // The operands' steps along the fastest dimension, and their row strides (second dimension).
  auto inner = [&](int t) -> int64_t { return ndim == 0 ? 0 : iter.strides(t)[0]; };
  auto outer = [&](int t) -> int64_t { return ndim < 2 ? 0 : iter.strides(t)[1]; };

  // Layout: flat or rows when every row is a contiguous run (or one value) of each operand.
  bool runs = ndim <= 2;
  for (int o = 0; o < outputs; ++o) runs &= n <= 1 || inner(o) == kSize;
  for (int t = first_input; t < iter.ntensors(); ++t) runs &= inner(t) == 0 || inner(t) == kSize;
  // a rows index fits the 32-bit division (and an empty iteration launches nothing)
  const bool small = n > 0 && n <= std::numeric_limits<int32_t>::max();
  const Layout layout = !runs ? Layout::kStrided : ndim <= 1 ? Layout::kFlat : small ? Layout::kRows
                                                                                     : Layout::kStrided;
  const int64_t cols = ndim == 0 ? 1 : iter.shape()[0];

  PlanBase<scalar_t, N, K> p{};
  Dims<N, K> dims{};
  dims.ndim = ndim;
  for (int d = 0; d < ndim; ++d) dims.sizes[d] = iter.shape()[d];
  // 16-byte packs: every address (and in rows, every row's start) 16-byte aligned.
  bool vectorizable = layout != Layout::kRows || cols % kVec == 0;
  for (int o = first_stored; o < K; ++o) {
    const int t = o - first_stored;
    p.out[o] = static_cast<char*>(iter.data_ptr(t));
    for (int d = 0; d < ndim; ++d) dims.strides[d][o] = iter.strides(t)[d];
    p.row_stride[o] = outer(t);
    vectorizable &= aligned16(p.out[o]) && p.row_stride[o] % 16 == 0;
  }
  int t = first_input;
  for (int k = 0; k < N; ++k) {
    if (f.is_const[k]) {
      p.kind[k] = kConstant;
      p.in[k] = nullptr;
      p.value[k] = static_cast<acc_t>(f.value[k]);
      continue;
    }
    p.in[k] = static_cast<const char*>(iter.data_ptr(t));
    for (int d = 0; d < ndim; ++d) dims.strides[d][K + k] = iter.strides(t)[d];
    p.row_stride[K + k] = outer(t);
    if (layout == Layout::kStrided || inner(t) != 0) {
      p.kind[k] = kTensor;
    } else {
      p.kind[k] = outer(t) == 0 ? kBroadcast : kPerRow;
    }
    if (p.kind[k] == kTensor) vectorizable &= aligned16(p.in[k]) && p.row_stride[K + k] % 16 == 0;
    ++t;
  }
  const bool vec = vectorizable && layout != Layout::kStrided;
  if (f.kept_for_one) {  // (the front-end has returned where the gradient is a constant)
    const int k = grad_arg_index(f);
    TORCH_INTERNAL_ASSERT(k >= 0 && p.kind[k] != kConstant, "pyext: kept_for_one without a gradient tensor");
    p.unless_one = static_cast<int8_t>(k);
  }
  if (layout == Layout::kRows) p.packs_per_row = at::cuda::detail::IntDivider<uint32_t>(cols / (vec ? kVec : 1));

  const int device = iter.device().index();
  const c10::cuda::CUDAGuard guard(iter.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device);
  // BCE's domain check: flags the host reads after the kernel; while a CUDA graph is captured, none (no waiting
  // then), and the kernel asserts.
  const bool check = ChecksUnitInterval<Op>::value && PYEXT_CUDA_DOMAIN_FLAG && !capturing(stream);
  std::optional<DomainFlags> flags;
  if (check) flags.emplace(device, stream);
  int* errors_ptr = check ? flags->words() : nullptr;

  // The arguments this call reads element by element, for the flat kernels compiled for known kinds.
  unsigned tensors = 0;
  for (int k = 0; k < N; ++k) tensors |= p.kind[k] == kTensor ? 1u << k : 0u;

  auto launch = [&](auto sum_tag) {
    constexpr bool kSumming = decltype(sum_tag)::value;
    using std::integral_constant;
    auto go = [&](auto vec_tag, auto layout_tag, auto tensors_tag) {
      launch_kernel<decltype(vec_tag)::value, decltype(layout_tag)::value, kSumming, decltype(tensors_tag)::value>(
          p, dims, n, op, sum_out, divisor, errors_ptr, device, stream);
    };
    using Flat = integral_constant<Layout, Layout::kFlat>;
    using Rows = integral_constant<Layout, Layout::kRows>;
    using Strided = integral_constant<Layout, Layout::kStrided>;
    using Packs = integral_constant<int, kVec>;
    using Single = integral_constant<int, 1>;
    using FromPlan = integral_constant<unsigned, kKindsFromPlan>;
    // Flat in packs with a common pattern of kinds: every argument a tensor but for the incoming gradient,
    // the optional weights, both or neither being one value (formulas.h); not for double, rarely hot.
    auto known = [&](auto uniform_tag) -> bool {
      constexpr unsigned kTensors = ((1u << N) - 1) & ~decltype(uniform_tag)::value;
      if (tensors != kTensors) return false;
      go(Packs{}, Flat{}, integral_constant<unsigned, kTensors>{});
      return true;
    };
    if constexpr (PYEXT_CUDA_SPECIALIZE && !std::is_same_v<scalar_t, double>) {
      constexpr unsigned kGrad = GradArg<Op>::value, kOptional = OptionalArgs<Op>::value;
      if (layout == Layout::kFlat && vec &&
          (known(integral_constant<unsigned, 0>{}) || known(integral_constant<unsigned, kGrad>{}) ||
           known(integral_constant<unsigned, kOptional>{}) ||
           known(integral_constant<unsigned, kGrad | kOptional>{}))) {
        return;
      }
    }
    switch (layout) {
      case Layout::kFlat: return vec ? go(Packs{}, Flat{}, FromPlan{}) : go(Single{}, Flat{}, FromPlan{});
      case Layout::kRows: return vec ? go(Packs{}, Rows{}, FromPlan{}) : go(Single{}, Rows{}, FromPlan{});
      case Layout::kStrided: return go(Single{}, Strided{}, FromPlan{});
    }
  };
  if constexpr (!kSumsFirst) {
    if (!sum_out) launch(std::false_type{});
  }
  if constexpr (kLoss) {
    if (sum_out) launch(std::true_type{});
  }
  return check ? flags->read() : 0;
}

int dispatch(at::TensorIteratorBase& iter, const Formula& f, const at::Tensor* sum_out, double divisor) {
  int errors = 0;
  const at::ScalarType dtype = sum_out ? sum_out->scalar_type() : iter.dtype(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "pyext_cuda_map", [&] {
    visit_formula<at::opmath_type<scalar_t>>(f, [&](auto op) {
      if constexpr (SumsFirst<decltype(op)>::value && !PYEXT_CUDA_LOSS_GRADIENT) {
        TORCH_CHECK(false, "pyext: this build's CUDA loops do not sum a loss beside its gradient "
                    "(PYEXT_CUDA_LOSS_GRADIENT=0)");
      } else {
        errors = launch_map<scalar_t>(iter, f, op, sum_out, divisor);
      }
    });
  });
  return errors;
}

}  // namespace

int elementwise(at::TensorIteratorBase& iter, const Formula& f) {
  if (iter.numel() == 0) return 0;
  return dispatch(iter, f, nullptr, 1.0);
}

int sum(at::TensorIteratorBase& iter, const Formula& f, const at::Tensor& out, double divisor) {
  return dispatch(iter, f, &out, divisor);
}

bool sums_beside_gradient() { return PYEXT_CUDA_LOSS_GRADIENT; }

}  // namespace cuda
}  // namespace pyext
