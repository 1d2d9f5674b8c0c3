"""PNG plots of a training run (matplotlib): the loss curves, and the data with the fitted line
(linear regression) or the two classes and the decision boundary (logistic regression)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .data import CsvDataset  # noqa: E402

MAX_POINTS = 100_000  # a CSV file larger than this is plotted from its first rows


def _points(x, y, info, standardize):
    if info is None:
        if standardize:
            x = (x - x.mean(0)) / x.std(0, unbiased=False).clamp_min(1e-12)
        return x, y
    rows = []
    for i, row in enumerate(CsvDataset(info, standardize)):
        if i >= MAX_POINTS:
            break
        rows.append(row)
    return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])


def plot(kind, results, x, y, info, standardize, out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        style = "-" if r.backend == "pyext" else "--"
        ax.plot(range(1, r.iterations + 1), r.losses, label=r.backend, linestyle=style)
    ax.set(xlabel="iteration", ylabel="loss", title=f"{kind} regression: loss", yscale="log")
    ax.legend()
    paths.append(out / f"{kind}_loss.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    px, py = _points(x, y, info, standardize)
    params = results[0].parameters()
    fig, ax = plt.subplots(figsize=(6, 4))
    if kind == "linear" and px.shape[1] == 1:
        ax.scatter(px[:, 0], py[:, 0], s=12, label="data")
        grid = torch.linspace(px.min().item(), px.max().item(), 50)
        ax.plot(grid, params["w"][0] * grid + params["b"][0], color="red", label="fit")
        ax.set(xlabel="x", ylabel="y", title="linear regression: data and fitted line")
    elif kind == "logistic" and px.shape[1] == 2:
        labels = py[:, 0] > 0.5
        ax.scatter(px[~labels, 0], px[~labels, 1], s=12, c="tab:red", label="class 0")
        ax.scatter(px[labels, 0], px[labels, 1], s=12, c="tab:green", label="class 1")
        w, b = params["linear.weight"][0], params["linear.bias"][0]
        grid = torch.linspace(px[:, 0].min().item(), px[:, 0].max().item(), 50)
        if abs(w[1].item()) > 1e-12:  # w0 x0 + w1 x1 + b = 0
            ax.plot(grid, -(w[0] * grid + b) / w[1], color="black", label="decision boundary")
        ax.set(xlabel="x0", ylabel="x1", title="logistic regression: classes and decision boundary")
    else:
        plt.close(fig)
        return paths
    ax.legend()
    paths.append(out / f"{kind}_{'fit' if kind == 'linear' else 'boundary'}.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return paths
