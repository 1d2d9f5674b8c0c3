"""Side by side: the gpu_quick.py runs of one GPU check call (tests/gpu_check.sh with VARIANTS), one column of
pyext times per run and torch's times of the first and last runs, so that a variant is read against the spread
of the main build's two runs (the first and, after the variants, again) and against the drift of torch's own
times over the call.

    python benchmarks/compare_variants.py OUT_DIR                  # gpu_check.sh's layout: gpu_quick.csv,
                                                                   #   variant_*/gpu_quick.csv, again/gpu_quick.csv
    python benchmarks/compare_variants.py main=a.csv waves_64=b.csv again=c.csv   # any CSVs, labelled
"""
import argparse
import csv
from pathlib import Path


def runs_of(args):
    """[(label, csv path)]: the main run first, then the variants, then the main build again."""
    if len(args) == 1 and Path(args[0]).is_dir():
        out = Path(args[0])
        runs = [("main", out / "gpu_quick.csv")]
        runs += [(d.name.removeprefix("variant_").replace("PYEXT_CUDA_", ""), d / "gpu_quick.csv")
                 for d in sorted(out.glob("variant_*"))]
        if (out / "again" / "gpu_quick.csv").exists():
            runs.append(("again", out / "again" / "gpu_quick.csv"))
        return [(label, path) for label, path in runs if path.exists()]
    runs = []
    for arg in args:
        label, sep, path = arg.partition("=")
        if not sep:
            raise SystemExit(f"compare_variants: expected LABEL=CSV, got {arg!r}")
        runs.append((label, Path(path)))
    return runs


def table(runs):
    """The lines of the comparison: op, dtype, size; pyext ms of each run; torch ms of the first and last."""
    data, order = {}, []
    for label, path in runs:
        with open(path) as f:
            for row in csv.DictReader(f):
                key = (row["op"], row["dtype"], row["n"])
                if key not in data:
                    order.append(key)
                data.setdefault(key, {})[label] = row
    labels = [label for label, _ in runs]
    lines = []
    if any(len(label) > 14 for label in labels):  # long names: numbered columns and a legend
        lines += [f"#{i}: {label}" for i, label in enumerate(labels)]
        labels = [f"#{i}" for i in range(len(labels))]
    first, last = labels[0], labels[-1]
    width = max(10, *(len(label) for label in labels))
    lines.append(f"{'op':<30} {'dtype':<9} {'n':>9} " + " ".join(f"{label:>{width}}" for label in labels)
                 + f" {'torch ' + first:>{width + 6}} {'torch ' + last:>{width + 6}}")
    runs = dict(zip(labels, (label for label, _ in runs)))

    def ms(row, column):
        value = row.get(column, "") if row else ""
        return f"{float(value):.4f}" if value else "-"

    for key in order:
        rows = data[key]
        column = "torch_ms" if key[0] == "torch_copy" else "pyext_ms"  # torch's copy has no pyext time
        lines.append(f"{key[0]:<30} {key[1]:<9} {key[2]:>9} "
                     + " ".join(f"{ms(rows.get(runs[label]), column):>{width}}" for label in labels)
                     + f" {ms(rows.get(runs[first]), 'torch_ms'):>{width + 6}}"
                     + f" {ms(rows.get(runs[last]), 'torch_ms'):>{width + 6}}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="gpu_check.sh's output folder, or LABEL=CSV pairs")
    args = parser.parse_args(argv)
    runs = runs_of(args.runs)
    if not runs:
        raise SystemExit(f"compare_variants: no gpu_quick.csv under {args.runs[0]}")
    print("\n".join(table(runs)))


if __name__ == "__main__":
    main()
