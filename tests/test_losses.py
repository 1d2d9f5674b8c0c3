"""binary_cross_entropy, binary_cross_entropy_with_logits and mse_loss against torch.nn.functional:
values and gradients (input and target) over device x dtype x shape x layout x reduction, with and
without weights, special values, and the accuracy of large reductions."""
import math

import pytest
import torch
import torch.nn.functional as F

import pyext.ops as P
from conftest import DEVICES, DTYPES, LAYOUTS, SHAPES, make, needs_torch_mse_weight, shape_id
from test_elementwise import check_against_torch

REDUCTIONS = ["none", "mean", "sum"]


def weight_for(shape, kind, dtype, device):
    if kind is None or not shape and kind == "row":
        return None
    if kind == "full":
        return make(shape, dtype, device, low=0.5, high=2.0)
    if kind == "row":  # broadcasts along every dimension but the last
        return make(shape[-1:], dtype, device, low=0.5, high=2.0)
    if kind == "0d":
        return make((), dtype, device, low=0.5, high=2.0)
    raise ValueError(kind)


# loss: (pyext op, torch op, input values (low, high) or None for normal * 3, target layout)
LOSSES = {
    "bce": (P.binary_cross_entropy, F.binary_cross_entropy, (0.01, 0.99), "contiguous"),
    "bce_with_logits": (P.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, None, "contiguous"),
    "mse": (P.mse_loss, F.mse_loss, None, "offset"),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", list(LOSSES))
def test_loss(loss, device, dtype, shape, layout, reduction):
    ours, theirs, values, target_layout = LOSSES[loss]
    if values is None:
        x = make(shape, dtype, device, layout).mul(3).detach().requires_grad_()
    else:
        x = make(shape, dtype, device, layout, low=values[0], high=values[1]).requires_grad_()
    y = make(shape, dtype, device, target_layout, low=0.0, high=1.0).requires_grad_()
    check_against_torch(
        lambda a, b: ours(a, b, reduction=reduction),
        lambda a, b: theirs(a, b, reduction=reduction),
        [x, y], dtype, upcast=True,
    )


WEIGHTS = ["full", "row", "0d"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1,), (1023,), (3, 5, 7)], ids=shape_id)
@pytest.mark.parametrize("weight", WEIGHTS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_weight(device, dtype, shape, weight, reduction):
    x = make(shape, dtype, device, "transposed", low=0.01, high=0.99).requires_grad_()
    y = make(shape, dtype, device, low=0.0, high=1.0).requires_grad_()
    w = weight_for(shape, weight, dtype, device)
    check_against_torch(
        lambda a, b: P.binary_cross_entropy(a, b, w, reduction=reduction),
        lambda a, b: F.binary_cross_entropy(a, b, w, reduction=reduction),
        [x, y], dtype, upcast=True,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1,), (1023,), (3, 5, 7)], ids=shape_id)
@pytest.mark.parametrize("weight", [None, *WEIGHTS])
@pytest.mark.parametrize("pos_weight", [None, *WEIGHTS])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_weights(device, dtype, shape, weight, pos_weight, reduction):
    x = make(shape, dtype, device, "stepped").mul(3).detach().requires_grad_()
    y = make(shape, dtype, device, low=0.0, high=1.0).requires_grad_()
    w = weight_for(shape, weight, dtype, device)
    pw = weight_for(shape, pos_weight, dtype, device)
    check_against_torch(
        lambda a, b: P.binary_cross_entropy_with_logits(a, b, w, reduction=reduction, pos_weight=pw),
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, w, reduction=reduction, pos_weight=pw),
        [x, y], dtype, upcast=True,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cols", [3, 17, 64, 100, 129])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weights_repeated_down_rows(device, dtype, cols, reduction):
    """A weight (and pos_weight) of one value per column beside contiguous (rows, cols) inputs: on the CPU,
    rows of up to 512 bytes run as one flat run, the weights' row read from a tile from an offset that changes
    from chunk to chunk (csrc/cpu_kernels.cpp, plan_block); one weight may also be a single value, or one per
    row (gathered, where rows are short), and the input transposed or sliced from wider rows (gathered, for
    short rows, or rows of a few vector steps and a tail). Rows longer end in a partial vector step. Forward,
    backward and the reductions' sums against torch."""
    shape = (1000, cols)
    p = make(shape, dtype, device, low=0.01, high=0.99).requires_grad_()
    logits = make(shape, dtype, device).mul(3).detach().requires_grad_()
    y = make(shape, dtype, device, low=0.0, high=1.0).requires_grad_()
    w = make((cols,), dtype, device, low=0.5, high=2.0)
    pw = make((cols,), dtype, device, low=0.5, high=2.0)
    one = make((), dtype, device, low=0.5, high=2.0)
    per_row = make((shape[0], 1), dtype, device, low=0.5, high=2.0)
    # The input's gradient with a pos_weight is a difference of terms up to w pw |g| (about 10): among 1000 rows,
    # some differences are small, and keep the terms' absolute rounding error (a few 1e-7 in float32, torch's
    # as ours) far above rtol times themselves.
    tol = dict(atol=1e-5) if dtype == torch.float32 else {}
    p_transposed = p.detach().t().contiguous().t().requires_grad_()
    p_sliced = make((shape[0], cols + 5), dtype, device, low=0.01, high=0.99)[:, :cols].requires_grad_()
    for x, weight in ((p, w), (p, per_row), (p_transposed, w), (p_sliced, per_row)):
        check_against_torch(
            lambda a, b: P.binary_cross_entropy(a, b, weight, reduction=reduction),
            lambda a, b: F.binary_cross_entropy(a, b, weight, reduction=reduction),
            [x, y], dtype, upcast=True,
        )
    for weight, pos_weight in ((w, pw), (one, pw), (None, pw), (w, None), (per_row, pw)):
        check_against_torch(
            lambda a, b: P.binary_cross_entropy_with_logits(a, b, weight, reduction=reduction, pos_weight=pos_weight),
            lambda a, b: F.binary_cross_entropy_with_logits(a, b, weight, reduction=reduction, pos_weight=pos_weight),
            [logits, y], dtype, upcast=True, **tol,
        )


