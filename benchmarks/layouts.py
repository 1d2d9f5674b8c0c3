"""Layouts: pyext's elementwise ops and losses against torch's over the layouts a 2-D loop meets (transposed,
sliced rows, strided, a broadcast column, row or middle dimension), on the CPU, one thread by default, in cache
(65536 elements). The sweep behind benchmarks/NOTES.md's layout findings; run.py times contiguous tensors only.

    python benchmarks/layouts.py [--ops mul ...] [--layouts col16 ...] [--dtypes float32 bfloat16] [--threads 1]
    python benchmarks/layouts.py --builds /path/a /path/b [--rounds 3] ...   # checkouts with built extensions

With --builds, each round runs this script once per checkout, in a process of its own (so that the builds
alternate and host noise hits each alike), and each row reports the minimum of the rounds' medians: one column
per build, then torch's (the minimum over every process). Ratios are pyext / torch: above 1, slower than torch.
"""
from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

N = 65536


def _rows(cols, of=None):
    """(N / cols, cols) rows, each sliced from a row of `of` elements (contiguous where of is None)."""
    return lambda dt: torch.rand(N // cols, of or cols, dtype=dt)[:, :cols]


# name: (first operand, second operand); each a function of the dtype. The second is broadcast where its shape is.
LAYOUTS = {
    "contiguous": (_rows(N), _rows(N)),
    "transposed": (lambda dt: torch.rand(256, 256, dtype=dt).t(), _rows(256)),
    "rows2of4": (_rows(2, 4), _rows(2, 4)),
    "rows3of4": (_rows(3, 4), _rows(3, 4)),
    "rows7of8": (_rows(7, 8), _rows(7, 8)),
    "rows24of32": (_rows(24, 32), _rows(24, 32)),
    "rows100of128": (_rows(100, 128), _rows(100, 128)),
    "every_other": (lambda dt: torch.rand(2 * N, dtype=dt)[::2], lambda dt: torch.rand(N, dtype=dt)),
    "col16": (_rows(16), lambda dt: torch.rand(N // 16, 1, dtype=dt)),
    "col64": (_rows(64), lambda dt: torch.rand(N // 64, 1, dtype=dt)),
    "row16": (_rows(16), lambda dt: torch.rand(16, dtype=dt)),
    "row1024": (_rows(1024), lambda dt: torch.rand(1024, dtype=dt)),
    "mid16": (lambda dt: torch.rand(128, 32, 16, dtype=dt), lambda dt: torch.rand(128, 1, 16, dtype=dt)),
    "mid32": (lambda dt: torch.rand(64, 32, 32, dtype=dt), lambda dt: torch.rand(64, 1, 32, dtype=dt)),
    "mid64": (lambda dt: torch.rand(32, 32, 64, dtype=dt), lambda dt: torch.rand(32, 1, 64, dtype=dt)),
}


def ops(P):
    """name: (pyext call, torch call), each of two operands; the losses take the second as the target."""
    return {
        "mul": (P.mul, torch.mul),
        "add": (lambda a, b: P.add(a, b, alpha=2), lambda a, b: torch.add(a, b, alpha=2)),
        # a Python number for the second operand: a constant of the formula
        "mul_number": (lambda a, b: P.mul(a, 1.5), lambda a, b: torch.mul(a, 1.5)),
        "add_number": (lambda a, b: P.add(a, 1.5), lambda a, b: torch.add(a, 1.5)),
        "sigmoid": (lambda a, b: P.sigmoid(a), lambda a, b: torch.sigmoid(a)),
        "bce": (lambda a, b: P.binary_cross_entropy(a, b.expand_as(a), reduction="none"),
                lambda a, b: F.binary_cross_entropy(a, b.expand_as(a), reduction="none")),
        "bce_logits": (lambda a, b: P.binary_cross_entropy_with_logits(a, b.expand_as(a), reduction="none"),
                       lambda a, b: F.binary_cross_entropy_with_logits(a, b.expand_as(a), reduction="none")),
        "mse": (lambda a, b: P.mse_loss(a, b.expand_as(a), reduction="none"),
                lambda a, b: F.mse_loss(a, b.expand_as(a), reduction="none")),
        "mse_mean": (lambda a, b: P.mse_loss(a, b.expand_as(a)), lambda a, b: F.mse_loss(a, b.expand_as(a))),
    }


OPS = ("mul", "add", "mul_number", "add_number", "sigmoid", "bce", "bce_logits", "mse", "mse_mean")


def measure(args):
    """One process's medians: rows of (op, layout, dtype, pyext us, torch us), as CSV on stdout."""
    sys.path.insert(0, args.pyext_root)
    import pyext.ops as P
    from torch.utils import benchmark

    from run import map_library_pages  # after pyext: run.py's own import of it finds this build's

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    table = ops(P)
    out = csv.writer(sys.stdout)
    for dtype in args.dtypes:
        dt = getattr(torch, dtype)
        for layout in args.layouts:
            a, b = (make(dt) for make in LAYOUTS[layout])
            for op in args.ops:
                times = []
                for fn in table[op]:
                    fn(a, b)
                map_library_pages()  # as run.py does: torch's log1p otherwise may run 10x slower (run.py)
                for fn in table[op]:
                    timer = benchmark.Timer("fn(a, b)", globals={"fn": fn, "a": a, "b": b})
                    times.append(timer.blocked_autorange(min_run_time=args.min_run_time).median * 1e6)
                out.writerow([op, layout, dtype, f"{times[0]:.3f}", f"{times[1]:.3f}"])
                sys.stdout.flush()


def compare(args, forwarded):
    """Alternates the builds' processes for --rounds rounds; prints the minimum medians side by side."""
    pyext_us, torch_us, order = {}, {}, []
    for _ in range(args.rounds):
        for build in args.builds:
            cmd = [sys.executable, __file__, "--pyext-root", build, *forwarded]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"layouts.py: {build}'s run failed:\n{result.stderr}")
            for op, layout, dtype, p, t in csv.reader(io.StringIO(result.stdout)):
                key = (op, layout, dtype)
                if key not in torch_us:
                    order.append(key)
                pyext_us[key, build] = min(pyext_us.get((key, build), float("inf")), float(p))
                torch_us[key] = min(torch_us.get(key, float("inf")), float(t))
    names = [Path(b).name or b for b in args.builds]
    print(f"{'op':11s} {'layout':13s} {'dtype':9s} " + " ".join(f"{n[:12]:>12s}" for n in names) +
          f" {'torch':>8s}  " + " ".join(f"{'/torch':>7s}" for _ in names))
    for key in order:
        us = [pyext_us[key, b] for b in args.builds]
        print(f"{key[0]:11s} {key[1]:13s} {key[2]:9s} " + " ".join(f"{u:12.2f}" for u in us) +
              f" {torch_us[key]:8.2f}  " + " ".join(f"{u / torch_us[key]:7.2f}" for u in us))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-run-time", type=float, default=0.1, help="seconds per timing (default 0.1)")
    parser.add_argument("--builds", nargs="+", help="checkouts to compare, each with its extension built")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pyext-root", default=str(Path(__file__).resolve().parent.parent), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.builds:
        forwarded = ["--ops", *args.ops, "--layouts", *args.layouts, "--dtypes", *args.dtypes,
                     "--threads", str(args.threads), "--min-run-time", str(args.min_run_time)]
        compare(args, forwarded)
    else:
        measure(args)


if __name__ == "__main__":
    main()
