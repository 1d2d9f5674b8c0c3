"""Property-based tests (hypothesis): random shapes (0 to 5 dims, sizes 0 to a few thousand, at most 6000
elements), broadcasting partners, layouts (transposed, stepped, offset, expanded), dtypes and values (+-inf,
NaN, +-0, subnormals, huge magnitudes); outputs and gradients compared with torch. Fixed seed (derandomized)
so CI is repeatable; HYPOTHESIS_PROFILE=long runs many more cases."""
import os

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyext.ops as P

settings.register_profile("ci", max_examples=150, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SPECIALS = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-40, -1e-40, 3e38, -3e38, 1.0, -1.0]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12),
       torch.float16: dict(rtol=2e-3, atol=1e-3), torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2)}

MAX_NUMEL = 6000


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


# 0 to 5 dims; most sizes 0 to 9, some up to a few thousand (long rows: vector body and tail). The
# product of the sizes with 0 read as 1 is at most MAX_NUMEL: an empty shape's layouts (expanded, stepped)
# allocate the other dimensions.
shapes = st.lists(st.one_of(st.integers(0, 9), st.integers(10, 3000)), min_size=0, max_size=5) \
    .map(tuple).filter(lambda s: _numel(max(d, 1) for d in s) <= MAX_NUMEL)


@st.composite
def tensor_of(draw, shape, dtype, low=None, high=None, specials=True):
    """A tensor of `shape` in one of several layouts, with normal values and some special ones."""
    numel = _numel(shape)
    layout = draw(st.sampled_from(["contiguous", "transposed", "stepped", "offset", "expanded"]))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)

    def fill(s):
        if low is None:
            t = torch.randn(s, generator=gen, dtype=torch.float64) * draw(st.sampled_from([1.0, 10.0, 1e3]))
        else:
            t = torch.rand(s, generator=gen, dtype=torch.float64) * (high - low) + low
        if specials and t.numel() and draw(st.booleans()):
            flat = t.view(-1)
            for _ in range(draw(st.integers(1, 3))):
                flat[draw(st.integers(0, flat.numel() - 1))] = draw(st.sampled_from(SPECIALS))
        return t.to(dtype)

    if layout == "transposed" and len(shape) >= 2:
        return fill(shape[:-2] + (shape[-1], shape[-2])).transpose(-1, -2)
    if layout == "stepped" and shape:
        return fill(shape[:-1] + (2 * shape[-1],))[..., ::2]
    if layout == "offset":
        return fill((numel + 1,))[1:].view(shape)
    if layout == "expanded" and shape:
        return fill(shape[:-1] + (1,)).expand(shape)
    return fill(shape)


@st.composite
def broadcast_pair(draw):
    shape = draw(shapes)
    other = tuple(draw(st.sampled_from([s, 1])) for s in shape[draw(st.integers(0, len(shape))):])
    if draw(st.booleans()):
        shape, other = other, shape
    return shape, other


def compare(ours, theirs, dtype, inputs, grad_inputs, cancels=False):
    """Forward equal (NaN where torch has NaN); gradients where every value involved is finite.

    With `cancels` the absolute tolerance grows with the inputs' magnitude: formulas such as
    (1 - y) x - ln sigmoid(x) cancel large terms, and two correct float32 evaluations then differ by a
    few ulps of |x|."""
    out, ref = ours(*inputs), theirs(*inputs)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    if ref.dim() == 0 and not torch.isfinite(ref) and dtype != torch.float64:
        # A reduced loss whose float partial sums overflow although the result does not: torch's float
        # accumulation gives inf, pyext (such a block summed again in double) the finite value. Compare with torch's
        # own result in float64, rounded to dtype (still inf where the result itself overflows).
        exact = theirs(*[t.double() for t in inputs]).to(dtype)
        if torch.isfinite(exact):
            ref = exact
    finite = [t[torch.isfinite(t)].abs().max().item() for t in inputs if torch.isfinite(t).any()]
    tol = dict(TOL[dtype])
    if cancels:
        tol["atol"] = max(tol["atol"], 16 * torch.finfo(dtype).eps * max(finite, default=0.0))
    torch.testing.assert_close(out, ref, equal_nan=True, **tol)
    if not grad_inputs or not out.numel() or not all(torch.isfinite(t).all() for t in inputs):
        return
    leaves = [t.detach().clone().requires_grad_(i in grad_inputs) for i, t in enumerate(inputs)]
    picked = [leaves[i] for i in grad_inputs]
    # a random incoming gradient, and ones (loss.backward(): a reduced loss's CPU gradient then comes from its
    # forward, csrc/autograd.cpp)
    for g in (torch.randn(out.shape, dtype=torch.float64).to(dtype), torch.ones(out.shape, dtype=dtype)):
        mine = torch.autograd.grad(ours(*leaves), picked, g)
        want = torch.autograd.grad(theirs(*leaves), picked, g)
        for a, b in zip(mine, want):
            torch.testing.assert_close(a, b, equal_nan=True, **tol)


