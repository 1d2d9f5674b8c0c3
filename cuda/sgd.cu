// The SGD step on CUDA: torch.optim.SGD's rule (csrc/formulas.h, SgdStepOp) over lists of tensors.
// A multi-tensor apply in the design apex made known: the tensors of a group are cut into chunks of
// kChunk elements and one launch handles up to kMaxBlocks chunks from up to kMaxTensors tensors,
// their addresses passed by value in the kernel's arguments (CUDA 12.1+ allows 32 KB of them).
// One block per chunk, 16-byte vector loads when every address of the launch is aligned, math in
// opmath registers (float for half/bfloat16). grad_scale divides the gradients; a nonzero
// found_inf skips the step (parameters and buffers untouched), as torch's fused SGD does.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../csrc/kernels.h"
#include "common.cuh"

namespace pyext {
namespace cuda {
namespace {

constexpr int kMaxTensors = 192;
constexpr int kMaxBlocks = 768;
constexpr int64_t kChunk = 65536;

// The chunks of one launch: which tensor and which chunk of it each block updates.
struct ChunkList {
  void* param[kMaxTensors];
  const void* grad[kMaxTensors];
  void* buffer[kMaxTensors];  // null without momentum
  int64_t numel[kMaxTensors];
  int16_t block_tensor[kMaxBlocks];
  int32_t block_chunk[kMaxBlocks];
};
static_assert(sizeof(ChunkList) < 32000, "kernel arguments are limited to 32 KB");

template <typename scalar_t, int VEC>
__global__ void __launch_bounds__(kThreads)
    sgd_kernel(const ChunkList chunks, const SgdStepOp<at::opmath_type<scalar_t>> op,
               const at::opmath_type<scalar_t> lr_value, const float* lr_tensor, const float* grad_scale,
               const float* found_inf) {
  using acc_t = at::opmath_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  if (found_inf != nullptr && *found_inf != 0.0f) return;
  const int t = chunks.block_tensor[blockIdx.x];
  const int64_t begin = static_cast<int64_t>(chunks.block_chunk[blockIdx.x]) * kChunk;
  const int64_t end = min(chunks.numel[t], begin + kChunk);
  auto* p = static_cast<scalar_t*>(chunks.param[t]);
  const auto* g = static_cast<const scalar_t*>(chunks.grad[t]);
  auto* b = static_cast<scalar_t*>(chunks.buffer[t]);
  const acc_t lr = lr_tensor != nullptr ? static_cast<acc_t>(*lr_tensor) : lr_value;
  const acc_t scale = grad_scale != nullptr ? static_cast<acc_t>(*grad_scale) : acc_t(1);
  const bool read_buffer = b != nullptr && !op.first_step;

  // packs of VEC elements (begin is a multiple of kChunk, so packs stay aligned), then the tail
  const int64_t vec_end = begin + (end - begin) / VEC * VEC;
  for (int64_t i = begin + static_cast<int64_t>(threadIdx.x) * VEC; i < vec_end; i += kThreads * VEC) {
    P pv = *reinterpret_cast<const P*>(p + i);
    const P gv = *reinterpret_cast<const P*>(g + i);
    P bv;
    if (read_buffer) bv = *reinterpret_cast<const P*>(b + i);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      acc_t pj = pv.v[j], bj = read_buffer ? static_cast<acc_t>(bv.v[j]) : acc_t(0);
      const acc_t gj = grad_scale != nullptr ? static_cast<acc_t>(gv.v[j]) / scale : static_cast<acc_t>(gv.v[j]);
      op(pj, gj, bj, lr);
      pv.v[j] = static_cast<scalar_t>(pj);
      bv.v[j] = static_cast<scalar_t>(bj);
    }
    *reinterpret_cast<P*>(p + i) = pv;
    if (b != nullptr) *reinterpret_cast<P*>(b + i) = bv;
  }
  for (int64_t i = vec_end + threadIdx.x; i < end; i += kThreads) {
    acc_t pi = p[i], bi = read_buffer ? static_cast<acc_t>(b[i]) : acc_t(0);
    const acc_t gi = grad_scale != nullptr ? static_cast<acc_t>(g[i]) / scale : static_cast<acc_t>(g[i]);
    op(pi, gi, bi, lr);
    p[i] = static_cast<scalar_t>(pi);
    if (b != nullptr) b[i] = static_cast<scalar_t>(bi);
  }
}

const float* optional_ptr(const std::optional<at::Tensor>& t) {
  return t ? t->const_data_ptr<float>() : nullptr;
}

}  // namespace

void sgd_step(at::TensorList params, at::TensorList grads, at::TensorList buffers, const SgdArgs& args) {
  const c10::cuda::CUDAGuard guard(params[0].device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(params[0].device().index());
  const bool has_buffer = !buffers.empty();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, params[0].scalar_type(), "pyext_cuda_sgd", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kVec = 16 / sizeof(scalar_t);
    const SgdStepOp<acc_t> op{static_cast<acc_t>(args.weight_decay), static_cast<acc_t>(args.momentum),
                              static_cast<acc_t>(args.dampening), args.nesterov, args.maximize, args.first_step};
    const float* lr_tensor = optional_ptr(args.lr_tensor);
    const float* grad_scale = optional_ptr(args.grad_scale);
    const float* found_inf = optional_ptr(args.found_inf);

    ChunkList chunks;
    int tensors = 0, blocks = 0;
    bool aligned = true;
    auto launch = [&] {
      if (aligned) {
        sgd_kernel<scalar_t, kVec><<<blocks, kThreads, 0, stream>>>(chunks, op, static_cast<acc_t>(args.lr),
                                                                    lr_tensor, grad_scale, found_inf);
      } else {
        sgd_kernel<scalar_t, 1><<<blocks, kThreads, 0, stream>>>(chunks, op, static_cast<acc_t>(args.lr),
                                                                lr_tensor, grad_scale, found_inf);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    for (size_t i = 0; i < params.size(); ++i) {
      const int64_t n = params[i].numel();
      if (n == 0) continue;
      chunks.param[tensors] = params[i].data_ptr();
      chunks.grad[tensors] = grads[i].const_data_ptr();
      chunks.buffer[tensors] = has_buffer ? buffers[i].data_ptr() : nullptr;
      chunks.numel[tensors] = n;
      aligned &= aligned16(chunks.param[tensors]) && aligned16(chunks.grad[tensors]) &&
                 aligned16(chunks.buffer[tensors]);
      const int64_t count = (n + kChunk - 1) / kChunk;
      for (int64_t c = 0; c < count; ++c) {
        chunks.block_tensor[blocks] = static_cast<int16_t>(tensors);
        chunks.block_chunk[blocks] = static_cast<int32_t>(c);
        ++blocks;
        const bool last_chunk = c == count - 1;
        if (blocks == kMaxBlocks || (last_chunk && tensors + 1 == kMaxTensors)) {
          launch();
          blocks = 0;
          if (last_chunk) {
            tensors = -1;  // the next tensor starts a fresh list
            aligned = true;
          } else {  // this tensor has chunks left: it becomes the first entry of the next list
            chunks.param[0] = chunks.param[tensors];
            chunks.grad[0] = chunks.grad[tensors];
            chunks.buffer[0] = chunks.buffer[tensors];
            chunks.numel[0] = n;
            tensors = 0;
            aligned = aligned16(chunks.param[0]) && aligned16(chunks.grad[0]) && aligned16(chunks.buffer[0]);
          }
        }
      }
      ++tensors;
    }
    if (blocks > 0) launch();
  });
}

}  // namespace cuda
}  // namespace pyext
