"""A short demo of pyext's ops against torch's: python -m pyext.demo [--device cpu|cuda]

For each op: the largest difference from the native torch op on random data, forward and backward,
and the time of each (median of repeated calls). Exits non-zero if any op disagrees with torch.
"""
import argparse
import sys
import time

import torch
import torch.nn.functional as F

import pyext
import pyext.ops as P


def median_ms(fn, device, reps=25):
    fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    has_cuda = torch.cuda.is_available() and pyext.build_info()["cuda"]
    parser.add_argument("--device", default="cuda" if has_cuda else "cpu")
    parser.add_argument("--n", type=int, default=1 << 20, help="elements per tensor (a multiple of 1024)")
    args = parser.parse_args(argv)
    dev, n = args.device, args.n
    torch.manual_seed(0)
    x = torch.randn(n, device=dev, requires_grad=True)
    p = (torch.rand(n, device=dev) * 0.98 + 0.01).requires_grad_()
    y = torch.rand(n, device=dev)
    if n % 1024:
        parser.error("--n must be a multiple of 1024")
    rows, cols = x.view(-1, 1024), torch.randn(1024, device=dev)
    cases = [
        ("add(x, y, alpha=2)", lambda: P.add(x, y, alpha=2), lambda: torch.add(x, y, alpha=2), [x]),
        ("mul(rows, row)", lambda: P.mul(rows, cols), lambda: torch.mul(rows, cols), [x]),
        ("sigmoid(x)", lambda: P.sigmoid(x), lambda: torch.sigmoid(x), [x]),
        ("binary_cross_entropy", lambda: P.binary_cross_entropy(p, y), lambda: F.binary_cross_entropy(p, y), [p]),
        ("bce_with_logits", lambda: P.binary_cross_entropy_with_logits(x, y),
         lambda: F.binary_cross_entropy_with_logits(x, y), [x]),
        ("mse_loss", lambda: P.mse_loss(x, y), lambda: F.mse_loss(x, y), [x]),
    ]
    print(f"pyext {pyext.build_info()} on {dev}, {n} float32 elements")
    print(f"{'op':<22} {'max |fwd diff|':>14} {'max |grad diff|':>15} {'pyext ms':>9} {'torch ms':>9}")
    ok = True
    for name, ours, theirs, inputs in cases:
        out, ref = ours(), theirs()
        g = torch.randn_like(out)
        ga = torch.autograd.grad(out, inputs, g)[0]
        gb = torch.autograd.grad(ref, inputs, g)[0]
        fwd, bwd = (out - ref).abs().max().item(), (ga - gb).abs().max().item()
        close = torch.allclose(out, ref, rtol=1e-5, atol=1e-6) and torch.allclose(ga, gb, rtol=1e-5, atol=1e-6)
        ok &= close
        with torch.no_grad():
            t_ours, t_torch = median_ms(ours, dev), median_ms(theirs, dev)
        print(f"{name:<22} {fwd:>14.3g} {bwd:>15.3g} {t_ours:>9.3f} {t_torch:>9.3f}{'' if close else '  MISMATCH'}")
    # the tutorial's higher-order gradient: d^2(x^2)/dx^2 = 2
    t = torch.tensor(3.0, requires_grad=True)
    (d1,) = torch.autograd.grad(P.mul(t, t), t, create_graph=True)
    (d2,) = torch.autograd.grad(d1, t)
    print(f"d(x^2)/dx at 3 = {d1.item()}, d2(x^2)/dx2 = {d2.item()}")
    ok &= d1.item() == 6.0 and d2.item() == 2.0
    print("all ops agree with torch" if ok else "SOME OPS DISAGREE WITH TORCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
