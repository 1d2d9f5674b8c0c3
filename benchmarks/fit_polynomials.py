"""Fits the polynomials of pyext's own float exp, log and softplus (csrc/polynomials.h, csrc/softplus_table.h).

After range reduction both are computed as f(r) = c0 + r + r^2 q(r): e^r = 1 + r + r^2 q(r) for
|r| <= ln2 / 2, and ln(1 + r) = r + r^2 q(r) for r in [-0.25, 0.5) (the mantissa m = 1 + r in [0.75, 1.5)).
This script fits q, of the degree given, for the smallest relative error of f: weighted least squares on
Chebyshev nodes, reweighted toward the equal-ripple (minimax) solution; the coefficients are rounded to
float, and the error of the rounded polynomial is measured in 40-digit arithmetic.

    python benchmarks/fit_polynomials.py exp 5
    python benchmarks/fit_polynomials.py log 8

`softplus D` fits the table of avx512::log1p_exp (csrc/softplus_table.h): ln(1 + e^z) for z in [-15.5, 0] in
16 pieces, one per integer i = round(-z), each in u = z + i (exact) in [-1/2, 1/2]:
g(u) = ln(1 + e^(u - i)) = hi + (lo + u Q(u)), hi + lo the value at u = 0 in two floats, Q of degree D. Each Q
is fitted as above; its coefficients are rounded to float one at a time, lowest order first, the higher ones
refitted after each rounding to take up its error. It prints the header.

    python benchmarks/fit_polynomials.py softplus 6 > csrc/softplus_table.h
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


def chebyshev_nodes(a: float, b: float, nodes: int) -> np.ndarray:
    """Chebyshev nodes over [a, b] (a hair wider), without those at 0, where the fitted quotients are 0/0."""
    r = np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes) * (b - a) / 2 * 1.0001 + (a + b) / 2
    return r[np.abs(r) > 1e-6]


def reweighted_fit(vander: np.ndarray, target: np.ndarray, weight: np.ndarray, rounds: int,
                   fixed=0) -> np.ndarray:
    """The coefficients of vander's columns for target - fixed, least squares weighted by weight and
    reweighted toward the equal-ripple (minimax) solution."""
    w = weight.copy()
    for _ in range(rounds):
        coef, *_ = np.linalg.lstsq(vander * w[:, None], (target - fixed) * w, rcond=None)
        err = np.abs((vander @ coef + fixed - target) * weight)
        w *= (err / err.max()) ** 0.3 + 1e-3  # weigh up where the error peaks
    return coef


def horner(coef, x):
    """sum of coef[k] x^k in 40-digit arithmetic (coef rounded to float already)."""
    q = mp.mpf(0)
    for c in reversed(coef):
        q = q * x + mp.mpf(float(c))
    return q


def fit(name: str, degree: int, nodes: int = 3000, rounds: int = 40) -> list[np.float32]:
    f, c0, (a, b) = FUNCTIONS[name]
    r = chebyshev_nodes(a, b, nodes)
    rm = [mp.mpf(float(x)) for x in r]
    target = np.array([float((f(x) - c0 - x) / x**2) for x in rm])  # q(r) for an exact f
    weight = np.abs(np.array([float(x**2 / f(x)) for x in rm]))  # error of q -> relative error of f
    coef = reweighted_fit(np.vander(r, degree + 1, increasing=True), target, weight, rounds)
    return [np.float32(c) for c in coef]


def relative_error(name: str, coef: list[np.float32], samples: int = 6001) -> float:
    f, c0, (a, b) = FUNCTIONS[name]
    worst = mp.mpf(0)
    for x in np.linspace(a, b, samples):
        if abs(x) < 1e-9:
            continue
        x = mp.mpf(float(x))
        worst = max(worst, abs((c0 + x + x * x * horner(coef, x)) / f(x) - 1))
    return float(worst)


SOFTPLUS_PIECES = 16


def softplus_piece(i: int, degree: int, nodes: int = 1500, rounds: int = 30):
    """hi, lo and Q's float coefficients for piece i, and the largest relative error of hi + lo + u Q(u)."""
    g = lambda u: mp.log1p(mp.exp(u - i))  # noqa: E731
    a, b = (-0.5, 0.0) if i == 0 else (-0.5, 0.5)  # piece 0 holds z in [-1/2, 0] only
    u = chebyshev_nodes(a, b, nodes)
    um = [mp.mpf(float(x)) for x in u]
    g0 = g(mp.mpf(0))
    hi = np.float32(float(g0))
    lo = np.float32(float(g0 - mp.mpf(float(hi))))
    target = np.array([float((g(x) - g0) / x) for x in um])  # Q(u) for an exact g
    weight = np.abs(np.array([float(x / g(x)) for x in um]))  # error of Q -> relative error of g
    vander = np.vander(u, degree + 1, increasing=True)
    coef = []
    for k in range(degree + 1):  # round the coefficients one at a time, refitting the higher ones
        fixed = vander[:, :k] @ np.array([float(c) for c in coef]) if coef else 0
        coef.append(np.float32(reweighted_fit(vander[:, k:], target, weight, rounds, fixed)[0]))
    worst = mp.mpf(0)
    for x in np.linspace(a, b, 4001):
        x = mp.mpf(float(x))
        worst = max(worst, abs((mp.mpf(float(hi)) + mp.mpf(float(lo)) + x * horner(coef, x)) / g(x) - 1))
    return hi, lo, coef, float(worst)


def print_softplus_table(degree: int) -> None:
    pieces = [softplus_piece(i, degree) for i in range(SOFTPLUS_PIECES)]
    worst = max(p[3] for p in pieces)
    row = lambda values: ", ".join(f"{float(v)!r}f" for v in values)  # noqa: E731
    print(f"""// Generated by `python benchmarks/fit_polynomials.py softplus {degree}`: the table of avx512::log1p_exp
// (avx512_math.h). ln(1 + e^z) for z in [-15.5, 0] in {SOFTPLUS_PIECES} pieces, piece i = round(-z) in u = z + i (exact)
// in [-1/2, 1/2]: hi[i] + (lo[i] + u Q_i(u)), Q_i(u) = sum of q[k][i] u^k. Largest relative error of the float
// coefficients in exact arithmetic: {worst:.3g} = 2^{np.log2(worst):.1f}.
#pragma once

namespace pyext {{

constexpr int kSoftplusPieces = {SOFTPLUS_PIECES};
alignas(64) constexpr float kSoftplusHi[{SOFTPLUS_PIECES}] = {{{row(p[0] for p in pieces)}}};
alignas(64) constexpr float kSoftplusLo[{SOFTPLUS_PIECES}] = {{{row(p[1] for p in pieces)}}};
alignas(64) constexpr float kSoftplusQ[{degree + 1}][{SOFTPLUS_PIECES}] = {{""")
    for k in range(degree + 1):
        print(f"    {{{row(p[2][k] for p in pieces)}}},")
    print("};\n\n}  // namespace pyext")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("function", choices=sorted(FUNCTIONS) + ["softplus"])
    parser.add_argument("degree", type=int, help="of q (exp: 5, log: 8, softplus: 6 in the kernels)")
    args = parser.parse_args()
    if args.function == "softplus":
        return print_softplus_table(args.degree)
    coef = fit(args.function, args.degree)
    err = relative_error(args.function, coef)
    print(f"{args.function}: q of degree {args.degree}, lowest order first (float):")
    for c in coef:
        print(f"  {float(c)!r}f")
    print(f"largest relative error: {err:.3g} = 2^{np.log2(err):.1f}")


if __name__ == "__main__":
    main()
