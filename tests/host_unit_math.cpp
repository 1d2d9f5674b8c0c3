// The GPU's float BCE loss (csrc/formulas.h's BceOp with cuda/math_unit.cuh's UnitIntervalMath, as the CUDA
// kernels run it for float) compiled for the host, so that tests/test_vector_math.py measures its accuracy on
// any machine: plain float arithmetic, the same results as on the GPU but for the formula's contractions
// into fused multiply-adds (none where the target is 0 or 1).
#include <cstdint>

#include "../csrc/formulas.h"
#include "../cuda/math_unit.cuh"

extern "C" void bce_unit_math(const float* x, const float* y, float* out, int64_t n) {
  const pyext::BceOp<float> op{};
  for (int64_t i = 0; i < n; ++i) {
    out[i] = op.template operator()<float, pyext::cuda::UnitIntervalMath>(x[i], y[i], 1.0f);
  }
}
