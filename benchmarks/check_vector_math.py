"""The accuracy of pyext's float32 math against float64, over every float (or every stride-th), beside torch's.

The CPU loops use their own vector exp and log (csrc/cpu_kernels.cpp); this measures what reaches the user,
through the ops that use them:
  sigmoid(x)                         1 / (1 + e^-x), over every finite float;
  binary_cross_entropy(x, 1)         -ln x, over (e^-100, 1] (below it the loss is clamped at 100);
  binary_cross_entropy(x, 0)         -ln(1 - x), over [0, 1 - e^-100);
  binary_cross_entropy_with_logits(x, 1) = ln(1 + e^-x), over every finite float.
The error is |result - exact| in units in the last place of the float nearest the exact value, over the
results that are normal floats; reported at worst and on average, for pyext and for torch.

    python benchmarks/check_vector_math.py [--stride K] [--device cpu|cuda]
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


def ulp_errors(got: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """|got - exact| in ulps of the float nearest exact, for the results that are normal floats."""
    nearest = exact.float().abs()
    ulp = torch.nextafter(nearest, torch.tensor(math.inf, device=nearest.device)).double() - nearest.double()
    normal = (nearest >= torch.finfo(torch.float32).tiny) & torch.isfinite(nearest)
    return ((got.double() - exact).abs() / ulp)[normal]


def floats(stride: int, device: str):
    """Every stride-th float32 bit pattern, in chunks."""
    for start in range(-(2**31), 2**31, CHUNK * stride):
        stop = min(start + CHUNK * stride, 2**31)
        bits = torch.arange(start, stop, stride, dtype=torch.int64).to(torch.int32)
        yield bits.view(torch.float32).to(device)


def measure(name: str, stride: int = 1, device: str = "cpu") -> dict:
    """The ulp errors of one check over every stride-th float: worst and mean, for pyext and torch."""
    ours, theirs, exact, domain = CHECKS[name]
    result = {"count": 0, "pyext_max": 0.0, "torch_max": 0.0, "pyext_mean": 0.0, "torch_mean": 0.0}
    for x in floats(stride, device):
        x = x[domain(x)]
        if x.numel() == 0:
            continue
        ref = exact(x.double())
        for who, fn in (("pyext", ours), ("torch", theirs)):
            err = ulp_errors(fn(x), ref)  # one per normal result of ref: as many for both
            if err.numel():
                result[f"{who}_max"] = max(result[f"{who}_max"], err.max().item())
                result[f"{who}_mean"] += err.sum().item()
        result["count"] += err.numel()
    for who in ("pyext", "torch"):
        result[f"{who}_mean"] /= max(result["count"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stride", type=int, default=1, help="measure every stride-th float (1: all)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"{'function':32s} {'values':>12s} {'pyext max':>10s} {'torch max':>10s} "
          f"{'pyext mean':>11s} {'torch mean':>11s}   (ulp)")
    for name in CHECKS:
        r = measure(name, args.stride, args.device)
        print(f"{name:32s} {r['count']:12d} {r['pyext_max']:10.3f} {r['torch_max']:10.3f} "
              f"{r['pyext_mean']:11.4f} {r['torch_mean']:11.4f}")


if __name__ == "__main__":
    main()
