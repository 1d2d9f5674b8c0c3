"""Modules mirroring torch.nn, computed by pyext's kernels: swapping ``torch.nn.BCELoss()`` for
``pyext.nn.BCELoss()`` is the whole migration."""
from typing import Optional

import torch
from torch import Tensor

from . import ops

__all__ = ["Sigmoid", "BCELoss", "BCEWithLogitsLoss", "MSELoss"]


class Sigmoid(torch.nn.Module):
    """Like :class:`torch.nn.Sigmoid`."""

    def forward(self, input: Tensor) -> Tensor:
        return ops.sigmoid(input)


class BCELoss(torch.nn.modules.loss._WeightedLoss):
    """Like :class:`torch.nn.BCELoss`: ``BCELoss(weight=None, size_average=None, reduce=None, reduction='mean')``."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return ops.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(torch.nn.modules.loss._Loss):
    """Like :class:`torch.nn.BCEWithLogitsLoss`:
    ``BCEWithLogitsLoss(weight=None, size_average=None, reduce=None, reduction='mean', pos_weight=None)``."""

    def __init__(self, weight: Optional[Tensor] = None, size_average=None, reduce=None, reduction: str = "mean",
                 pos_weight: Optional[Tensor] = None) -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.weight: Optional[Tensor]
        self.pos_weight: Optional[Tensor]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return ops.binary_cross_entropy_with_logits(
            input, target, self.weight, pos_weight=self.pos_weight, reduction=self.reduction
        )


class MSELoss(torch.nn.modules.loss._Loss):
    """Like :class:`torch.nn.MSELoss`: ``MSELoss(size_average=None, reduce=None, reduction='mean')``."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return ops.mse_loss(input, target, reduction=self.reduction)
