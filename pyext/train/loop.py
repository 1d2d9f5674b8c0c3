"""The training loop shared by both backends: eager, distributed (DDP) or replayed from a CUDA graph."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
import torch.distributed as dist
from torch import nn

from .model import make_loss, make_model, make_optimizer, metric

ACCURACY_GOAL = 0.99  # the tutorial stops the logistic regression once accuracy exceeds this
GRAPH_WARMUP = 3  # eager steps before a CUDA graph is captured (they also build the momentum buffers)


@dataclass
class Result:
    kind: str
    backend: str
    model: nn.Module
    losses: List[float] = field(default_factory=list)
    metrics: List[float] = field(default_factory=list)  # accuracy (logistic) or R^2 (linear), per iteration
    seconds: float = 0.0

    @property
    def iterations(self) -> int:
        return len(self.losses)

    @property
    def ms_per_iteration(self) -> float:
        return 1e3 * self.seconds / max(self.iterations, 1)

    def parameters(self) -> dict:
        return {name: p.detach().cpu().clone() for name, p in self.model.named_parameters()}


def _all_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean over the processes of a distributed run (each reports its shard's loss and metric)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= dist.get_world_size()
    return values


def train(kind: str, backend: str, batches, features: int, device: torch.device, iterations: int, lr: float,
          momentum: float, seed: int, cuda_graph: bool = False,
          on_iteration: Optional[Callable[[Result], None]] = None) -> Result:
    """Trains one model for up to `iterations` steps (the logistic regression stops early once its
    accuracy exceeds ACCURACY_GOAL, as in the tutorial) and returns the per-iteration record."""
    torch.manual_seed(seed)
    model = make_model(kind, features, backend).to(device)
    distributed = dist.is_available() and dist.is_initialized()
    module = nn.parallel.DistributedDataParallel(model) if distributed else model
    loss_fn = make_loss(kind, backend)
    optimizer = make_optimizer(model.parameters(), backend, lr, momentum)
    result = Result(kind, backend, model)

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        pred = module(x)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        return loss.detach(), metric(kind, pred, y)

    def record(loss: torch.Tensor, value: torch.Tensor) -> float:
        """Logs one iteration (averaged over the processes of a distributed run); returns its metric."""
        loss_value, metric_value = _all_mean(torch.stack([loss.float(), value.float()])).tolist()
        result.losses.append(loss_value)
        result.metrics.append(metric_value)
        if on_iteration is not None:
            on_iteration(result)
        return metric_value

    def reached_goal(accuracy: float) -> bool:
        # the metric is a float32 mean: 198/200 is 0.99000001, which must not count as above 0.99
        return kind == "logistic" and accuracy > ACCURACY_GOAL + 1e-6

    start = time.perf_counter()
    if cuda_graph:
        _train_with_graph(batches, device, step, module, loss_fn, optimizer, kind,
                          lambda loss, value: reached_goal(record(loss, value)) or result.iterations >= iterations)
    else:
        # The accuracy goal is checked on each epoch's accuracy: with the whole data set in one batch
        # (the tutorial's way) that is every iteration; with mini-batches, every pass over the data.
        done = iterations <= 0
        while not done:
            correct, seen = 0.0, 0
            for x, y in batches:
                correct += record(*step(x.to(device), y.to(device))) * len(x)
                seen += len(x)
                if result.iterations >= iterations:
                    break
            done = result.iterations >= iterations or seen == 0 or reached_goal(correct / seen)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result.seconds = time.perf_counter() - start
    return result


def _train_with_graph(batches, device, step, module, loss_fn, optimizer, kind, record_and_stop):
    """A few eager steps on a side stream, then one training step captured in a CUDA graph and
    replayed: for models this small the GPU time is launch overhead, which the graph removes."""
    if device.type != "cuda":
        raise ValueError("--cuda-graph needs --device cuda")
    if dist.is_available() and dist.is_initialized():
        raise ValueError("--cuda-graph is not supported with distributed training")
    data = list(batches)
    if len(data) != 1:
        raise ValueError("--cuda-graph needs the whole data set in one batch (leave --batch-size unset)")
    x, y = (t.to(device) for t in data[0])
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(GRAPH_WARMUP):
            if record_and_stop(*step(x, y)):
                torch.cuda.current_stream(device).wait_stream(side)
                return
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        pred = module(x)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        static_loss, static_metric = loss.detach(), metric(kind, pred, y)
    while True:
        graph.replay()
        if record_and_stop(static_loss, static_metric):
            return