@pytest.mark.parametrize("device", DEVICES[1:])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss, weighted", [("bce", False), ("bce", True), ("bce_with_logits", False),
                                            ("bce_with_logits", True), ("mse", False)])
def test_flat_cuda_kernels_know_the_argument_kinds(loss, device, dtype, weighted, reduction):
    """Contiguous inputs in the common argument patterns (the incoming gradient one value after 'mean' and
    'sum', a tensor after 'none'; the weights all absent or all given) run the flat kernels compiled for
    those kinds (cuda/kernels.cu), never the one that reads each argument's kind from its plan; and they
    match torch. (A weighted MSE is a composite of pyext ops, as in torch: test_mse_weight.)"""
    ours, theirs, values, _ = LOSSES[loss]
    low, high = values or (-3.0, 3.0)
    x = make((4096,), dtype, device, low=low, high=high).requires_grad_()
    y = make((4096,), dtype, device, low=0.0, high=1.0).requires_grad_()
    kw = {}
    if weighted:
        kw["weight"] = make((4096,), dtype, device, low=0.5, high=2.0)
        if loss == "bce_with_logits":
            kw["pos_weight"] = make((4096,), dtype, device, low=0.5, high=2.0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        check_against_torch(
            lambda a, b: ours(a, b, reduction=reduction, **kw),
            lambda a, b: theirs(a, b, reduction=reduction, **kw),
            [x, y], dtype, upcast=True,
        )
        torch.cuda.synchronize()
    ours_kernels = {e.name for e in prof.events() if "map_kernel" in e.name}
    # the forward, and the backwards for the input and the target (mse's two are one kernel, x and y swapped)
    assert len(ours_kernels) >= (2 if loss == "mse" else 3), ours_kernels
    from_plan = [name for name in ours_kernels if "4294967295" in name]  # kKindsFromPlan, ~0u
    assert not from_plan, from_plan


@needs_torch_mse_weight
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1,), (1023,), (3, 5, 7)], ids=shape_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_weight(device, dtype, shape, reduction):
    """F.mse_loss's weight (the input's size; 'mean' divides by the weights' sum): values and the
    gradients of input, target and weight."""
    x = make(shape, dtype, device, "transposed").mul(3).detach().requires_grad_()
    y = make(shape, dtype, device, "offset").requires_grad_()
    w = make(shape, dtype, device, low=0.5, high=2.0).requires_grad_()
    check_against_torch(
        lambda a, b, c: P.mse_loss(a, b, reduction=reduction, weight=c),
        lambda a, b, c: F.mse_loss(a, b, reduction=reduction, weight=c),
        [x, y, w], dtype, upcast=True,
    )


