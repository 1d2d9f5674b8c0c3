"""Fits the polynomials of pyext's own float exp and log (csrc/avx512_math.h, csrc/log_polynomial.h).

After range reduction both are computed as f(r) = c0 + r + r^2 q(r): e^r = 1 + r + r^2 q(r) for
|r| <= ln2 / 2, and ln(1 + r) = r + r^2 q(r) for r in [-0.25, 0.5) (the mantissa m = 1 + r in [0.75, 1.5)).
This script fits q, of the degree given, for the smallest relative error of f: weighted least squares on
Chebyshev nodes, reweighted toward the equal-ripple (minimax) solution; the coefficients are rounded to
float, and the error of the rounded polynomial is measured in 40-digit arithmetic.

    python benchmarks/fit_polynomials.py exp 5
    python benchmarks/fit_polynomials.py log 8
"""
import argparse

import mpmath as mp
import numpy as np

mp.mp.dps = 40
HALF_LN2 = float(mp.log(2) / 2)

# name: (f, c0, interval)
FUNCTIONS = {
    "exp": (mp.exp, 1, (-HALF_LN2, HALF_LN2)),
    "log": (mp.log1p, 0, (-0.25, 0.5)),
}


def fit(name: str, degree: int, nodes: int = 3000, rounds: int = 40) -> list[np.float32]:
    f, c0, (a, b) = FUNCTIONS[name]
    r = np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes) * (b - a) / 2 * 1.0001 + (a + b) / 2
    r = r[np.abs(r) > 1e-6]
    rm = [mp.mpf(float(x)) for x in r]
    target = np.array([float((f(x) - c0 - x) / x**2) for x in rm])  # q(r) for an exact f
    weight = np.abs(np.array([float(x**2 / f(x)) for x in rm]))  # error of q -> relative error of f
    vander = np.vander(r, degree + 1, increasing=True)
    w = weight.copy()
    for _ in range(rounds):
        coef, *_ = np.linalg.lstsq(vander * w[:, None], target * w, rcond=None)
        err = np.abs((vander @ coef - target) * weight)
        w *= (err / err.max()) ** 0.3 + 1e-3  # weigh up where the error peaks
    return [np.float32(c) for c in coef]


def relative_error(name: str, coef: list[np.float32], samples: int = 6001) -> float:
    f, c0, (a, b) = FUNCTIONS[name]
    worst = mp.mpf(0)
    for x in np.linspace(a, b, samples):
        if abs(x) < 1e-9:
            continue
        x = mp.mpf(float(x))
        q = mp.mpf(0)
        for c in reversed(coef):
            q = q * x + mp.mpf(float(c))
        worst = max(worst, abs((c0 + x + x * x * q) / f(x) - 1))
    return float(worst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("function", choices=sorted(FUNCTIONS))
    parser.add_argument("degree", type=int, help="of q (exp: 5, log: 8 in the kernels)")
    args = parser.parse_args()
    coef = fit(args.function, args.degree)
    err = relative_error(args.function, coef)
    print(f"{args.function}: q of degree {args.degree}, lowest order first (float):")
    for c in coef:
        print(f"  {float(c)!r}f")
    print(f"largest relative error: {err:.3g} = 2^{np.log2(err):.1f}")


if __name__ == "__main__":
    main()
