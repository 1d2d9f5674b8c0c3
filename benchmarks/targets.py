"""Issue 5's speed targets, read off a CSV of benchmarks/run.py: each target's figure, and met or not.

    python benchmarks/targets.py benchmarks/results/amd_epyc_x2_threads/quick_cpu.csv [more CSVs of one device]

The device (cpu or cuda) comes from the CSV's name as run.py writes it (`quick_cpu.csv`, `full_cuda.csv`), or
--device. A target whose rows the CSVs lack (a quick run's sizes, a GPU run stopped at its deadline) is "not
measured", never met. Where CSVs share a case, the last one read gives it.
"""
from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

MAPS = ("add", "mul", "sigmoid", "bce_none")  # 90% of the copy on the GPU
BROADCAST_AND_REDUCED = ("mul_row", "bce_mean", "bce_logits_mean", "mse_mean")  # 85%


@dataclass(frozen=True)
class Target:
    """pyext's row (or `provider`'s) against another provider's time (speed-up at least `at_least`), or
    against the copy bandwidth (`against` "copy": percent at least `at_least`)."""
    device: str
    goal: str
    op: str
    mode: str
    dtype: str
    n: Optional[int]  # None: the one size the CSV has (SGD, the tutorial)
    against: str
    at_least: float
    provider: str = "pyext"


def targets() -> List[Target]:
    cpu = [Target("cpu", "at least as fast as eager at 2^22", op, "fwd", "float32", 2**22, "eager", 1.0)
           for op in ("add", "mul", "sigmoid")]
    cpu += [
        Target("cpu", "BCE fwd+bwd at 2^20: 10x eager", "bce_mean", "full", "float32", 2**20, "eager", 10.0),
        Target("cpu", "BCE fwd+bwd at 2^20: 2x torch.compile", "bce_mean", "full", "float32", 2**20, "compile", 2.0),
        Target("cpu", "BCE-with-logits fwd+bwd: 3x eager", "bce_logits_mean", "full", "float32", 2**20, "eager", 3.0),
        Target("cpu", "SGD momentum step: at least torch fused", "sgd_momentum", "step", "float32", None, "fused", 1.0),
        Target("cpu", "tutorial logistic iteration: no slower than torch's", "tutorial_logistic", "iter", "float32",
               None, "eager", 1.0),
    ]
    gpu = []
    for n in (2**24, 2**28):
        for dtype in ("float32", "bfloat16"):
            for op in MAPS + BROADCAST_AND_REDUCED:
                share = 90.0 if op in MAPS else 85.0
                gpu.append(Target("cuda", f"{share:.0f}% of the copy bandwidth", op, "fwd", dtype, n, "copy", share))
                gpu.append(Target("cuda", "never slower than eager", op, "fwd", dtype, n, "eager", 1.0))
            gpu.append(Target("cuda", "BCE fwd+bwd: 1.2x eager", "bce_mean", "full", dtype, n, "eager", 1.2))
    gpu += [
        Target("cuda", "SGD on 540 tensors: at least torch fused", "sgd_momentum", "step", "float32", None, "fused", 1.0),
        Target("cuda", "SGD on 540 tensors: 2x foreach", "sgd_momentum", "step", "float32", None, "foreach", 2.0),
        Target("cuda", "tutorial logistic, CUDA graph: 10x eager", "tutorial_logistic", "iter", "float32", None,
               "eager", 10.0, provider="graph"),
    ]
    return cpu + gpu


Key = Tuple[str, str, str, str]  # op, mode, provider, dtype


def read(paths) -> Dict[Key, Dict[int, dict]]:
    """Rows by (op, mode, provider, dtype), then by n."""
    rows: Dict[Key, Dict[int, dict]] = {}
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                rows.setdefault((r["op"], r["mode"], r["provider"], r["dtype"]), {})[int(r["n"])] = r
    return rows


def row(rows, target: Target, provider: str) -> Optional[dict]:
    by_n = rows.get((target.op, target.mode, provider, target.dtype), {})
    if target.n is None:
        return next(iter(by_n.values())) if len(by_n) == 1 else None
    return by_n.get(target.n)


def check(rows, target: Target) -> Optional[float]:
    """The target's figure (a speed-up, or a percent of the copy), or None where its rows are missing."""
    ours = row(rows, target, target.provider)
    if ours is None:
        return None
    if target.against == "copy":
        return float(ours["pct_copy"])
    theirs = row(rows, target, target.against)
    return None if theirs is None else float(theirs["median_us"]) / float(ours["median_us"])


def shown_figure(figure: float, target: Target, verdict: str) -> str:
    """1.5% or 1.23x eager; a missed figure that would round up to its bound gets a digit more (0.999x, not 1.00x)."""
    digits = 1 if target.against == "copy" else 2
    while verdict == "missed" and round(figure, digits) >= target.at_least and digits < 6:
        digits += 1
    return f"{figure:.{digits}f}%" if target.against == "copy" else f"{figure:.{digits}f}x {target.against}"


def report(rows, device: str) -> Tuple[List[str], Dict[str, int]]:
    lines, counts = [], {"met": 0, "missed": 0, "not measured": 0}
    for t in (t for t in targets() if t.device == device):
        figure = check(rows, t)
        verdict = "not measured" if figure is None else "met" if figure >= t.at_least else "missed"
        counts[verdict] += 1
        size = "" if t.n is None else f" 2^{t.n.bit_length() - 1}"
        case = f"{t.op} {t.mode} {t.dtype}{size}" + ("" if t.provider == "pyext" else f" ({t.provider})")
        shown = "" if figure is None else shown_figure(figure, t, verdict)
        lines.append(f"{verdict:<13} {case:<40} {shown:>16}   {t.goal}")
    return lines, counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", type=Path)
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: from the first CSV's name")
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if args.csv[0].stem.endswith("_cuda") else "cpu")
    lines, counts = report(read(args.csv), device)
    print(f"{device} targets, from {', '.join(map(str, args.csv))}:")
    print("\n".join(lines))
    print(", ".join(f"{v} {k}" for k, v in counts.items()))
    return counts


if __name__ == "__main__":
    main()