@given(pair=broadcast_pair(), dtype=st.sampled_from(DTYPES), op=st.sampled_from(["add", "mul"]), data=st.data())
def test_binary(pair, dtype, op, data):
    a = data.draw(tensor_of(pair[0], dtype))
    b = data.draw(tensor_of(pair[1], dtype))
    ours, theirs = (lambda x, y: P.add(x, y, alpha=0.5), lambda x, y: torch.add(x, y, alpha=0.5)) if op == "add" \
        else (P.mul, torch.mul)
    if dtype in (torch.float16, torch.bfloat16) and op == "add":
        ours, theirs = P.add, torch.add  # torch rounds alpha * other to the half type first
    compare(ours, theirs, dtype, [a, b], [0, 1] if dtype == torch.float64 else [])


@given(shape=shapes, dtype=st.sampled_from(DTYPES), op=st.sampled_from(["add", "mul"]),
       number=st.sampled_from([2.5, -3, 0.1, 1e-3, 0.0, float("inf"), float("nan")]), data=st.data())
def test_number(shape, dtype, op, number, data):
    x = data.draw(tensor_of(shape, dtype))
    ours, theirs = (lambda t: P.add(t, number), lambda t: torch.add(t, number)) if op == "add" \
        else (lambda t: P.mul(t, number), lambda t: torch.mul(t, number))
    compare(ours, theirs, dtype, [x], [0] if dtype == torch.float64 else [])


@given(shape=shapes, dtype=st.sampled_from(DTYPES), data=st.data())
def test_sigmoid(shape, dtype, data):
    x = data.draw(tensor_of(shape, dtype))
    compare(P.sigmoid, torch.sigmoid, dtype, [x], [0])


@given(shape=shapes, dtype=st.sampled_from([torch.float32, torch.float64]),
       reduction=st.sampled_from(["none", "mean", "sum"]), data=st.data())
def test_losses(shape, dtype, reduction, data):
    x = data.draw(tensor_of(shape, dtype))
    y = data.draw(tensor_of(shape, dtype, low=0.0, high=1.0, specials=False))
    compare(lambda a, b: P.binary_cross_entropy_with_logits(a, b, reduction=reduction),
            lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), dtype, [x, y], [0, 1],
            cancels=True)
    compare(lambda a, b: P.mse_loss(a, b, reduction=reduction),
            lambda a, b: F.mse_loss(a, b, reduction=reduction), dtype, [x, y], [0, 1], cancels=reduction != "none")
    w = data.draw(tensor_of(shape, dtype, low=0.5, high=2.0, specials=False))
    compare(lambda a, b, c: P.mse_loss(a, b, reduction=reduction, weight=c),
            lambda a, b, c: F.mse_loss(a, b, reduction=reduction, weight=c), dtype, [x, y, w], [0, 1, 2])
    p = data.draw(tensor_of(shape, dtype, low=0.0, high=1.0, specials=False))
    compare(lambda a, b: P.binary_cross_entropy(a, b, reduction=reduction),
            lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction), dtype, [p, y], [0])
