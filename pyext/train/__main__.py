"""python -m pyext.train {linear,logistic,tutorial,predict} ...  (see --help of each)."""
from __future__ import annotations

import argparse
import csv
import gc
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

import pyext

from .data import DataError, loader, scan_csv, tutorial_linear, tutorial_logistic
from .loop import train
from .model import DEFAULTS, make_model

PARITY = dict(rtol=1e-5, atol=1e-6)  # float32 tolerance between the two backends


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() and pyext.build_info()["cuda"] else "cpu"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m pyext.train", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for kind in ("linear", "logistic", "tutorial"):
        p = commands.add_parser(kind, help={"linear": "linear regression", "logistic": "logistic regression",
                                            "tutorial": "both tutorial models, pyext against native"}[kind])
        p.add_argument("--device", choices=("cpu", "cuda"), default=default_device())
        p.add_argument("--plot", metavar="DIR", help="write PNG plots (loss curve, data and fit) to DIR")
        p.add_argument("--cuda-graph", action="store_true", help="capture a training step in a CUDA graph")
        p.add_argument("--seed", type=int, default=0, help="seed of the model's initial parameters")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        if kind == "tutorial":
            continue
        p.add_argument("--backend", choices=("pyext", "native", "both"), default="pyext")
        p.add_argument("--iterations", type=int, default=DEFAULTS[kind]["iterations"])
        p.add_argument("--lr", type=float, default=DEFAULTS[kind]["lr"])
        p.add_argument("--momentum", type=float, default=DEFAULTS[kind]["momentum"])
        p.add_argument("--batch-size", type=int, help="mini-batch size (default: the whole data set)")
        p.add_argument("--data", metavar="FILE.csv", help="a CSV file with a header: feature columns and a target")
        p.add_argument("--target", help="the target column of --data (default: the last)")
        p.add_argument("--standardize", action="store_true", help="scale features to mean 0, std 1")
        p.add_argument("--tensorboard", metavar="DIR", help="log loss and metric scalars for TensorBoard")
        p.add_argument("--save", metavar="FILE", help="write a checkpoint that `predict` can use")
    p = commands.add_parser("predict", help="print a saved model's predictions for a CSV file")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, metavar="FILE.csv")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "predict":
            return predict(args)
        if args.command == "tutorial":
            status = 0
            for kind in ("linear", "logistic"):
                run_args = argparse.Namespace(**vars(args), backend="both", batch_size=None, data=None, target=None,
                                              standardize=False, tensorboard=None, save=None, **DEFAULTS[kind])
                status |= run(kind, run_args)
            return status
        return run(args.command, args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def setup_distributed(device: str):
    """Under torchrun: one process per rank, gloo on CPU, NCCL on GPU. Returns (rank, world, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device(device)
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return dist.get_rank(), world, torch.device("cuda", local)
    dist.init_process_group("gloo")
    return dist.get_rank(), world, torch.device("cpu")


def run(kind: str, args) -> int:
    rank, world, device = setup_distributed(args.device)
    try:
        status = _run(kind, args, rank, world, device)
    finally:
        if world > 1:
            import gc

            gc.collect()  # DDP's reducer must go before its process group
            dist.barrier()
            dist.destroy_process_group()
    return status


def _run(kind, args, rank, world, device) -> int:
    if device.type == "cuda" and not (torch.cuda.is_available() and pyext.build_info()["cuda"]):
        raise ValueError("--device cuda needs a GPU and pyext built with CUDA")
    info, x, y = None, None, None
    if args.data:
        info = scan_csv(args.data, args.target, kind)
        features = len(info.features)
    else:
        x, y = tutorial_linear(seed=0) if kind == "linear" else tutorial_logistic()
        features = x.shape[1]
    batches = loader(x, y, info, args.batch_size, args.standardize, rank, world)
    backends = ("pyext", "native") if args.backend == "both" else (args.backend,)
    lead = rank == 0
    writer = None
    if args.tensorboard and lead:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(args.tensorboard)

    results = []
    # Python's full collections scan every object alive, torch's many included, and their time lands in whichever
    # backend's run they fall in (the logistic regression's ms/iteration swung 0.85-1.15 from run to run): the
    # objects alive now are left out of them while the models train.
    gc.collect()
    gc.freeze()
    try:
        for backend in backends:
            bar = None
            if lead and not args.no_progress:
                from tqdm import tqdm

                bar = tqdm(total=args.iterations, desc=f"{kind} [{backend}]", leave=False, file=sys.stderr)
            metric_name = "accuracy" if kind == "logistic" else "r2"

            def on_iteration(result, bar=bar, backend=backend):
                step = result.iterations
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{result.losses[-1]:.4f}", **{metric_name: f"{result.metrics[-1]:.3f}"})
                if writer is not None:
                    writer.add_scalar(f"{kind}/{backend}/loss", result.losses[-1], step)
                    writer.add_scalar(f"{kind}/{backend}/{metric_name}", result.metrics[-1], step)

            results.append(train(kind, backend, batches, features, device, args.iterations, args.lr, args.momentum,
                                 args.seed, cuda_graph=args.cuda_graph, on_iteration=on_iteration))
            if bar is not None:
                bar.close()
    finally:
        gc.unfreeze()
    if writer is not None:
        writer.close()
    if not lead:
        return 0

    status = 0
    for result in results:
        status |= summarize(result, device)
    if kind == "linear" and x is not None and features == 1:
        lstsq(x, y, args.standardize)
    if len(results) == 2:
        status |= compare(*results)
    if args.plot:
        from .plots import plot

        for path in plot(kind, results, x, y, info, args.standardize, args.plot):
            print(f"  wrote {path}")
    if args.save:
        save(args.save, kind, results[0], info, features, args.standardize, x)
        print(f"  saved {args.save}")
    return status


def summarize(result, device) -> int:
    params = ", ".join(f"{name} = {np.array2string(p.flatten().numpy(), precision=4)}"
                       for name, p in result.parameters().items())
    metric_name = "accuracy" if result.kind == "logistic" else "R^2"
    print(f"{result.kind} regression [{result.backend}] on {device}: {result.iterations} iterations, "
          f"{result.ms_per_iteration:.3f} ms/iteration")
    print(f"  {params}; loss {result.losses[-1]:.6f}; {metric_name} {result.metrics[-1]:.4f}")
    if not all(np.isfinite(result.losses)):
        print("  FAILED: the loss is not finite")
        return 1
    return 0


def lstsq(x, y, standardize):
    if standardize:
        x = (x - x.mean(0)) / x.std(0, unbiased=False).clamp_min(1e-12)
    a = np.hstack([x.double().numpy(), np.ones((len(x), 1))])
    solution = np.linalg.lstsq(a, y.double().numpy(), rcond=None)[0].flatten()
    print(f"  closed-form least squares: w = {solution[:-1].round(4)}, b = {solution[-1]:.4f}")


def compare(a, b) -> int:
    """pyext against native: the loss at every iteration and the final parameters."""
    n = min(a.iterations, b.iterations)
    la, lb = torch.tensor(a.losses[:n]), torch.tensor(b.losses[:n])
    loss_diff = ((la - lb).abs() / lb.abs().clamp_min(1e-12)).max().item() if n else 0.0
    pa, pb = a.parameters(), b.parameters()
    param_diff = max((pa[k] - pb[k]).abs().max().item() for k in pa)
    same = a.iterations == b.iterations and all(
        torch.allclose(la, lb, **PARITY) and torch.allclose(pa[k], pb[k], **PARITY) for k in pa)
    speedup = b.ms_per_iteration / max(a.ms_per_iteration, 1e-12)
    print(f"  pyext vs native: {a.iterations} vs {b.iterations} iterations; largest relative loss difference "
          f"{loss_diff:.2e}; largest parameter difference {param_diff:.2e}; pyext {speedup:.2f}x native speed: "
          f"{'parity OK' if same else 'PARITY FAILED'}")
    return 0 if same else 1


def save(path, kind, result, info, features, standardize, x):
    mean = std = None
    if standardize:
        if info is not None:
            mean, std = info.mean, info.std
        else:
            mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-12)
    torch.save({
        "kind": kind, "backend": result.backend, "features": features,
        "feature_names": info.features if info else [f"x{i}" for i in range(features)],
        "target": info.target if info else "y", "mean": mean, "std": std,
        "state_dict": {k: v.cpu() for k, v in result.model.state_dict().items()},
    }, path)


def predict(args) -> int:
    checkpoint = torch.load(args.checkpoint, weights_only=True)
    kind = checkpoint["kind"]
    info = scan_csv(args.data, checkpoint["target"], kind, require_target=False)
    if len(info.features) != checkpoint["features"]:
        raise DataError(f"{args.data}: {len(info.features)} feature columns, but the model was trained on "
                        f"{checkpoint['features']} ({', '.join(checkpoint['feature_names'])})")
    model = make_model(kind, checkpoint["features"], checkpoint["backend"])
    model.load_state_dict(checkpoint["state_dict"])
    model.to(args.device).eval()
    out = csv.writer(sys.stdout)
    out.writerow(["row", "probability", "class"] if kind == "logistic" else ["row", "prediction"])
    batches = loader(None, None, info, 4096, False, 0, 1)
    row = 0
    with torch.no_grad():
        for x, _ in batches:
            if checkpoint["mean"] is not None:
                x = (x - checkpoint["mean"]) / checkpoint["std"]
            pred = model(x.to(args.device)).flatten().cpu()
            for value in pred.tolist():
                row += 1
                out.writerow([row, f"{value:.6f}", int(value > 0.5)] if kind == "logistic" else [row, f"{value:.6f}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
