"""Quick GPU benchmark (part of tests/gpu_check.sh): pyext against torch eager on the elementwise
ops and losses, with the fraction of the copy bandwidth measured in the same run.

Each size and dtype starts with torch's own copy of that many elements: its % of the large copy is the
ceiling a map of that size can reach (its tail included). Bytes moved (napkin math, n elements of
b bytes): unary and binary maps read each input once and write the output once (2nb for sigmoid, 3nb
for add/mul, 2nb + (n/1024)b for the broadcast row); a reduced loss reads its two inputs (2nb); BCE
forward+backward with 'mean' reads x, y and writes the gradient (3nb: the gradient from the forward's pass, as
csrc/autograd.cpp computes it; torch's eager two passes move 5nb). Timing: run.py's (CUDA events
around blocks of calls in a steady loop, after warm-up; the median), the inputs cycled among copies as run.py
cycles them.
"""
import argparse
import csv
import os
import statistics
import subprocess
from pathlib import Path

import torch
import torch.nn.functional as F

from run import copy_bandwidth, input_sets, measure  # noqa: E402 (benchmarks/ is this script's folder: on sys.path)
import pyext.ops as P

DEVICE = "cuda"  # (the tests run this script's code on the CPU, at small sizes)
COPY_ELEMENTS = 2**28  # the large copy: the hardware's limit
SGD_SIZES = [2**20] * 40 + [4096] * 400 + [7] * 100

def time_ms(fn, sets=1):
    """Median milliseconds per call of fn(i), i cycling over `sets` copies of the inputs: run.py's timing, a
    steady loop (its host launching ahead of the GPU)."""
    return statistics.median(measure(fn, DEVICE, sets, 0.05)) * 1e3


def cases(n, dtype):
    x = torch.randn(n, dtype=dtype, device=DEVICE)
    y = torch.rand(n, dtype=dtype, device=DEVICE)
    p = (torch.rand(n, device=DEVICE) * 0.98 + 0.01).to(dtype)
    rows = x.view(-1, 1024)
    row = torch.randn(1024, dtype=dtype, device=DEVICE)
    b = x.element_size()
    pg = p.detach().requires_grad_()

    def bce_fwd_bwd(fn):
        def run():
            loss = fn(pg, y)
            loss.backward()
            pg.grad = None
        return run

    return [
        ("add", 3 * n * b, lambda: P.add(x, y), lambda: torch.add(x, y)),
        ("mul_row_broadcast", 2 * n * b, lambda: P.mul(rows, row), lambda: torch.mul(rows, row)),
        ("sigmoid", 2 * n * b, lambda: P.sigmoid(x), lambda: torch.sigmoid(x)),
        ("bce_none", 3 * n * b, lambda: P.binary_cross_entropy(p, y, reduction="none"),
         lambda: F.binary_cross_entropy(p, y, reduction="none")),
        ("bce_mean", 2 * n * b, lambda: P.binary_cross_entropy(p, y), lambda: F.binary_cross_entropy(p, y)),
        ("bce_fwd_bwd", 3 * n * b, bce_fwd_bwd(P.binary_cross_entropy), bce_fwd_bwd(F.binary_cross_entropy)),
        ("bce_logits_mean", 2 * n * b, lambda: P.binary_cross_entropy_with_logits(x, y),
         lambda: F.binary_cross_entropy_with_logits(x, y)),
        ("mse_mean", 2 * n * b, lambda: P.mse_loss(x, y), lambda: F.mse_loss(x, y)),
    ]


