"""pyext.optim.SGD: a drop-in for torch.optim.SGD whose step is pyext's fused multi-tensor kernel.

The same constructor, defaults, validation, param groups, state ('momentum_buffer') and state_dict
as torch.optim.SGD, so either can load the other's state_dict. Each step makes one kernel call per
(device, dtype, first step or not) bucket of a group; it works with torch.optim.lr_scheduler and with
torch.amp.GradScaler (the kernel unscales the gradients and skips the step on inf/NaN).
"""
import math
from typing import Optional

import torch
from torch import Tensor
from torch.utils._foreach_utils import _group_tensors_by_device_and_dtype

from . import _C
from .ops import is_dynamo_compiling

__all__ = ["SGD"]


class SGD(torch.optim.Optimizer):
    """Like :class:`torch.optim.SGD`:
    ``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False,
    foreach=None, differentiable=False, fused=None)``.

    ``foreach`` and ``fused`` are accepted for compatibility and ignored (the step is always fused);
    ``differentiable=True`` is not supported. Sparse gradients raise an error.
    """

    _step_supports_amp_scaling = True  # GradScaler hands us grad_scale / found_inf

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach: Optional[bool] = None, differentiable=False, fused: Optional[bool] = None):
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        # torch's checks, and (beyond torch, which would silently fill the parameters with NaN) finiteness
        if lr < 0.0 or not math.isfinite(float(lr)):
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0 or not math.isfinite(momentum):
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0 or not math.isfinite(weight_decay):
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if differentiable:
            raise RuntimeError("pyext.optim.SGD does not support differentiable=True")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                        fused=fused)
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("differentiable", False)
            group.setdefault("fused", None)

    @torch.no_grad()
    def step(self, closure=None):
        """One step for every parameter that has a gradient; returns the closure's loss, if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale: Optional[Tensor] = getattr(self, "grad_scale", None)
        found_inf: Optional[Tensor] = getattr(self, "found_inf", None)
        for group in self.param_groups:
            self._step_group(group, grad_scale, found_inf)
        return loss

    def _step_group(self, group, grad_scale: Optional[Tensor], found_inf: Optional[Tensor]):
        # The parameters that have a gradient, with their momentum buffers (None before their first step), in
        # one pass: this Python is most of the step's cost on a GPU for many small tensors.
        momentum = group["momentum"]
        state = self.state
        params, grads, buffers = [], [], []
        fresh = False  # some parameter has no momentum buffer yet
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            params.append(p)
            grads.append(g)
            if momentum != 0:
                b = state[p].get("momentum_buffer")
                fresh = fresh or b is None
                buffers.append(b)
        if not params:
            return
        # One kernel call per device and dtype (torch's grouping, in C++, for tensors of several; one device and
        # dtype, the usual case, skips it) and per first step or not.
        if _C._one_device_and_dtype(params, grads):
            groups = [(params[0].device, params, grads, buffers)]
        else:
            if any(g.is_sparse for g in grads):
                raise RuntimeError("pyext.optim.SGD does not support sparse gradients")
            grouped = _group_tensors_by_device_and_dtype([params, grads, buffers or [None] * len(params)])
            groups = [(device, ps, gs, bs if buffers else []) for (device, _), ((ps, gs, bs), _) in grouped.items()]
        for device, ps, gs, bs in groups:
            first = [i for i, b in enumerate(bs) if b is None] if fresh else []  # the kernel fills their buffers
            if not first:
                self._call(group, device, ps, gs, bs, False, grad_scale, found_inf)
                continue
            kept = [i for i, b in enumerate(bs) if b is not None]
            for i in first:
                bs[i] = state[ps[i]]["momentum_buffer"] = torch.empty_like(ps[i], memory_format=torch.preserve_format)
            for is_first, index in ((True, first), (False, kept)):
                if index:
                    self._call(group, device, [ps[i] for i in index], [gs[i] for i in index],
                               [bs[i] for i in index], is_first, grad_scale, found_inf)

    @staticmethod
    def _call(group, device, params, grads, buffers, first: bool, grad_scale: Optional[Tensor],
              found_inf: Optional[Tensor]):
        lr, lr_tensor = group["lr"], None
        if isinstance(lr, Tensor):
            if lr.device == device:
                lr, lr_tensor = 0.0, lr
            else:
                lr = lr.item()
        momentum, dampening, weight_decay = group["momentum"], group["dampening"], group["weight_decay"]
        nesterov, maximize = group["nesterov"], group["maximize"]
        grad_scale = None if grad_scale is None else grad_scale.to(device)
        found_inf = None if found_inf is None else found_inf.to(device)
        # pyext._C's typed entry point (no boxed call of 3 lists); torch.ops while Dynamo traces the step (and
        # for what the entry point hands to it: tensor subclasses, other argument types)
        (_sgd_step_ if is_dynamo_compiling() else _sgd_step__eager)(
            params, grads, buffers, float(lr), momentum, dampening, weight_decay, nesterov, maximize, first,
            lr_tensor, grad_scale, found_inf)


def _sgd_step_(params, grads, buffers, lr, momentum, dampening, weight_decay, nesterov, maximize, is_first_step,
               lr_tensor, grad_scale, found_inf):
    torch.ops.pyext.sgd_step_(
        params, grads, buffers, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
        nesterov=nesterov, maximize=maximize, is_first_step=is_first_step, lr_tensor=lr_tensor,
        grad_scale=grad_scale, found_inf=found_inf,
    )


_sgd_step__eager = _C._entry_point("sgd_step_", _sgd_step_)


@torch.library.register_fake("pyext::sgd_step_")
def _(params, grads, momentum_buffers, **kwargs):
    return None
