// CUDA loops: every formula of csrc/formulas.h, over any layout the iterator plans.
//   contiguous runs (each tensor contiguous or a broadcast scalar): 16-byte vector loads and stores
//     when every pointer is 16-byte aligned, one element at a time otherwise, scalar tail;
//   any other layout: each element's offsets from the iterator's sizes and byte strides.
// Grid-stride loops with int64_t indices (tensors past 2^31 elements), math in opmath (float for
// half/bfloat16). Summing (loss 'mean'/'sum'): per-thread opmath sums, a block reduction to one
// partial per block, then one block adds the partials in double: deterministic for a given size.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <utility>

#include "../csrc/kernels.h"
#include "common.cuh"

namespace pyext {
namespace cuda {
namespace {

constexpr int kBlocksPerSm = 8;  // 8 x 256 threads fill an SM of 2048
constexpr int kMaxDims = 25;     // more than at::TensorIterator leaves after coalescing

enum ArgKind : int8_t { kConstant, kBroadcast, kTensor };

// Everything a kernel needs, passed by value: where each formula argument comes from and the shape
// of the iteration (fastest dimension first, strides in bytes; index 0 is the output's).
template <typename scalar_t, int N>
struct Plan {
  using acc_t = at::opmath_type<scalar_t>;
  char* out;
  const char* in[N];
  acc_t value[N];
  ArgKind kind[N];
  int ndim;
  int64_t sizes[kMaxDims];
  int64_t strides[kMaxDims][N + 1];
};

template <typename Op, typename acc_t, int N, size_t... I>
__device__ __forceinline__ acc_t call(const Op& op, const acc_t (&a)[N], std::index_sequence<I...>) {
  return op(a[I]...);
}

template <typename acc_t>
__device__ __forceinline__ int unit_interval_errors(acc_t x, acc_t y) {
  return (!(x >= acc_t(0) && x <= acc_t(1)) ? kArg0OutOfRange : 0) |
         (!(y >= acc_t(0) && y <= acc_t(1)) ? kArg1OutOfRange : 0);
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

// One kernel for every path. VEC elements per step (VEC > 1 only for aligned contiguous runs);
// kStrided: offsets from sizes and strides; kSum: add results into partial[blockIdx.x] instead of
// storing them.
template <int VEC, bool kStrided, bool kSum, typename scalar_t, typename Op>
__global__ void __launch_bounds__(kThreads)
    map_kernel(const Plan<scalar_t, Op::arity> p, const int64_t n, const Op op,
               at::opmath_type<scalar_t>* partial, int* errors) {
  using acc_t = at::opmath_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  constexpr int N = Op::arity;
  constexpr auto seq = std::make_index_sequence<N>{};

  acc_t fixed[N];  // constants, and broadcast scalars read once
#pragma unroll
  for (int k = 0; k < N; ++k) {
    fixed[k] = p.kind[k] == kBroadcast ? acc_t(*reinterpret_cast<const scalar_t*>(p.in[k])) : p.value[k];
  }
  int err = 0;
  acc_t sum = 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;

  auto finish = [&](const acc_t (&a)[N]) -> acc_t {
    if constexpr (ChecksUnitInterval<Op>::value) err |= unit_interval_errors(a[0], a[1]);
    return call(op, a, seq);
  };

  if constexpr (kStrided) {
    for (int64_t i = first; i < n; i += stride) {
      int64_t off[N + 1] = {};
      int64_t rest = i;
      for (int d = 0; d < p.ndim; ++d) {
        const int64_t idx = rest % p.sizes[d];
        rest /= p.sizes[d];
#pragma unroll
        for (int k = 0; k <= N; ++k) off[k] += idx * p.strides[d][k];
      }
      acc_t a[N];
#pragma unroll
      for (int k = 0; k < N; ++k) {
        a[k] = p.kind[k] == kTensor ? acc_t(*reinterpret_cast<const scalar_t*>(p.in[k] + off[k + 1])) : fixed[k];
      }
      const acc_t r = finish(a);
      if constexpr (kSum) {
        sum += r;
      } else {
        *reinterpret_cast<scalar_t*>(p.out + off[0]) = static_cast<scalar_t>(r);
      }
    }
  } else {
    const int64_t packs = n / VEC;
    for (int64_t i = first; i < packs; i += stride) {
      P loaded[N];
#pragma unroll
      for (int k = 0; k < N; ++k) {
        if (p.kind[k] == kTensor) loaded[k] = reinterpret_cast<const P*>(p.in[k])[i];
      }
      P result;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        acc_t a[N];
#pragma unroll
        for (int k = 0; k < N; ++k) a[k] = p.kind[k] == kTensor ? acc_t(loaded[k].v[j]) : fixed[k];
        const acc_t r = finish(a);
        if constexpr (kSum) {
          sum += r;
        } else {
          result.v[j] = static_cast<scalar_t>(r);
        }
      }
      if constexpr (!kSum) reinterpret_cast<P*>(p.out)[i] = result;
    }
    for (int64_t i = packs * VEC + first; i < n; i += stride) {  // the tail, fewer than VEC elements
      acc_t a[N];
#pragma unroll
      for (int k = 0; k < N; ++k) {
        a[k] = p.kind[k] == kTensor ? acc_t(reinterpret_cast<const scalar_t*>(p.in[k])[i]) : fixed[k];
      }
      const acc_t r = finish(a);
      if constexpr (kSum) {
        sum += r;
      } else {
        reinterpret_cast<scalar_t*>(p.out)[i] = static_cast<scalar_t>(r);
      }
    }
  }
  if constexpr (kSum) {
    sum = block_sum(sum);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
  }
  if (err) atomicOr(errors, err);
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

// BCE's domain check needs the flag on the host: one 4-byte copy and a wait. Skipped while a CUDA
// graph is being captured (no synchronizing then); the values are still computed.
int read_errors(const int* errors, cudaStream_t stream) {
  cudaStreamCaptureStatus capture;
  C10_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) return 0;
  int host_errors = 0;
  C10_CUDA_CHECK(cudaMemcpyAsync(&host_errors, errors, sizeof(int), cudaMemcpyDeviceToHost, stream));
  C10_CUDA_CHECK(cudaStreamSynchronize(stream));
  return host_errors;
}

// Plans and launches one formula over the iteration: elementwise (sum_out undefined) or summed.
template <typename scalar_t, typename Op>
int launch_map(at::TensorIterator& iter, const Formula& f, const Op& op, const at::Tensor* sum_out,
               double divisor) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int N = Op::arity;
  constexpr bool kSum = IsLoss<Op>::value;  // the summing kernels exist for the losses only
  TORCH_INTERNAL_ASSERT(!sum_out || kSum, "pyext: only loss formulas are summed");
  static_assert(kMaxDims == 25, "the message below names the limit");
  TORCH_CHECK(iter.ndim() <= kMaxDims, "pyext: iterations over more than 25 dimensions are not supported");

