"""pyext's ops: thin typed wrappers over ``torch.ops.pyext.*``, their fake kernels, and autograd.

Every op computes in our own kernels (csrc/, cuda/) on CPU and CUDA; these wrappers only pick the
schema overload and translate torch's Python conventions (reduction strings, numbers as operands).
Backward formulas call pyext ops, so ``create_graph=True`` and higher-order gradients work; the
second-order terms of the losses use torch arithmetic where pyext has no op (division, where).
"""
from __future__ import annotations

from numbers import Number
from typing import Optional, Union

import torch
from torch import Tensor
from torch._prims_common import (
    ELEMENTWISE_TYPE_PROMOTION_KIND,
    compute_elementwise_output_strides,
    elementwise_dtypes,
)
from torch.nn import _reduction

__all__ = [
    "add", "add_", "mul", "mul_", "sigmoid",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss",
]

_ops = torch.ops.pyext
_NONE, _MEAN, _SUM = 0, 1, 2  # torch's reduction enum


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

def add(input: Tensor, other: Union[Tensor, Number], *, alpha: Number = 1) -> Tensor:
    """``input + alpha * other``, like :func:`torch.add`.

    ``other`` is a tensor that broadcasts with ``input`` (NumPy rules, no copies) or a Python number.
    Dtypes follow torch's promotion; results of float32, float64, float16 or bfloat16 are computed
    (half types in float), anything else raises. Raises RuntimeError for shapes that do not broadcast
    or tensors on different devices (a CPU 0-d tensor counts as a number).
    """
    if isinstance(other, Tensor):
        return _ops.add.Tensor(input, other, alpha=alpha)
    return _ops.add.Scalar(input, other, alpha)


def add_(input: Tensor, other: Union[Tensor, Number], *, alpha: Number = 1) -> Tensor:
    """In-place :func:`add`, like :meth:`torch.Tensor.add_`: ``other`` must broadcast to ``input``'s shape."""
    if _needs_grad(input, other):
        return _differentiable_inplace(input, other, add(input, other, alpha=alpha))
    if isinstance(other, Tensor):
        _ops.add_.Tensor(input, other, alpha=alpha)
    else:
        _ops.add_.Scalar(input, other, alpha)
    return input


def mul(input: Tensor, other: Union[Tensor, Number]) -> Tensor:
    """``input * other``, like :func:`torch.mul`; broadcasting and dtypes as in :func:`add`."""
    if isinstance(other, Tensor):
        return _ops.mul.Tensor(input, other)
    return _ops.mul.Scalar(input, other)


def mul_(input: Tensor, other: Union[Tensor, Number]) -> Tensor:
    """In-place :func:`mul`, like :meth:`torch.Tensor.mul_`."""
    if _needs_grad(input, other):
        # mul saves its inputs for backward: give it a copy of the one about to be overwritten
        return _differentiable_inplace(input, other, mul(input.clone(), other))
    if isinstance(other, Tensor):
        _ops.mul_.Tensor(input, other)
    else:
        _ops.mul_.Scalar(input, other)
    return input


def sigmoid(input: Tensor) -> Tensor:
    """``1 / (1 + exp(-input))``, like :func:`torch.sigmoid`; its backward uses the saved output."""
    return _ops.sigmoid(input)


def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
) -> Tensor:
    """``-w (y ln x + (1 - y) ln(1 - x))`` with each ln clamped at -100, like
    :func:`torch.nn.functional.binary_cross_entropy`.

    ``input`` and ``target`` have one shape and their elements lie in [0, 1] (else RuntimeError);
    ``weight`` broadcasts to that shape. ``reduction`` is 'none', 'mean' or 'sum' (else ValueError).
    """
    red = _reduction_enum(size_average, reduce, reduction)
    return _ops.binary_cross_entropy(input, target, weight, red)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    pos_weight: Optional[Tensor] = None,
) -> Tensor:
    """Sigmoid and BCE fused in one numerically stable kernel, like
    :func:`torch.nn.functional.binary_cross_entropy_with_logits`.

    ``weight`` and ``pos_weight`` broadcast to the input's shape; no separate sigmoid pass is made.
    """
    red = _reduction_enum(size_average, reduce, reduction)
    return _ops.binary_cross_entropy_with_logits(input, target, weight, pos_weight, red)


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
) -> Tensor:
    """``(input - target)^2``, like :func:`torch.nn.functional.mse_loss`; input and target broadcast
    (with torch's warning when their sizes differ)."""
    if isinstance(input, Tensor) and isinstance(target, Tensor) and target.size() != input.size():
        import warnings

        warnings.warn(
            f"Using a target size ({target.size()}) that is different to the input size ({input.size()}). "
            "This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=2,
        )
    red = _reduction_enum(size_average, reduce, reduction)
    return _ops.mse_loss(input, target, red)


