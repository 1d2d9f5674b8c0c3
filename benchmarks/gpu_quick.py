"""Quick GPU benchmark (part of tests/gpu_check.sh): pyext against torch eager on the elementwise
ops and losses, with the fraction of the copy bandwidth measured in the same run.

Each size and dtype starts with torch's own copy of that many elements: its % of the large copy is the
ceiling a map of that size can reach (launch and tail included). Bytes moved (napkin math, n elements of
b bytes): unary and binary maps read each input once and write the output once (2nb for sigmoid, 3nb
for add/mul, 2nb + (n/1024)b for the broadcast row); a reduced loss reads its two inputs (2nb); BCE
forward+backward with 'mean' reads x, y twice and writes the gradient (5nb). Timing: CUDA events around
each call, after warm-up, median of 20.
"""
import argparse
import csv
import os
import statistics
import subprocess
from pathlib import Path

import torch
import torch.nn.functional as F

import pyext.ops as P


def time_ms(fn, reps=20, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth():
    x = torch.empty(2**28, dtype=torch.float32, device="cuda")
    y = torch.empty_like(x)
    ms = time_ms(lambda: y.copy_(x))
    return 2 * x.numel() * 4 / ms / 1e6  # GB/s, read + write


def cases(n, dtype):
    x = torch.randn(n, dtype=dtype, device="cuda")
    y = torch.rand(n, dtype=dtype, device="cuda")
    p = (torch.rand(n, device="cuda") * 0.98 + 0.01).to(dtype)
    rows = x.view(-1, 1024)
    row = torch.randn(1024, dtype=dtype, device="cuda")
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
        ("bce_fwd_bwd", 5 * n * b, bce_fwd_bwd(P.binary_cross_entropy), bce_fwd_bwd(F.binary_cross_entropy)),
        ("bce_logits_mean", 2 * n * b, lambda: P.binary_cross_entropy_with_logits(x, y),
         lambda: F.binary_cross_entropy_with_logits(x, y)),
        ("mse_mean", 2 * n * b, lambda: P.mse_loss(x, y), lambda: F.mse_loss(x, y)),
    ]


def sgd_cases():
    """SGD with momentum on 540 tensors (40 x 2^20, 400 x 4096, 100 x 7): pyext against torch's fused
    and foreach steps. Bytes: params and buffers read and written, grads read: 5 x 4 bytes per element."""
    import pyext.optim

    sizes = [2**20] * 40 + [4096] * 400 + [7] * 100
    nbytes = 5 * 4 * sum(sizes)

    def optimizer(cls, **kw):
        params = [torch.randn(n, device="cuda", requires_grad=True) for n in sizes]
        for p in params:
            p.grad = torch.randn_like(p)
        opt = cls(params, lr=0.01, momentum=0.9, **kw)
        opt.step()
        return opt

    ours = optimizer(pyext.optim.SGD)
    return nbytes, [("pyext", ours.step), ("torch fused", optimizer(torch.optim.SGD, fused=True).step),
                    ("torch foreach", optimizer(torch.optim.SGD, foreach=True).step)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=".")
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 28], help="log2 of the element counts")
    args = parser.parse_args()
    device = torch.cuda.get_device_name()
    commit = os.environ.get("PYEXT_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    copy = copy_bandwidth()
    print(f"{device}, torch {torch.__version__}, commit {commit or '?'}: copy bandwidth {copy:.0f} GB/s")
    rows = []
    header = f"{'op':<18} {'dtype':<9} {'n':>6} {'pyext ms':>9} {'torch ms':>9} {'pyext GB/s':>10} {'% copy':>7} {'speed-up':>8}"
    print(header)
    for log2n in args.sizes:
        for dtype in (torch.float32, torch.bfloat16):
            # the ceiling at this size: torch's copy of n elements (launch and tail included), against the large copy
            src = torch.randn(2**log2n, dtype=dtype, device="cuda")
            dst = torch.empty_like(src)
            t_copy = time_ms(lambda: dst.copy_(src))
            copy_gbs = 2 * src.numel() * src.element_size() / t_copy / 1e6
            del src, dst
            rows.append(dict(device=device, torch=torch.__version__, commit=commit, op="torch_copy", dtype=str(dtype)[6:],
                             n=f"2^{log2n}", pyext_ms="", torch_ms=round(t_copy, 4), pyext_gbs="",
                             pct_copy=round(100 * copy_gbs / copy, 1), speedup=""))
            print(f"{'torch copy':<18} {str(dtype)[6:]:<9} {'2^' + str(log2n):>6} {'':>9} {t_copy:>9.4f} {copy_gbs:>10.0f} "
                  f"{100 * copy_gbs / copy:>6.1f}%  (torch's)")
            for name, nbytes, ours, theirs in cases(2**log2n, dtype):
                t_ours, t_torch = time_ms(ours), time_ms(theirs)
                gbs = nbytes / t_ours / 1e6
                row = dict(device=device, torch=torch.__version__, commit=commit, op=name, dtype=str(dtype)[6:],
                           n=f"2^{log2n}", pyext_ms=round(t_ours, 4), torch_ms=round(t_torch, 4),
                           pyext_gbs=round(gbs, 1), pct_copy=round(100 * gbs / copy, 1),
                           speedup=round(t_torch / t_ours, 2))
                rows.append(row)
                print(f"{name:<18} {row['dtype']:<9} {row['n']:>6} {t_ours:>9.4f} {t_torch:>9.4f} {gbs:>10.0f} "
                      f"{row['pct_copy']:>6.1f}% {row['speedup']:>7.2f}x")
            torch.cuda.empty_cache()
    nbytes, providers = sgd_cases()
    times = {name: time_ms(step) for name, step in providers}
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