@needs_torch_mse_weight
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_weight_with_broadcast_target(device, reduction):
    """The target broadcasts (with torch's warning) and the weight, of the input's size, then broadcasts too."""
    x = make((4, 1), torch.float32, device).requires_grad_()
    y = make((3,), torch.float32, device).requires_grad_()
    w = make((4, 1), torch.float32, device, low=0.5, high=2.0).requires_grad_()
    with pytest.warns(UserWarning, match="Using a target size"):
        check_against_torch(
            lambda a, b, c: P.mse_loss(a, b, reduction=reduction, weight=c),
            lambda a, b, c: F.mse_loss(a, b, reduction=reduction, weight=c),
            [x, y, w], torch.float32,
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("cols", [1024, 90, 7])
def test_loss_rows(loss, device, dtype, reduction, cols):
    """Inputs in the rows of wider buffers (row starts 16-byte aligned for the input, not for the
    target) and a weight repeated on every row: on CUDA, the rows layout, summed or not. Rows of 90 end in
    a part of a vector step, and rows of 7 are shorter than one (on the CPU a masked step, summed or stored, or
    scalar steps; or gathered)."""
    ours, theirs, values, _ = LOSSES[loss]
    low, high = values or (-3.0, 3.0)
    x = make((33, cols + 8), dtype, device, low=low, high=high)[:, 8:].detach().requires_grad_()
    y = make((33, cols + 6), dtype, device, low=0.0, high=1.0)[:, :cols].detach().requires_grad_()
    w = () if loss == "mse" else (make((cols,), dtype, device, low=0.5, high=2.0),)
    check_against_torch(
        lambda a, b: ours(a, b, *w, reduction=reduction),
        lambda a, b: theirs(a, b, *w, reduction=reduction),
        [x, y], dtype, upcast=True,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", list(LOSSES))
def test_loss_strided_rows(loss, device, dtype, reduction):
    """Every third element of rows of 270, and of a transposed buffer: no operand steps one element (on the
    CPU scalar steps, a sum's in fours; or, for a formula with exp or log, operands gathered)."""
    ours, theirs, values, _ = LOSSES[loss]
    low, high = values or (-3.0, 3.0)
    x = make((33, 270), dtype, device, low=low, high=high)[:, ::3].detach().requires_grad_()
    y = make((90, 33), dtype, device, low=0.0, high=1.0).t().detach().requires_grad_()
    check_against_torch(
        lambda a, b: ours(a, b, reduction=reduction),
        lambda a, b: theirs(a, b, reduction=reduction),
        [x, y], dtype, upcast=True,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(4, 0), (0, 4), (0, 3, 5)], ids=shape_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", list(LOSSES))
def test_loss_empty_rows(loss, device, shape, reduction):
    ours, theirs, _, _ = LOSSES[loss]
    x = make(shape, torch.float32, device, low=0.1, high=0.9).requires_grad_()
    y = make(shape, torch.float32, device, low=0.0, high=1.0).requires_grad_()
    check_against_torch(lambda a, b: ours(a, b, reduction=reduction),
                        lambda a, b: theirs(a, b, reduction=reduction), [x, y], torch.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_broadcasts_with_torch_warning(device, reduction):
    x = make((20, 1), torch.float32, device).requires_grad_()
    y = make((20,), torch.float32, device).requires_grad_()
    with pytest.warns(UserWarning, match="different to the input size"):
        out = P.mse_loss(x, y, reduction=reduction)
    with pytest.warns(UserWarning):
        ref = F.mse_loss(x, y, reduction=reduction)
    torch.testing.assert_close(out, ref)
    for a, b in zip(torch.autograd.grad(out.sum(), [x, y]), torch.autograd.grad(ref.sum(), [x, y])):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bce_at_zero_and_one(device, dtype):
    x = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.5, 1e-30], dtype=dtype, device=device, requires_grad=True)
    y = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5, 1.0], dtype=dtype, device=device)
    out = P.binary_cross_entropy(x, y, reduction="none")
    ref = F.binary_cross_entropy(x, y, reduction="none")
    torch.testing.assert_close(out, ref, equal_nan=True)
    assert out[1].item() == 100.0 and out[2].item() == 100.0  # ln clamped at -100
    # torch rounds its 1e-12 clamp to the half type (0), giving 0/0 = NaN at x = y = 0 in float16;
    # pyext clamps in float, so its half-type gradients are torch's float32 ones, rounded
    x32 = x.detach().float().requires_grad_()
    (g,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(F.binary_cross_entropy(x32, y.float(), reduction="sum"), x32)
    torch.testing.assert_close(g, g_ref.to(dtype), equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_special_values_propagate_like_torch(device, dtype):
    specials = torch.tensor([0.0, -0.0, 1000.0, -1000.0, math.inf, -math.inf, math.nan, 30.0, -30.0],
                            dtype=dtype, device=device)
    targets = torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0, 1.0, 0.5, math.nan, math.inf], dtype=dtype, device=device)
    pw = torch.tensor(2.0, dtype=dtype, device=device)
    for reduction in REDUCTIONS:
        torch.testing.assert_close(
            P.binary_cross_entropy_with_logits(specials, targets, reduction=reduction),
            F.binary_cross_entropy_with_logits(specials, targets, reduction=reduction), equal_nan=True)
        torch.testing.assert_close(
            P.binary_cross_entropy_with_logits(specials, targets, pos_weight=pw, reduction=reduction),
            F.binary_cross_entropy_with_logits(specials, targets, pos_weight=pw, reduction=reduction),
            equal_nan=True)
        torch.testing.assert_close(P.mse_loss(specials, targets, reduction=reduction),
                                   F.mse_loss(specials, targets, reduction=reduction), equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_reductions_match_torch(device):
    x = torch.empty(0, 3, device=device)
    for reduction in REDUCTIONS:
        torch.testing.assert_close(P.binary_cross_entropy(x, x, reduction=reduction),
                                   F.binary_cross_entropy(x, x, reduction=reduction), equal_nan=True)
        torch.testing.assert_close(P.mse_loss(x, x, reduction=reduction),
                                   F.mse_loss(x, x, reduction=reduction), equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
def test_large_float32_sum_keeps_accuracy(device):
    # 2^24 + 5 elements: a float32 running sum would have stopped growing long before the end
    n = 2**24 + 5
    x = torch.full((n,), 1.0, device=device)
    y = torch.zeros(n, device=device)
    # exact up to the final rounding to float32: every partial is an integer below 2^24
    assert P.mse_loss(x, y, reduction="sum").item() == torch.tensor(float(n)).item()
    x = torch.rand(n, device=device, dtype=torch.float64)
    y = torch.rand(n, device=device, dtype=torch.float64)
    exact = F.mse_loss(x, y, reduction="mean")
    ours = P.mse_loss(x.float(), y.float(), reduction="mean").double()
    assert abs(ours - exact) / exact < 1e-6
    p = x.clamp(0.01, 0.99)
    exact = F.binary_cross_entropy(p, y, reduction="sum")
    ours = P.binary_cross_entropy(p.float(), y.float(), reduction="sum").double()
    assert abs(ours - exact) / exact < 1e-6


@pytest.mark.parametrize("device", DEVICES)
def test_reductions_are_deterministic(device):
    x = torch.randn(3_000_001, device=device)
    y = torch.rand(3_000_001, device=device)
    first = P.binary_cross_entropy_with_logits(x, y)
    for _ in range(3):
        assert torch.equal(P.binary_cross_entropy_with_logits(x, y), first)


def test_cpu_sums_do_not_depend_on_the_thread_count():
    """Fixed blocks, added in order: the same bits on 1, 2 or 3 threads (3 splits the blocks unevenly)."""
    x = torch.randn(1_000_003)
    y = torch.rand(1_000_003)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append([P.binary_cross_entropy_with_logits(x, y), P.mse_loss(x, y, reduction="sum")])
    finally:
        torch.set_num_threads(before)
    for r in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(r, results[0]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_losses_promote_mixed_dtypes(device, reduction):
    """Every tensor of a loss promotes (the README's rule): the result has the promoted dtype and the value
    of the loss of the promoted tensors. (torch's BCE would reject the target, or keep float16 for the weight.)"""
    x = torch.rand(5, 3, device=device, dtype=torch.float16) * 0.9 + 0.05
    y = torch.rand(5, 3, device=device, dtype=torch.float32)
    w = torch.rand(3, device=device, dtype=torch.float64) + 0.5
    logits = torch.randn(5, 3, device=device, dtype=torch.bfloat16)
    cases = [
        (P.binary_cross_entropy(x, y, reduction=reduction), torch.float32,
         F.binary_cross_entropy(x.float(), y, reduction=reduction)),
        (P.binary_cross_entropy(x, y.half(), w, reduction=reduction), torch.float64,
         F.binary_cross_entropy(x.double(), y.half().double(), w, reduction=reduction)),
        (P.binary_cross_entropy_with_logits(logits, y, w, reduction=reduction, pos_weight=w.float()), torch.float64,
         F.binary_cross_entropy_with_logits(logits.double(), y.double(), w, reduction=reduction, pos_weight=w)),
        (P.mse_loss(logits, y, reduction=reduction), torch.float32, F.mse_loss(logits.float(), y, reduction=reduction)),
    ]
    for out, dtype, expected in cases:
        assert out.dtype == dtype
        torch.testing.assert_close(out, expected)
