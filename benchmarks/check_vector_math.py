"""The accuracy of pyext's math against float64, over every float (or every stride-th), beside torch's.

The CPU loops use their own vector exp and log (csrc/cpu_kernels.cpp), and the GPU's loops the hardware's
approximations for 16-bit elements (cuda/math16.cuh); this measures what reaches the user, through the ops
that use them:
  sigmoid(x)                         1 / (1 + e^-x), over every finite float;
  binary_cross_entropy(x, 1)         -ln x, over (e^-100, 1] (below it the loss is clamped at 100);
  binary_cross_entropy(x, 0)         -ln(1 - x), over [0, 1 - e^-100);
  binary_cross_entropy_with_logits(x, 1) = ln(1 + e^-x), over every finite float.
The error is |result - exact| in units in the last place (of the element type) of the value nearest the
exact one, over the results that are normal numbers; reported at worst and on average, and the share of
results that are not the nearest value to the exact one (error above half an ulp), for pyext and for torch.
float32 is measured over every stride-th float, bfloat16 and float16 over every value.

    python benchmarks/check_vector_math.py [--stride K] [--device cpu|cuda] [--dtype float32|bfloat16|float16]
"""
import argparse
import math

import torch
import torch.nn.functional as F

import pyext.ops as P

CHUNK = 1 << 24

# name: (pyext, torch, exact in float64, the inputs it is measured on)
CHECKS = {
    "sigmoid": (P.sigmoid, torch.sigmoid, torch.sigmoid, lambda x: torch.isfinite(x)),
    "-ln x (bce, y=1)": (
        lambda x: P.binary_cross_entropy(x, torch.ones_like(x), reduction="none"),
        lambda x: F.binary_cross_entropy(x, torch.ones_like(x), reduction="none"),
        lambda x: -torch.log(x),
        lambda x: (x > math.exp(-100)) & (x <= 1),
    ),
    "-ln(1-x) (bce, y=0)": (
        lambda x: P.binary_cross_entropy(x, torch.zeros_like(x), reduction="none"),
        lambda x: F.binary_cross_entropy(x, torch.zeros_like(x), reduction="none"),
        lambda x: -torch.log1p(-x),
        lambda x: (x >= 0) & (x < 1 - math.exp(-100)),
    ),
    "ln(1+e^-x) (bce logits, y=1)": (
        lambda x: P.binary_cross_entropy_with_logits(x, torch.ones_like(x), reduction="none"),
        lambda x: F.binary_cross_entropy_with_logits(x, torch.ones_like(x), reduction="none"),
        lambda x: torch.nn.functional.softplus(-x),
        lambda x: torch.isfinite(x),
    ),
}


BITS = {torch.float32: (torch.int32, 23), torch.bfloat16: (torch.int16, 7), torch.float16: (torch.int16, 10)}


def ulp_errors(got: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """|got - exact| in ulps of got's type at the value nearest exact, for the results that are normal numbers."""
    nearest = exact.to(got.dtype).double().abs()
    _, e = torch.frexp(nearest)  # nearest = m 2^e, m in [1/2, 1): its ulp is 2^(e - 1 - mantissa bits)
    ulp = torch.ldexp(torch.ones_like(nearest), e - 1 - BITS[got.dtype][1])
    normal = (nearest >= torch.finfo(got.dtype).tiny) & torch.isfinite(nearest)
    return ((got.double() - exact).abs() / ulp)[normal]


def values(dtype: torch.dtype, stride: int, device: str):
    """Every stride-th value of dtype (every value of a 16-bit type), in chunks, from their bit patterns."""
    int_type, _ = BITS[dtype]
    if int_type == torch.int16:
        stride = 1
    bits = torch.iinfo(int_type).bits
    for start in range(-(2 ** (bits - 1)), 2 ** (bits - 1), CHUNK * stride):
        stop = min(start + CHUNK * stride, 2 ** (bits - 1))
        pattern = torch.arange(start, stop, stride, dtype=torch.int64).to(int_type)
        yield pattern.view(dtype).to(device)


def measure(name: str, stride: int = 1, device: str = "cpu", dtype: torch.dtype = torch.float32, ours=None) -> dict:
    """The ulp errors of one check over every stride-th value of dtype: worst, mean and the share above half
    an ulp, for pyext (or for `ours`, a function in its place) and torch."""
    pyext_fn, theirs, exact, domain = CHECKS[name]
    ours = ours or pyext_fn
    result = {"count": 0}
    for who in ("pyext", "torch"):
        result.update({f"{who}_max": 0.0, f"{who}_mean": 0.0, f"{who}_not_nearest": 0.0})
    for x in values(dtype, stride, device):
        x = x[domain(x)]
        if x.numel() == 0:
            continue
        ref = exact(x.double())
        for who, fn in (("pyext", ours), ("torch", theirs)):
            err = ulp_errors(fn(x), ref)  # one per normal result of ref: as many for both
            if err.numel():
                result[f"{who}_max"] = max(result[f"{who}_max"], err.max().item())
                result[f"{who}_mean"] += err.sum().item()
                result[f"{who}_not_nearest"] += (err > 0.5).sum().item()
        result["count"] += err.numel()
    for who in ("pyext", "torch"):
        result[f"{who}_mean"] /= max(result["count"], 1)
        result[f"{who}_not_nearest"] /= max(result["count"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stride", type=int, default=1, help="measure every stride-th float (1: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"{args.dtype} on {args.device}: errors in ulps; 'not nearest': the share of results above half an ulp")
    print(f"{'function':32s} {'values':>12s} {'pyext max':>10s} {'torch max':>10s} "
          f"{'pyext mean':>11s} {'torch mean':>11s} {'pyext not nearest':>18s} {'torch not nearest':>18s}")
    for name in CHECKS:
        r = measure(name, args.stride, args.device, dtype)
        print(f"{name:32s} {r['count']:12d} {r['pyext_max']:10.3f} {r['torch_max']:10.3f} "
              f"{r['pyext_mean']:11.4f} {r['torch_mean']:11.4f} "
              f"{r['pyext_not_nearest']:18.2e} {r['torch_not_nearest']:18.2e}")


if __name__ == "__main__":
    main()
