"""add, mul, sigmoid (and their in-place forms) against torch: values and gradients over
device x dtype x shape x layout, broadcasting, numbers as operands, promotion, special values."""
import math

import pytest
import torch
import torch.nn.functional as F

import pyext.ops as P
from conftest import DEVICES, DTYPES, LAYOUTS, SHAPES, assert_close, make, shape_id

BINARY = {
    "add": (lambda a, b: P.add(a, b), lambda a, b: torch.add(a, b)),
    "add_alpha": (lambda a, b: P.add(a, b, alpha=-0.5), lambda a, b: torch.add(a, b, alpha=-0.5)),
    "mul": (P.mul, torch.mul),
}


def grads(out, inputs, grad_out):
    inputs = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    return torch.autograd.grad(out, inputs, grad_out, allow_unused=True)


def check_against_torch(ours_fn, torch_fn, inputs, dtype, upcast=False, **tol):
    """Forward and backward of ours on `inputs` against torch's on the same values.

    With `upcast` (the losses), torch's op runs on half-type inputs widened to float32 (torch's CPU
    losses round intermediates to the half type; we compute in float like its CUDA kernels), and its
    results are rounded back to the half type before the comparison."""
    ref_dtype = torch.float32 if upcast and dtype in (torch.float16, torch.bfloat16) else dtype
    ref_inputs = [t.detach().to(ref_dtype, copy=True).requires_grad_(t.requires_grad)
                  if isinstance(t, torch.Tensor) else t for t in inputs]
    out = ours_fn(*inputs)
    ref = torch_fn(*ref_inputs)
    assert out.dtype == dtype and out.shape == ref.shape and out.device == ref.device
    assert_close(out, ref.to(dtype), dtype, **tol)
    if not out.requires_grad:
        return
    # A random incoming gradient, then ones (as loss.backward() gives a reduced loss, whose input's gradient then
    # comes from its forward: csrc/autograd.cpp), each through a graph of its own.
    for k, g in enumerate((torch.randn(out.shape, dtype=torch.float64), torch.ones(out.shape))):
        g = g.to(dtype=dtype, device=out.device)
        if k:
            out, ref = ours_fn(*inputs), torch_fn(*ref_inputs)
        for ours, theirs in zip(grads(out, inputs, g), grads(ref, ref_inputs, g.to(ref_dtype))):
            assert ours.shape == theirs.shape
            assert_close(ours, theirs.to(dtype), dtype, **tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", ["add", "add_alpha", "mul"])
def test_binary_layouts(op, device, dtype, shape, layout):
    ours, theirs = BINARY[op]
    a = make(shape, dtype, device, layout).requires_grad_()
    b = make(shape, dtype, device, "offset" if layout == "contiguous" else "contiguous").requires_grad_()
    check_against_torch(ours, theirs, [a, b], dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_sigmoid_layouts(device, dtype, shape, layout):
    x = make(shape, dtype, device, layout, low=-8, high=8).requires_grad_()
    check_against_torch(P.sigmoid, torch.sigmoid, [x], dtype)


BROADCASTS = [((20, 1), (1,)), ((5, 10, 5), (10, 5)), ((3, 1, 4), (1, 5, 1)), ((4,), ()), ((), (4,)),
              ((2, 3), (0, 1, 3)), ((1024, 257), (257,)), ((7, 1), (7, 9))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shapes", BROADCASTS, ids=lambda s: f"{shape_id(s[0])}-{shape_id(s[1])}")
@pytest.mark.parametrize("op", ["add", "add_alpha", "mul"])
def test_binary_broadcast(op, device, dtype, shapes):
    ours, theirs = BINARY[op]
    a = make(shapes[0], dtype, device).requires_grad_()
    b = make(shapes[1], dtype, device).requires_grad_()
    check_against_torch(ours, theirs, [a, b], dtype)


# Two-dimensional iterations (on CUDA, the rows layout: each row a contiguous run or one value,
# rows anywhere): operands repeated on every row or along each row, row starts 16-byte aligned or
# not, column counts a multiple of the 16-byte pack or not. On the CPU, rows of up to 512 bytes repeated
# beside contiguous operands run as one flat run, the row read from a tile from an offset that changes from
# chunk to chunk, where the rows end in a tail or (for add and mul) are one or two vector steps, at least 256 of
# them; and a column or a transposed operand beside rows shorter than a vector step is gathered
# (csrc/cpu_kernels.cpp, plan_block): rows shorter than a vector step, longer, near the tile's limit. A column
# beside rows of whole vector steps runs row by row, the rows' layout decided once (for add and mul, which operand
# is the column compiled in: the second, the first, or both left to run time); beside rows of a few steps and a
# tail, flat (and sliced rows then gathered for sigmoid, whose scalar steps cost more). Longer rows sliced from wider
# ones end in a masked vector step where a scalar step costs more (bfloat16 and half, sigmoid, a tail of four or
# more); sliced rows shorter than a vector step run row by row in that step, or, up to four elements, gathered.
# Each entry: (a, b) from a maker.
ROWS = {
    "row-broadcast": lambda m: (m((64, 1024)), m((1024,))),
    "narrow-rows": lambda m: (m((1000, 3)), m((3,))),
    "short-rows": lambda m: (m((600, 17)), m((17,))),
    "tile-limit-rows": lambda m: (m((100, 63)), m((63,))),
    "many-vector-rows": lambda m: (m((300, 16)), m((16,))),
    "few-vector-rows": lambda m: (m((100, 64)), m((64,))),
    "vector-rows": lambda m: (m((80, 128)), m((128,))),
    "narrow-column": lambda m: (m((1000, 3)), m((1000, 1))),
    "narrow-transposed": lambda m: (m((3, 1000)).t(), m((1000, 3))),
    "column-broadcast": lambda m: (m((64, 256)), m((64, 1))),
    "column-first": lambda m: (m((64, 1)), m((64, 256))),
    "two-columns": lambda m: (m((64, 1)).expand(64, 256), m((64, 1))),
    "vector-column": lambda m: (m((300, 16)), m((300, 1))),
    "short-column": lambda m: (m((600, 24)), m((600, 1))),
    "sliced-short-rows": lambda m: (m((300, 29))[:, :24], m((300, 29))[:, 5:]),
    "sliced-rows-tail": lambda m: (m((40, 100))[:, :90], m((40, 100))[:, 10:]),
    "sliced-narrow-rows": lambda m: (m((500, 8))[:, :7], m((500, 9))[:, 2:]),
    "sliced-tiny-rows": lambda m: (m((500, 4))[:, :3], m((500, 4))[:, 1:]),
    "sliced-pairs": lambda m: (m((700, 4))[:, :2], m((700, 4))[:, 2:]),
    "sliced-quads": lambda m: (m((300, 8))[:, 3:7], m((300, 5))[:, 1:]),
    "outer": lambda m: (m((64, 1)), m((1, 256))),
    "aligned-slices": lambda m: (m((33, 1032))[:, 8:], m((33, 1024))),
    "misaligned-rows": lambda m: (m((33, 1030))[:, :1024], m((1024,))),
    "odd-columns": lambda m: (m((31, 257)), m((31, 257))[:, :1].expand(31, 257)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rows", list(ROWS))
def test_rows(device, dtype, rows):
    a, b = ROWS[rows](lambda shape: make(shape, dtype, device))
    a, b = a.detach().requires_grad_(), b.detach().requires_grad_()
    for op in BINARY:
        check_against_torch(*BINARY[op], [a, b], dtype)
    check_against_torch(P.sigmoid, torch.sigmoid, [a], dtype)
    rows, cols = torch.broadcast_shapes(a.shape, b.shape)
    # In place into the rows of a wider buffer, at its rows' end or start (what lies beside them left as it was),
    # or into a buffer of their own.
    wide = make((rows, cols + 4), dtype, device)
    for buffer, view in ((wide, lambda t: t[:, 4:]), (wide, lambda t: t[:, :cols]), (wide[:, 4:].contiguous(), None)):
        for ours, theirs in ((P.add_, torch.Tensor.add_), (P.mul_, torch.Tensor.mul_)):
            got, expected = buffer.clone(), buffer.clone()
            ours(view(got) if view else got, b.detach())
            theirs(view(expected) if view else expected, b.detach())
            assert_close(got, expected, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtypes", [(torch.float32,) * 3, (torch.bfloat16,) * 3, (torch.float16,) * 3,
                                    (torch.bfloat16, torch.float32, torch.bfloat16),
                                    (torch.float32, torch.bfloat16, torch.float64)], ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_mul_backward_op(device, dtypes, layout):
    # mul's two gradients in one pass: g b and g a in the broadcast shape and promoted dtype of the three
    g = make((6, 9), dtypes[0], device, layout)
    a, b = make((6, 1), dtypes[1], device), make((9,), dtypes[2], device, "stepped")
    ga, gb = torch.ops.pyext.mul_backward(g, a, b)
    dtype = torch.promote_types(torch.promote_types(dtypes[0], dtypes[1]), dtypes[2])
    for ours, theirs in ((ga, torch.mul(g.to(dtype), b)), (gb, torch.mul(g.to(dtype), a))):
        assert ours.dtype == dtype and ours.shape == (6, 9)
        assert_close(ours, theirs, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("other", [2.5, -3, 1e-3, 0.1, True])
@pytest.mark.parametrize("rows", ["contiguous", "sliced", "stepped", "transposed"])
def test_number_operand(device, dtype, other, rows):
    # sliced: rows of whole vector steps, not one run, the number an argument repeated along each row; stepped:
    # the scalar steps, where a float or double number is read as a tensor stepping 0; transposed: the output
    # laid out as the input is
    if rows == "sliced":
        x = make((8, 288), dtype, device)[:, :256]
    else:
        x = make((4, 33), dtype, device, rows)
    x = x.detach().requires_grad_()
    check_against_torch(lambda t: P.add(t, other, alpha=2), lambda t: torch.add(t, other, alpha=2), [x], dtype)
    check_against_torch(lambda t: P.mul(t, other), lambda t: torch.mul(t, other), [x], dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_cpu_scalar_tensor_beside_any_device(device):
    x = make((5, 3), torch.float32, device).requires_grad_()
    s = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)  # 0-d CPU: a number, as in torch
    out = P.mul(x, s)
    ref = torch.mul(x.detach(), s.detach())
    assert out.dtype == ref.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    gx, gs = torch.autograd.grad(out.sum(), [x, s])
    torch.testing.assert_close(gx, torch.full_like(x, 1.5))
    assert gs.device.type == "cpu" and gs.dtype == torch.float64
    torch.testing.assert_close(gs, x.detach().sum().to("cpu", torch.float64))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "a_dtype,b_dtype",
    [(torch.float16, torch.float32), (torch.bfloat16, torch.float64), (torch.int64, torch.float32),
     (torch.float32, torch.int32)],
)
def test_type_promotion(device, a_dtype, b_dtype):
    a = (torch.randn(6, 4) * 5).to(device=device, dtype=a_dtype)
    b = (torch.randn(4) * 5).to(device=device, dtype=b_dtype)
    for ours, theirs in (BINARY["add"], BINARY["mul"]):
        out, ref = ours(a, b), theirs(a, b)
        assert out.dtype == ref.dtype
        torch.testing.assert_close(out, ref)
    x = torch.arange(6, device=device)  # integer input: sigmoid gives the default float dtype
    torch.testing.assert_close(P.sigmoid(x), torch.sigmoid(x))
    torch.testing.assert_close(P.mul(x, 0.5), torch.mul(x, 0.5))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "offset", "stepped"])
@pytest.mark.parametrize("other_shape", [(9, 17), (17,), ()], ids=shape_id)
def test_inplace(device, dtype, layout, other_shape):
    x = make((9, 17), dtype, device, layout)
    y = make(other_shape, dtype, device)
    # alpha = 2 is exact in every dtype: torch rounds alpha * other to the half type, we do not
    for ours, theirs, kw in ((P.add_, torch.Tensor.add_, {"alpha": 2}), (P.mul_, torch.Tensor.mul_, {})):
        expected = theirs(x.clone(), y, **kw)
        ptr, strides = x.data_ptr(), x.stride()
        out = ours(x, y, **kw)
        assert out is x and x.data_ptr() == ptr and x.stride() == strides
        assert_close(x, expected, dtype)
        expected = theirs(x.clone(), 0.75)
        ours(x, 0.75)
        assert_close(x, expected, dtype)


def test_inplace_promotes_then_casts():
    x = torch.randn(8, dtype=torch.float16)
    y = torch.randn(8, dtype=torch.float32)
    expected = x.clone().add_(y, alpha=0.5)
    P.add_(x, y, alpha=0.5)
    torch.testing.assert_close(x, expected)
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output type Long"):
        P.add_(torch.arange(3), 0.5)


@pytest.mark.parametrize("device", DEVICES)
def test_inplace_autograd(device):
    w = torch.randn(5, device=device, requires_grad=True)
    y = torch.randn(5, device=device, requires_grad=True)
    z = torch.randn(5, device=device, requires_grad=True)

    def run(add_, mul_):
        t = w * 1.0  # a non-leaf, so in-place is allowed
        add_(t, y, alpha=2.0)
        mul_(t, z)
        return torch.autograd.grad(t.sum(), [w, y, z])

    ours = run(P.add_, P.mul_)
    ref = run(torch.Tensor.add_, torch.Tensor.mul_)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_special_values(device, dtype):
    specials = [0.0, -0.0, 1.0, -1.0, 1000.0, -1000.0, math.inf, -math.inf, math.nan, 88.0, -88.0, 1e-30]
    x = torch.tensor(specials, dtype=dtype, device=device)
    y = x.flip(0)
    torch.testing.assert_close(P.sigmoid(x), torch.sigmoid(x), equal_nan=True)
    assert P.sigmoid(torch.tensor([1000.0, -1000.0], dtype=dtype, device=device)).tolist() == [1.0, 0.0]
    torch.testing.assert_close(P.add(x, y), torch.add(x, y), equal_nan=True)
    torch.testing.assert_close(P.mul(x, y), torch.mul(x, y), equal_nan=True)
    torch.testing.assert_close(P.mul(x, math.inf), torch.mul(x, math.inf), equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("factor", [1.0, 2.0**-7, 2.0**-120, 1.0078125, 3.0, -0.75], ids=str)
def test_bfloat16_rounds_as_torch(device, factor):
    """Every bfloat16 value times a factor (a bfloat16 value too): each product is exact in float, so its
    bfloat16 result is one rounding, bit for bit torch's (NaN aside): normal, subnormal (2^-120 and 2^-7 take
    normals there), zero or inf, ties included (1 + 2^-7). Shuffled, so that vector steps mix subnormal
    results with others."""
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    a = bits.view(torch.bfloat16)[torch.randperm(2**16, generator=torch.Generator().manual_seed(0))].to(device)
    expected = torch.mul(a, factor)
    for other in (factor, torch.full_like(a, factor)):
        torch.testing.assert_close(P.mul(a, other), expected, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
def test_vector_path_tails(device):
    # every length around the vector widths (8, 16 on CPU; 4 and 8 per 16-byte load on CUDA)
    for n in range(1, 70):
        for dtype in (torch.float32, torch.bfloat16):
            a = make((n,), dtype, device)
            b = make((n,), dtype, device, "offset")
            torch.testing.assert_close(P.add(a, b), torch.add(a, b))
            torch.testing.assert_close(P.sigmoid(b), torch.sigmoid(b))


def _memory_layouts(device):
    """(name, a, b): operands whose memory order is not their logical one."""
    cl, cl3d = torch.channels_last, torch.channels_last_3d

    def r(*shape):
        return torch.rand(shape, device=device) * 0.9 + 0.05
    return [
        ("channels_last", r(2, 3, 4, 5).to(memory_format=cl), r(2, 3, 4, 5).to(memory_format=cl)),
        ("channels_last_and_contiguous", r(2, 3, 4, 5).to(memory_format=cl), r(2, 3, 4, 5)),
        ("channels_last_3d", r(2, 3, 2, 4, 5).to(memory_format=cl3d), r(2, 3, 2, 4, 5).to(memory_format=cl3d)),
        ("transposed", r(5, 4).t(), r(5, 4).t()),
        ("permuted", r(4, 5, 3).permute(2, 0, 1), r(4, 5, 3).permute(2, 0, 1)),
    ]


@pytest.mark.parametrize("device", DEVICES)
def test_outputs_follow_the_operands_memory_order(device):
    """A new output is laid out as torch lays out its own: in the operands' memory order (channels-last in,
    channels-last out), not merely with their shape."""
    ops = [
        (P.add, torch.add),
        (P.mul, torch.mul),
        (lambda a, b: P.sigmoid(a), lambda a, b: torch.sigmoid(a)),
        (lambda a, b: P.binary_cross_entropy(a, b, reduction="none"),
         lambda a, b: F.binary_cross_entropy(a, b, reduction="none")),
        (lambda a, b: P.mse_loss(a, b, reduction="none"), lambda a, b: F.mse_loss(a, b, reduction="none")),
    ]
    for name, a, b in _memory_layouts(device):
        for ours, theirs in ops:
            out, expected = ours(a, b), theirs(a, b)
            assert out.stride() == expected.stride(), name
            assert_close(out, expected, torch.float32)


def test_tutorial_second_derivative():
    # d^2(x^2)/dx^2 = 2, computed with create_graph=True as the tutorial does
    x = torch.tensor(3.0, requires_grad=True)
    y = P.mul(x, x)
    (dy,) = torch.autograd.grad(y, x, create_graph=True)
    (d2y,) = torch.autograd.grad(dy, x)
    assert dy.item() == 6.0 and d2y.item() == 2.0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "offset"])
@pytest.mark.parametrize("op", ["add_alpha", "mul"])
def test_outputs_larger_than_the_cache(op, dtype, offset):
    """Operands larger than the last-level cache (the share of it the CPU loops count on, at most 32 MiB). The
    loops write an output with ordinary stores where its pages are not mapped in yet (an out-of-place op's output
    mostly is a fresh allocation past glibc's mmap threshold), where it is also an input (the in-place ops'), and
    in rows whose start is not aligned to the vector size; else with non-temporal stores, which the next test
    covers for certain."""
    n = (1 << 24) + 5  # 3 x 2^24 elements: 96 MiB in bfloat16
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n + offset, generator=gen).to(dtype)[offset:]
    b = torch.randn(n + offset, generator=gen).to(dtype)[offset:]
    ours, theirs = BINARY[op]
    expected = theirs(a, b)
    assert_close(ours(a, b), expected, dtype)
    inplace = torch.empty(n + offset, dtype=dtype)[offset:].copy_(a)
    (P.mul_ if op == "mul" else lambda t, b: P.add_(t, b, alpha=-0.5))(inplace, b)
    assert_close(inplace, expected, dtype)
    assert_close(P.sigmoid(a), torch.sigmoid(a), dtype)
    if op == "mul":  # two outputs
        ga, gb = torch.ops.pyext.mul_backward(b, a, b)
        assert_close(ga, b * b, dtype)
        assert_close(gb, b * a, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_output_mapped_in_beside_operands_larger_than_the_cache(dtype):
    """An output whose pages are mapped in, aliasing no input, beside operands larger than the last-level cache:
    the CPU loop writes it with non-temporal stores. A reduced loss's backward with an incoming gradient other
    than 1 computes into the gradient its forward kept (written by that forward, so mapped in)."""
    n = (1 << 24) + 5
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(n, generator=gen) * 0.98 + 0.01).to(dtype).requires_grad_()
    y = torch.rand(n, generator=gen).to(dtype)
    g = torch.tensor(2.5, dtype=dtype)
    (ours,) = torch.autograd.grad(P.binary_cross_entropy(x, y), x, g)
    (theirs,) = torch.autograd.grad(F.binary_cross_entropy(x, y), x, g)
    assert_close(ours, theirs, dtype)