def _reduction_enum(size_average, reduce, reduction: str) -> int:
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)
    return _reduction.get_enum(reduction)  # ValueError: "... is not a valid value for reduction"


def _differentiable_inplace(input: Tensor, other, result: Tensor) -> Tensor:
    """An in-place update that autograd records: the result is computed out of place by our kernel and
    stored with torch's copy_, which does the leaf check, the version counter and every order of
    derivative. Only taken when a gradient is needed; otherwise the kernels write in place."""
    if result.shape != input.shape:
        raise RuntimeError(f"output with shape {list(input.shape)} doesn't match the broadcast shape "
                           f"{list(result.shape)}")
    return input.copy_(result)


def _needs_grad(input: Tensor, other) -> bool:
    return torch.is_grad_enabled() and (
        input.requires_grad or (isinstance(other, Tensor) and other.requires_grad)
    )


# ---------------------------------------------------------------------------------------------
# Fake kernels: output metadata without computing (torch.compile, meta tensors)
# ---------------------------------------------------------------------------------------------

def _result_dtype(*operands) -> torch.dtype:
    present = [o for o in operands if o is not None]
    _, dtype = elementwise_dtypes(*present, type_promotion_kind=ELEMENTWISE_TYPE_PROMOTION_KIND.DEFAULT)
    return dtype


def _elementwise_empty(*operands, dtype: torch.dtype) -> Tensor:
    """An empty output laid out as our iterator lays it out: the broadcast shape, strides that follow
    the inputs' memory order. A CPU 0-d tensor beside a tensor elsewhere is a number, not an operand."""
    tensors = [t for t in operands if isinstance(t, Tensor)]
    device = tensors[0].device
    tensors = [t for t in tensors if not (t.dim() == 0 and t.device.type == "cpu" and device.type != "cpu")]
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    strides = compute_elementwise_output_strides(*(t.expand(shape) for t in tensors))
    return torch.empty_strided(shape, strides, dtype=dtype, device=device)


def _loss_empty(input, *operands, reduction: int) -> Tensor:
    dtype = _result_dtype(input, *operands)
    if reduction == _NONE:
        return _elementwise_empty(input, *(o for o in operands if o is not None), dtype=dtype)
    return input.new_empty((), dtype=dtype)


def _float_dtype(input: Tensor) -> torch.dtype:
    return torch.get_default_dtype() if not (input.is_floating_point() or input.is_complex()) else input.dtype


for _name in ("add.Tensor", "mul.Tensor"):
    torch.library.register_fake(f"pyext::{_name}")(
        lambda input, other, **kw: _elementwise_empty(input, other, dtype=_result_dtype(input, other))
    )
for _name in ("add.Scalar", "mul.Scalar"):
    torch.library.register_fake(f"pyext::{_name}")(
        lambda input, other, *a, **kw: _elementwise_empty(input, dtype=_result_dtype(input, other))
    )
for _name in ("add_.Tensor", "add_.Scalar", "mul_.Tensor", "mul_.Scalar"):
    torch.library.register_fake(f"pyext::{_name}")(lambda input, *a, **kw: None)


@torch.library.register_fake("pyext::sigmoid")
def _(input):
    return _elementwise_empty(input, dtype=_float_dtype(input))


@torch.library.register_fake("pyext::sigmoid_backward")
def _(grad_output, output):
    return _elementwise_empty(grad_output, output, dtype=_result_dtype(grad_output, output))


@torch.library.register_fake("pyext::binary_cross_entropy")
def _(input, target, weight=None, reduction=_MEAN):
    return _loss_empty(input, target, weight, reduction=reduction)


@torch.library.register_fake("pyext::binary_cross_entropy_with_logits")
def _(input, target, weight=None, pos_weight=None, reduction=_MEAN):
    return _loss_empty(input, target, weight, pos_weight, reduction=reduction)


@torch.library.register_fake("pyext::mse_loss")
def _(input, target, reduction=_MEAN):
    return _loss_empty(input, target, reduction=reduction)


