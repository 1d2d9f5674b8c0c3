"""The tutorial's two models, each with a pyext backend (our kernels) and a native one (torch's)."""
from __future__ import annotations

import torch
from torch import nn

import pyext.nn
import pyext.ops as P
import pyext.optim

BACKENDS = ("pyext", "native")
DEFAULTS = {  # the tutorial's settings
    "linear": dict(iterations=2000, lr=0.03, momentum=0.0),
    "logistic": dict(iterations=1000, lr=0.01, momentum=0.9),
}


class LinearRegression(nn.Module):
    """y_hat = x . w + b, parameters w (one per feature) and b (1). With the pyext backend every
    arithmetic step is a pyext op (mul, add); the sum over features is torch's (a no-op for the
    tutorial's single feature)."""

    def __init__(self, features: int, backend: str):
        super().__init__()
        self.backend = backend
        self.w = nn.Parameter(torch.randn(features))
        self.b = nn.Parameter(torch.randn(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "pyext":
            return P.add(P.mul(x, self.w).sum(-1, keepdim=True), self.b)
        return (x * self.w).sum(-1, keepdim=True) + self.b


class LogisticRegression(nn.Module):
    """Linear(features, 1) + Sigmoid, as in the tutorial; the sigmoid is pyext's with that backend
    (the linear layer's matrix product stays native)."""

    def __init__(self, features: int, backend: str):
        super().__init__()
        self.linear = nn.Linear(features, 1)
        self.sigmoid = pyext.nn.Sigmoid() if backend == "pyext" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigmoid(self.linear(x))


def make_model(kind: str, features: int, backend: str) -> nn.Module:
    return (LinearRegression if kind == "linear" else LogisticRegression)(features, backend)


def make_loss(kind: str, backend: str):
    """linear: 0.5 * mean((y - y_hat)^2); logistic: BCELoss."""
    if kind == "linear":
        if backend == "pyext":
            return lambda pred, y: P.mul(P.mse_loss(pred, y), 0.5)
        return lambda pred, y: 0.5 * nn.functional.mse_loss(pred, y)
    return pyext.nn.BCELoss() if backend == "pyext" else nn.BCELoss()


def make_optimizer(params, backend: str, lr: float, momentum: float):
    """Gradient descent (momentum 0: w -= lr * w.grad) or SGD with momentum: pyext's fused step or torch's."""
    if backend == "pyext":
        return pyext.optim.SGD(params, lr=lr, momentum=momentum)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=False)


def metric(kind: str, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """logistic: accuracy of pred > 0.5; linear: R^2. A 0-d tensor, not synchronized."""
    with torch.no_grad():
        if kind == "logistic":
            return ((pred > 0.5).to(y.dtype) == y).to(torch.float32).mean()
        residual = (y - pred).pow(2).sum()
        total = (y - y.mean()).pow(2).sum().clamp_min(torch.finfo(y.dtype).tiny)
        return 1 - residual / total
