"""Fits the polynomial of the CPU's vector exp (csrc/cpu_kernels.cpp, exp_avx512).

After range reduction, e^r for |r| <= ln2 / 2 is computed as 1 + r + r^2 q(r). This script fits q, of the
degree given (5 in the kernel), for the smallest relative error of e^r: weighted least squares on Chebyshev
nodes, reweighted toward the equal-ripple (minimax) solution, the coefficients rounded to float, and the
error of the rounded polynomial measured in 40-digit arithmetic.

    python benchmarks/fit_exp.py [degree]
"""
import argparse

import mpmath as mp
import numpy as np

mp.mp.dps = 40


def fit(degree: int, nodes: int = 2000, rounds: int = 30) -> list[np.float32]:
    h = float(mp.log(2) / 2) * 1.0001
    r = np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes) * h
    rm = [mp.mpf(float(x)) for x in r]
    target = np.array([float((mp.exp(x) - 1 - x) / x**2) for x in rm])  # q(r) for an exact e^r
    weight = np.array([float(x**2 / mp.exp(x)) for x in rm])  # error of q -> relative error of e^r
    vander = np.vander(r, degree + 1, increasing=True)
    w = weight.copy()
    for _ in range(rounds):
        coef, *_ = np.linalg.lstsq(vander * w[:, None], target * w, rcond=None)
        err = np.abs((vander @ coef - target) * weight)
        w *= (err / err.max()) ** 0.3 + 1e-3  # weigh up where the error peaks
    return [np.float32(c) for c in coef]


def relative_error(coef: list[np.float32], samples: int = 4001) -> float:
    h = float(mp.log(2) / 2)
    worst = mp.mpf(0)
    for x in np.linspace(-h, h, samples):
        x = mp.mpf(float(x))
        q = mp.mpf(0)
        for c in reversed(coef):
            q = q * x + mp.mpf(float(c))
        worst = max(worst, abs((1 + x + x * x * q) / mp.exp(x) - 1))
    return float(worst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("degree", type=int, nargs="?", default=5)
    args = parser.parse_args()
    coef = fit(args.degree)
    err = relative_error(coef)
    print(f"q of degree {args.degree}, lowest order first (float):")
    for c in coef:
        print(f"  {float(c)!r}f")
    print(f"largest relative error of 1 + r + r^2 q(r): {err:.3g} = 2^{np.log2(err):.1f}")


if __name__ == "__main__":
    main()