def _grad_empty(grad_output, input, *operands):
    dtype = _result_dtype(grad_output, input, *operands)
    return _elementwise_empty(grad_output, input, *(o for o in operands if o is not None), dtype=dtype)


@torch.library.register_fake("pyext::binary_cross_entropy_backward")
def _(grad_output, input, target, weight=None, reduction=_MEAN):
    return _grad_empty(grad_output, input, target, weight)


@torch.library.register_fake("pyext::binary_cross_entropy_target_backward")
def _(grad_output, input, weight=None, reduction=_MEAN):
    return _grad_empty(grad_output, input, weight)


@torch.library.register_fake("pyext::binary_cross_entropy_with_logits_backward")
def _(grad_output, input, target, weight=None, pos_weight=None, reduction=_MEAN):
    return _grad_empty(grad_output, input, target, weight, pos_weight)


@torch.library.register_fake("pyext::binary_cross_entropy_with_logits_target_backward")
def _(grad_output, input, weight=None, pos_weight=None, reduction=_MEAN):
    return _grad_empty(grad_output, input, weight, pos_weight)


@torch.library.register_fake("pyext::mse_loss_backward")
def _(grad_output, input, target, reduction=_MEAN):
    return _grad_empty(grad_output, input, target)


# ---------------------------------------------------------------------------------------------
# Autograd. The forward ops' autograd is C++ (csrc/autograd.cpp: as cheap per call as torch's own);
# their backward ops get theirs here, for second and higher orders. Every backward calls pyext ops.
# ---------------------------------------------------------------------------------------------

def _sum_to(grad: Optional[Tensor], shape) -> Optional[Tensor]:
    """Sums a broadcast gradient back to an operand's shape."""
    if grad is None or grad.shape == shape:
        return grad
    return grad.sum_to_size(shape) if len(shape) else grad.sum()


def _reduce_like(grad_input_shaped: Tensor, reduction: int, numel: int) -> Tensor:
    """The gradient for a loss's grad_output: summed for a reduced loss, divided by n for 'mean'."""
    if reduction == _NONE:
        return grad_input_shaped
    total = grad_input_shaped.sum()
    return mul(total, 1.0 / numel) if reduction == _MEAN else total


def _no_weight_grad(op: str, *weights):
    if any(w is not None and w.requires_grad for w in weights):
        raise NotImplementedError(f"pyext.{op}: the derivative for 'weight' and 'pos_weight' is not implemented")


# sigmoid_backward: its own gradient, for higher orders -------------------------------------------

