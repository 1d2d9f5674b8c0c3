"""pyext's ops: thin typed wrappers over ``torch.ops.pyext.*``, their fake kernels, and autograd.

Every op computes in our own kernels (csrc/, cuda/) on CPU and CUDA; these wrappers only pick the
schema overload and translate torch's Python conventions (reduction strings, numbers as operands).
In eager mode they call the op through ``pyext._C``'s typed entry points, which skip the boxed
``torch.ops`` call from Python (about 1 us per call); while Dynamo traces them (torch.compile, strict
torch.export), through ``torch.ops`` (the ``_<op>`` functions below). An entry point hands its ``_<op>``
what it does not take (tensor subclasses, ``__torch_function__`` modes, other argument types), with the
arguments as they came. Each wrapper writes that choice out: a helper's Python call (60 ns) would add two
thirds again to what a wrapper costs over the C++ call (about 0.09 us).
Autograd, every order, is registered in C++ (csrc/autograd.cpp): backward formulas call pyext ops, so
``create_graph=True`` and higher-order gradients work.
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

from pyext import _C

try:  # one Python frame, which Dynamo makes True; its docs call it internal: is_compiling (two frames) if it goes
    from torch.compiler import is_dynamo_compiling
except ImportError:
    from torch.compiler import is_compiling as is_dynamo_compiling

__all__ = [
    "add", "add_", "mul", "mul_", "sigmoid",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss",
]

_ops = torch.ops.pyext
_NONE, _MEAN, _SUM = 0, 1, 2  # torch's reduction enum


# ---------------------------------------------------------------------------------------------
# Each op through torch.ops, and its eager entry point in pyext._C (bound to it)
# ---------------------------------------------------------------------------------------------

def _add(input, other, alpha):
    return (_ops.add.Tensor if isinstance(other, Tensor) else _ops.add.Scalar)(input, other, alpha=alpha)


def _add_(input, other, alpha):
    (_ops.add_.Tensor if isinstance(other, Tensor) else _ops.add_.Scalar)(input, other, alpha=alpha)


def _mul(input, other):
    return (_ops.mul.Tensor if isinstance(other, Tensor) else _ops.mul.Scalar)(input, other)


def _mul_(input, other):
    (_ops.mul_.Tensor if isinstance(other, Tensor) else _ops.mul_.Scalar)(input, other)


def _sigmoid(input):
    return _ops.sigmoid(input)


def _binary_cross_entropy(input, target, weight, reduction):
    return _ops.binary_cross_entropy(input, target, weight, reduction)


def _binary_cross_entropy_with_logits(input, target, weight, pos_weight, reduction):
    return _ops.binary_cross_entropy_with_logits(input, target, weight, pos_weight, reduction)


def _mse_loss(input, target, reduction):
    return _ops.mse_loss(input, target, reduction)


_add_eager = _C._entry_point("add", _add)
_add__eager = _C._entry_point("add_", _add_)
_mul_eager = _C._entry_point("mul", _mul)
_mul__eager = _C._entry_point("mul_", _mul_)
_sigmoid_eager = _C._entry_point("sigmoid", _sigmoid)
_binary_cross_entropy_eager = _C._entry_point("binary_cross_entropy", _binary_cross_entropy)
_binary_cross_entropy_with_logits_eager = _C._entry_point(
    "binary_cross_entropy_with_logits", _binary_cross_entropy_with_logits)
_mse_loss_eager = _C._entry_point("mse_loss", _mse_loss)


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
    return (_add if is_dynamo_compiling() else _add_eager)(input, other, alpha)


def add_(input: Tensor, other: Union[Tensor, Number], *, alpha: Number = 1) -> Tensor:
    """In-place :func:`add`, like :meth:`torch.Tensor.add_`: ``other`` must broadcast to ``input``'s shape."""
    if _needs_grad(input, other):
        return _differentiable_inplace(input, other, add(input, other, alpha=alpha))
    (_add_ if is_dynamo_compiling() else _add__eager)(input, other, alpha)
    return input


def mul(input: Tensor, other: Union[Tensor, Number]) -> Tensor:
    """``input * other``, like :func:`torch.mul`; broadcasting and dtypes as in :func:`add`."""
    return (_mul if is_dynamo_compiling() else _mul_eager)(input, other)


def mul_(input: Tensor, other: Union[Tensor, Number]) -> Tensor:
    """In-place :func:`mul`, like :meth:`torch.Tensor.mul_`."""
    if _needs_grad(input, other):
        # mul saves its inputs for backward: give it a copy of the one about to be overwritten
        return _differentiable_inplace(input, other, mul(input.clone(), other))
    (_mul_ if is_dynamo_compiling() else _mul__eager)(input, other)
    return input


def sigmoid(input: Tensor) -> Tensor:
    """``1 / (1 + exp(-input))``, like :func:`torch.sigmoid`; its backward uses the saved output."""
    return (_sigmoid if is_dynamo_compiling() else _sigmoid_eager)(input)


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

    ``input`` and ``target`` have one shape and their elements lie in [0, 1] (else RuntimeError; inside a
    captured CUDA graph, a device-side assertion when the graph replays, as with torch's);
    ``weight`` broadcasts to that shape. ``reduction`` is 'none', 'mean' or 'sum' (else ValueError).
    """
    red = _reduction_enum(size_average, reduce, reduction)
    return (_binary_cross_entropy if is_dynamo_compiling() else _binary_cross_entropy_eager)(input, target, weight, red)


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
    bce_logits = _binary_cross_entropy_with_logits if is_dynamo_compiling() else _binary_cross_entropy_with_logits_eager
    return bce_logits(input, target, weight, pos_weight, red)


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    weight: Optional[Tensor] = None,
) -> Tensor:
    """``(input - target)^2``, like :func:`torch.nn.functional.mse_loss`; input and target broadcast
    (with torch's warning when their sizes differ).

    ``weight`` (of the input's size, else ValueError) weighs each element's square, and 'mean' then divides
    by the weights' sum, as torch does. torch computes that case as a composite in Python, and so does
    pyext: ``w (x - y)^2`` from pyext's kernels, summed by ``torch.sum``; for half types in float, as
    pyext's losses compute (torch's stays in the half type, where the weight's gradient under 'mean',
    ``(e_i - loss) / sum(w)``, is the difference of two terms rounded to that type: a few of its ulps of
    ``e_i / sum(w)`` where the exact value is 0).
    """
    if isinstance(input, Tensor) and isinstance(target, Tensor) and target.size() != input.size():
        import warnings

        warnings.warn(
            f"Using a target size ({target.size()}) that is different to the input size ({input.size()}). "
            "This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=2,
        )
    red = _reduction_enum(size_average, reduce, reduction)
    mse = _mse_loss if is_dynamo_compiling() else _mse_loss_eager
    if weight is None:
        return mse(input, target, red)
    if weight.size() != input.size():
        raise ValueError("Weights and input must have the same size.")
    squares = mse(input, target, _NONE)
    dtype = torch.promote_types(squares.dtype, weight.dtype)
    acc = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    weight = weight.to(acc)
    weighted = mul(squares.to(acc), weight)
    if red != _NONE:
        weighted = weighted.sum() if red == _SUM else weighted.sum() / weight.sum()
    return weighted.to(dtype)


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


@torch.library.register_fake("pyext::mul_backward")
def _(grad_output, input, other):
    return _grad_empty(grad_output, input, other), _grad_empty(grad_output, input, other)


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