def sgd_cases():
    """SGD with momentum on 540 tensors (40 x 2^20, 400 x 4096, 100 x 7): pyext against torch's fused
    and foreach steps. Bytes: params and buffers read and written, grads read: 5 x 4 bytes per element."""
    import pyext.optim

    sizes = SGD_SIZES
    nbytes = 5 * 4 * sum(sizes)

    def optimizer(cls, **kw):
        params = [torch.randn(n, device=DEVICE, requires_grad=True) for n in sizes]
        for p in params:
            p.grad = torch.randn_like(p)
        opt = cls(params, lr=0.01, momentum=0.9, **kw)
        opt.step()
        return opt

    ours = optimizer(pyext.optim.SGD)
    return nbytes, [("pyext", ours.step), ("torch fused", optimizer(torch.optim.SGD, fused=True).step),
                    ("torch foreach", optimizer(torch.optim.SGD, foreach=True).step)]


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=".")
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 28], help="log2 of the element counts")
    args = parser.parse_args(argv)
    device = torch.cuda.get_device_name()
    commit = os.environ.get("PYEXT_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    copy = copy_bandwidth(DEVICE, 0.05, COPY_ELEMENTS)
    print(f"{device}, torch {torch.__version__}, commit {commit or '?'}: copy bandwidth {copy:.0f} GB/s")
    rows = []
    header = f"{'op':<18} {'dtype':<9} {'n':>6} {'pyext ms':>9} {'torch ms':>9} {'pyext GB/s':>10} {'% copy':>7} {'speed-up':>8}"
    print(header)
    for log2n in args.sizes:
        for dtype in (torch.float32, torch.bfloat16):
            # the ceiling at this size: torch's copy of n elements (its tail included), against the large copy
            n = 2**log2n
            b = torch.finfo(dtype).bits // 8
            sets = input_sets(2 * n * b)
            pairs = [(torch.randn(n, dtype=dtype, device=DEVICE), torch.empty(n, dtype=dtype, device=DEVICE))
                     for _ in range(sets)]
            t_copy = time_ms(lambda i: pairs[i][1].copy_(pairs[i][0]), sets)
            copy_gbs = 2 * n * b / t_copy / 1e6
            del pairs
            rows.append(dict(device=device, torch=torch.__version__, commit=commit, op="torch_copy", dtype=str(dtype)[6:],
                             n=f"2^{log2n}", pyext_ms="", torch_ms=round(t_copy, 4), pyext_gbs="",
                             pct_copy=round(100 * copy_gbs / copy, 1), speedup=""))
            print(f"{'torch copy':<18} {str(dtype)[6:]:<9} {'2^' + str(log2n):>6} {'':>9} {t_copy:>9.4f} {copy_gbs:>10.0f} "
                  f"{100 * copy_gbs / copy:>6.1f}%  (torch's)")
            sets = input_sets(3 * n * b)  # x, y and p of each copy of the cases
            case_sets = [cases(n, dtype) for _ in range(sets)]
            for k, (name, nbytes, _, _) in enumerate(case_sets[0]):
                t_ours = time_ms(lambda i: case_sets[i][k][2](), sets)
                t_torch = time_ms(lambda i: case_sets[i][k][3](), sets)
                gbs = nbytes / t_ours / 1e6
                row = dict(device=device, torch=torch.__version__, commit=commit, op=name, dtype=str(dtype)[6:],
                           n=f"2^{log2n}", pyext_ms=round(t_ours, 4), torch_ms=round(t_torch, 4),
                           pyext_gbs=round(gbs, 1), pct_copy=round(100 * gbs / copy, 1),
                           speedup=round(t_torch / t_ours, 2))
                rows.append(row)
                print(f"{name:<18} {row['dtype']:<9} {row['n']:>6} {t_ours:>9.4f} {t_torch:>9.4f} {gbs:>10.0f} "
                      f"{row['pct_copy']:>6.1f}% {row['speedup']:>7.2f}x")
            del case_sets
            torch.cuda.empty_cache()
    nbytes, providers = sgd_cases()
    times = {name: time_ms(lambda i, step=step: step()) for name, step in providers}
    for name, ms in times.items():
        gbs = nbytes / ms / 1e6
        print(f"sgd momentum, 540 tensors, {name:<13} {ms:8.4f} ms {gbs:7.0f} GB/s {100 * gbs / copy:5.1f}% copy")
        rows.append(dict(device=device, torch=torch.__version__, commit=commit, op=f"sgd_540_tensors[{name}]",
                         dtype="float32", n=str(nbytes // 20), pyext_ms=round(ms, 4), torch_ms="",
                         pyext_gbs=round(gbs, 1), pct_copy=round(100 * gbs / copy, 1), speedup=""))
    out = Path(args.out) / "gpu_quick.csv"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