def _setup_sigmoid_bw(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _sigmoid_backward_backward(ctx, gg):
    # d/dg [g y (1 - y)] = y (1 - y);  d/dy = g (1 - 2y)
    grad, output = ctx.saved_tensors
    grad_grad = _ops.sigmoid_backward(gg, output) if ctx.needs_input_grad[0] else None
    grad_output = mul(mul(gg, grad), add(mul(output, -2), 1)) if ctx.needs_input_grad[1] else None
    return grad_grad, grad_output


torch.library.register_autograd("pyext::sigmoid_backward", _sigmoid_backward_backward, setup_context=_setup_sigmoid_bw)


def _setup_loss(ctx, inputs, output):
    ctx.save_for_backward(*(t if isinstance(t, Tensor) else None for t in inputs[:-1]))
    ctx.reduction = inputs[-1]


# losses: second order ---------------------------------------------------------------------------

_EPS = 1e-12  # the clamp of BCE's backward denominator, as in torch


def _bce_backward_backward(ctx, gg):
    # gx = g w (x - y) / D / n, D = max(x (1 - x), eps)
    grad, x, y, w = ctx.saved_tensors
    red, n = ctx.reduction, x.numel()
    _no_weight_grad("binary_cross_entropy_backward", w)
    scale = 1.0 / n if red == _MEAN else 1.0
    d_raw = x * (1 - x)
    d = d_raw.clamp_min(_EPS)
    gw = gg if w is None else gg * w
    g_grad = (_reduce_like(_ops.binary_cross_entropy_backward(gg, x, y, w, _NONE), red, n)
              if ctx.needs_input_grad[0] else None)
    g_x = g_y = None
    if ctx.needs_input_grad[1]:
        dd = torch.where(d_raw > _EPS, 1 - 2 * x, torch.zeros_like(x))
        g_x = gw * grad * scale * (d - (x - y) * dd) / (d * d)
    if ctx.needs_input_grad[2]:
        g_y = -gw * grad * scale / d
    return g_grad, g_x, g_y, None, None


def _bce_target_backward_backward(ctx, gg):
    # gy = -g w logit(x) / n
    grad, x, w = ctx.saved_tensors
    red, n = ctx.reduction, x.numel()
    _no_weight_grad("binary_cross_entropy_target_backward", w)
    scale = 1.0 / n if red == _MEAN else 1.0
    gw = gg if w is None else gg * w
    g_grad = (_reduce_like(_ops.binary_cross_entropy_target_backward(gg, x, w, _NONE), red, n)
              if ctx.needs_input_grad[0] else None)
    g_x = -gw * grad * scale / (x * (1 - x)) if ctx.needs_input_grad[1] else None
    return g_grad, g_x, None, None


def _bce_logits_backward_backward(ctx, gg):
    # gx = g w (l s - p y) / n with s = sigmoid(x), l = p y + 1 - y (gx = g w (s - y) / n without p)
    grad, x, y, w, p = ctx.saved_tensors
    red, n = ctx.reduction, x.numel()
    _no_weight_grad("binary_cross_entropy_with_logits_backward", w, p)
    scale = 1.0 / n if red == _MEAN else 1.0
    s = sigmoid(x)
    gw = mul(gg, grad) if w is None else mul(mul(gg, grad), w)
    g_grad = (_reduce_like(_ops.binary_cross_entropy_with_logits_backward(gg, x, y, w, p, _NONE), red, n)
              if ctx.needs_input_grad[0] else None)
    g_x = g_y = None
    if ctx.needs_input_grad[1]:
        lw = 1 if p is None else p * y + 1 - y
        g_x = mul(_ops.sigmoid_backward(mul(gw, lw), s), scale)
    if ctx.needs_input_grad[2]:
        g_y = mul(gw, -scale) if p is None else gw * ((p - 1) * s - p) * scale
    return g_grad, g_x, g_y, None, None, None


def _bce_logits_target_backward_backward(ctx, gg):
    # gy = g w (ln sigmoid(-x) - p ln sigmoid(x)) / n  (-g w x / n without p)
    grad, x, w, p = ctx.saved_tensors
    red, n = ctx.reduction, x.numel()
    _no_weight_grad("binary_cross_entropy_with_logits_target_backward", w, p)
    scale = 1.0 / n if red == _MEAN else 1.0
    gw = mul(gg, grad) if w is None else mul(mul(gg, grad), w)
    g_grad = (_reduce_like(_ops.binary_cross_entropy_with_logits_target_backward(gg, x, w, p, _NONE), red, n)
              if ctx.needs_input_grad[0] else None)
    g_x = None
    if ctx.needs_input_grad[1]:
        # d/dx ln sigmoid(-x) = -s, d/dx ln sigmoid(x) = 1 - s
        g_x = mul(gw, -scale) if p is None else gw * (-sigmoid(x) - p * (1 - sigmoid(x))) * scale
    return g_grad, g_x, None, None, None


def _mse_backward_backward(ctx, gg):
    # gx = norm (x - y) g, norm = 2 (2/n for 'mean')
    grad, x, y = ctx.saved_tensors
    red = ctx.reduction
    n = torch.broadcast_shapes(x.shape, y.shape).numel()
    norm = 2.0 / n if red == _MEAN else 2.0
    g_grad = (_reduce_like(_ops.mse_loss_backward(gg, x, y, _NONE), red, n) if ctx.needs_input_grad[0] else None)
    ggn = mul(mul(gg, grad), norm)
    g_x = _sum_to(ggn, x.shape) if ctx.needs_input_grad[1] else None
    g_y = _sum_to(mul(ggn, -1), y.shape) if ctx.needs_input_grad[2] else None
    return g_grad, g_x, g_y, None


for _name, _fn in (
    ("binary_cross_entropy_backward", _bce_backward_backward),
    ("binary_cross_entropy_target_backward", _bce_target_backward_backward),
    ("binary_cross_entropy_with_logits_backward", _bce_logits_backward_backward),
    ("binary_cross_entropy_with_logits_target_backward", _bce_logits_target_backward_backward),
    ("mse_loss_backward", _mse_backward_backward),
):
    torch.library.register_autograd(f"pyext::{_name}", _fn, setup_context=_setup_loss)