  const int first_input = sum_out ? 0 : 1;
  Plan<scalar_t, N> p{};
  p.out = sum_out ? nullptr : static_cast<char*>(iter.data_ptr(0));
  p.ndim = iter.ndim();
  for (int d = 0; d < p.ndim; ++d) p.sizes[d] = iter.shape()[d];
  if (!sum_out) {
    for (int d = 0; d < p.ndim; ++d) p.strides[d][0] = iter.strides(0)[d];
  }
  // Contiguous: every tensor argument (and the output) steps one element, or is broadcast.
  bool contiguous = p.ndim <= 1 && (sum_out || p.ndim == 0 || iter.strides(0)[0] == sizeof(scalar_t));
  bool vectorizable = sum_out || aligned16(p.out);
  int next = first_input;
  for (int k = 0; k < N; ++k) {
    if (f.is_const[k]) {
      p.kind[k] = kConstant;
      p.in[k] = nullptr;
      p.value[k] = static_cast<acc_t>(f.value[k]);
      continue;
    }
    const int t = next++;
    p.in[k] = static_cast<const char*>(iter.data_ptr(t));
    for (int d = 0; d < p.ndim; ++d) p.strides[d][k + 1] = iter.strides(t)[d];
    const bool broadcast = p.ndim == 0 || iter.strides(t)[0] == 0;
    p.kind[k] = contiguous && broadcast ? kBroadcast : kTensor;
    contiguous &= broadcast || iter.strides(t)[0] == sizeof(scalar_t);
    vectorizable &= p.kind[k] != kTensor || aligned16(p.in[k]);
  }
  if (!contiguous) {
    for (int k = 0; k < N; ++k) p.kind[k] = f.is_const[k] ? kConstant : kTensor;
  }

