"""The GPU's log for 16-bit elements (cuda/math16.cuh, Math16::log), emulated here in float64 with each float
rounding the GPU makes, for BCE's -ln x over every bfloat16 and float16 x in (e^-100, 1]: the worst error in
ulps of the element type and the share of results that are not the nearest value, with MUFU.LG2's error taken
at its bound, eps in {-2^-22, 0, +2^-22} (absolute, in log2 units). 'before': lg2 of x itself, with subnormals
scaled by 2^24 (what the compiler does for lg2.approx.f32), and the series near 1; 'now': lg2.approx.ftz of
x 2^8, then fma(L, ln2, -8 ln2), with the series near 1 for float16 (Math16) and without it for bfloat16
(MathBf16). A model of the hardware, not a measurement: the GPU's own figures come from check_vector_math.py
--device cuda --dtype ...

    python benchmarks/emulate_math16.py
"""
import numpy as np
import torch

LN2F = np.float64(np.float32(0.693147180559945309))
EPS = (-(2.0**-22), 0.0, 2.0**-22)


def f32(a):
    return np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)


def series(d):  # d + d^2 (-1/2 + d (1/3 - d/4)), each fma rounded once
    t = f32(np.float64(np.float32(1 / 3)) - 0.25 * d)
    t = f32(-0.5 + d * t)
    return f32(d + f32(d * d) * t)


def log_before(x, eps):
    subnormal = x < 2.0**-126
    lg = f32(np.log2(np.where(subnormal, x * 2.0**24, x)) + eps)
    lg = np.where(subnormal, f32(lg - 24), lg)
    d = f32(x - 1)
    return np.where(np.abs(d) < 0.03125, series(d), f32(LN2F * lg))


def log_now(x, eps, near_one_series=True):
    lg = f32(np.log2(x * 256.0) + eps)
    d = f32(x - 1)
    ln = f32(lg * LN2F - 8 * LN2F)
    return np.where(np.abs(d) < 0.03125, series(d), ln) if near_one_series else ln


def main() -> None:
    for dtype, mantissa in ((torch.bfloat16, 7), (torch.float16, 10)):
        every = torch.arange(0, 2**15, dtype=torch.int32).to(torch.int16).view(dtype).double().numpy()
        x = every[(every > np.exp(-100)) & (every <= 1)]
        exact = -np.log(x)
        nearest = torch.from_numpy(exact).to(dtype).double().numpy()
        ulp = np.ldexp(1.0, np.frexp(np.abs(nearest))[1] - 1 - mantissa)
        normal = nearest >= torch.finfo(dtype).tiny
        now = (lambda x, eps: log_now(x, eps, near_one_series=dtype == torch.float16))
        for name, log in (("before", log_before), ("now", now)):
            worst = not_nearest = 0.0
            for eps in EPS:
                loss = f32(-np.maximum(log(x, eps), -100.0))
                got = torch.from_numpy(loss).to(dtype).double().numpy()
                err = np.abs(got - exact)[normal] / ulp[normal]
                worst, not_nearest = max(worst, err.max()), max(not_nearest, (err > 0.5).mean())
            print(f"{str(dtype):15s} {name:6s} {normal.sum():6d} values: worst {worst:.4f} ulp, "
                  f"not nearest {not_nearest:.2e}")


if __name__ == "__main__":
    main()