  const int64_t n = iter.numel();
  constexpr int kVec = 16 / sizeof(scalar_t);
  const bool use_vec = contiguous && vectorizable;
  const int64_t units = use_vec ? n / kVec + n % kVec : n;
  const int device = iter.device().index();
  const int64_t max_blocks = static_cast<int64_t>(sm_count(device)) * kBlocksPerSm;
  const int blocks = static_cast<int>(std::min<int64_t>(max_blocks, (units + kThreads - 1) / kThreads));

  const c10::cuda::CUDAGuard guard(iter.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device);
  constexpr bool kCheck = ChecksUnitInterval<Op>::value;
  at::Tensor errors;
  if (kCheck) {
    errors = at::empty({1}, at::TensorOptions().dtype(at::kInt).device(iter.device()));
    C10_CUDA_CHECK(cudaMemsetAsync(errors.data_ptr<int>(), 0, sizeof(int), stream));
  }
  int* errors_ptr = kCheck ? errors.data_ptr<int>() : nullptr;
  at::Tensor partial;
  acc_t* partial_ptr = nullptr;
  if (sum_out) {
    partial = at::empty({std::max(blocks, 1)}, at::TensorOptions().dtype(c10::CppTypeToScalarType<acc_t>::value)
                                                   .device(iter.device()));
    partial_ptr = partial.data_ptr<acc_t>();
  }

  if (blocks > 0) {
    // Picks the path: aligned contiguous (16-byte packs), contiguous, or strided.
    auto launch = [&](auto sum_tag) {
      constexpr bool kSumming = decltype(sum_tag)::value;
      if (use_vec) {
        map_kernel<kVec, false, kSumming><<<blocks, kThreads, 0, stream>>>(p, n, op, partial_ptr, errors_ptr);
      } else if (contiguous) {
        map_kernel<1, false, kSumming><<<blocks, kThreads, 0, stream>>>(p, n, op, partial_ptr, errors_ptr);
      } else {
        map_kernel<1, true, kSumming><<<blocks, kThreads, 0, stream>>>(p, n, op, partial_ptr, errors_ptr);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (!sum_out) {
      launch(std::false_type{});
    } else if constexpr (kSum) {
      launch(std::true_type{});
    }
  }
  if (sum_out) {
    finish_sum_kernel<<<1, kThreads, 0, stream>>>(partial_ptr, static_cast<int64_t>(blocks), divisor,
                                                  sum_out->data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if constexpr (kCheck) {
    return read_errors(errors_ptr, stream);
  } else {
    return 0;
  }
}

int dispatch(at::TensorIterator& iter, const Formula& f, const at::Tensor* sum_out, double divisor) {
  int errors = 0;
  const at::ScalarType dtype = sum_out ? sum_out->scalar_type() : iter.dtype(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "pyext_cuda_map", [&] {
    visit_formula<at::opmath_type<scalar_t>>(f, [&](auto op) {
      errors = launch_map<scalar_t>(iter, f, op, sum_out, divisor);
    });
  });
  return errors;
}

}  // namespace

int elementwise(at::TensorIterator& iter, const Formula& f) {
  if (iter.numel() == 0) return 0;
  return dispatch(iter, f, nullptr, 1.0);
}

int sum(at::TensorIterator& iter, const Formula& f, const at::Tensor& out, double divisor) {
  return dispatch(iter, f, &out, divisor);
}

}  // namespace cuda
}  // namespace pyext
