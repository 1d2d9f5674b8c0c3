"""gradcheck and gradgradcheck (float64) for every op and every differentiable input."""
import contextlib

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import pyext.ops as P
from conftest import DEVICES, DTYPES, LAYOUTS, TOL, make


def rand(shape, device, low=-2.0, high=2.0):
    t = torch.rand(shape, dtype=torch.float64, device=device) * (high - low) + low
    return t.requires_grad_()


def check(fn, inputs):
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (4,)), ((2, 3, 1), ())])
def test_add_mul(device, shapes):
    a, b = rand(shapes[0], device=device), rand(shapes[1], device=device)
    check(lambda x, y: P.add(x, y, alpha=-1.5), (a, b))
    check(P.mul, (a, b))
    check(lambda x: P.add(x, 2.0, alpha=3), (a,))
    check(lambda x: P.mul(x, -0.25), (a,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (4,)), ((2, 3, 1), ())])
def test_mul_backward(device, shapes):
    # the op behind mul's backward (both gradients in one pass), differentiable in turn
    a, b = rand(shapes[0], device=device), rand(shapes[1], device=device)
    g = rand(torch.broadcast_shapes(a.shape, b.shape), device=device)
    check(torch.ops.pyext.mul_backward, (g, a, b))
    # one result used: the node's other incoming gradient is undefined (zero)
    check(lambda *t: torch.ops.pyext.mul_backward(*t)[0], (g, a, b))
    check(lambda *t: torch.ops.pyext.mul_backward(*t)[1], (g, a, b))


def _seen():
    """A TorchDispatchMode that lists the pyext ops dispatched while it is active (`.funcs`)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.funcs = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "pyext":
                self.funcs.append(func)
            return func(*args, **(kwargs or {}))

    return Seen()


@pytest.mark.parametrize("device", DEVICES)
def test_mul_gradients_in_one_pass(device):
    # Where both operands want a gradient, mul's backward is one mul_backward (5 transfers an element, not the
    # 6 of two products); where one does, one product.
    ops = torch.ops.pyext
    a, b = rand((3, 4), device=device), rand((4,), device=device)
    for wants, expected in (((True, True), [ops.mul_backward.default]), ((True, False), [ops.mul.Tensor]),
                            ((False, True), [ops.mul.Tensor])):
        x, y = a.detach().requires_grad_(wants[0]), b.detach().requires_grad_(wants[1])
        out = P.mul(x, y)
        with _seen() as mode:
            got = torch.autograd.grad(out, [t for t in (x, y) if t.requires_grad], torch.ones_like(out))
        assert mode.funcs == expected, wants
        expected_grads = [t for t, w in zip((y.detach().expand(3, 4), x.detach().sum(0)), wants) if w]
        for ours, theirs in zip(got, expected_grads):
            torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(), (0,), (1023,), (37, 19), (2, 5, 7), (2**17 + 3,)], ids=str)
def test_reduced_loss_gradient_from_the_forward(device, dtype, layout, reduction, shape):
    # A 'mean' or 'sum' loss whose input wants a gradient computes it in its forward's one pass (csrc/autograd.cpp,
    # LossWithGradient), and its backward computes into it only for an incoming gradient other than 1 (which pass
    # gave it: test_reduced_loss_gradient_is_the_forwards). Either way the gradient is what the loss's backward op
    # gives, bit for bit. Under a dispatch mode the backward dispatches that op, which the mode sees. Both match
    # torch.
    red = {"mean": 1, "sum": 2}[reduction]
    # (several blocks of the summing loop at 2^17 + 3; a weight along the last dimension)
    x = make(shape, dtype, device, layout, low=0.02, high=0.98)
    z = make(shape, dtype, device, layout)
    y = make(shape, dtype, device, low=0.0, high=1.0)
    w = make(shape[-1:], dtype, device, low=0.5, high=1.5)
    for ours, theirs, inp, kw, backward_op in _reduced_losses(x, z, y, w, red):
        for g, under_mode in ((1.0, False), (2.5, False), (1.0, True), (2.5, True)):
            grad_out = torch.tensor(g, dtype=dtype, device=device)
            leaf = inp.detach().requires_grad_()
            out = ours(leaf, y, reduction=reduction, **kw)
            with _seen() if under_mode else contextlib.nullcontext() as mode:
                got, = torch.autograd.grad(out, leaf, grad_out)
            if under_mode:
                assert [f.name() for f in mode.funcs] == [backward_op.__name__]
            torch.testing.assert_close(got, backward_op(grad_out, inp), rtol=0, atol=0)
            # torch in float64 on the same values (its half and bfloat16 backwards round intermediates)
            leaf_t = inp.detach().double().requires_grad_()
            kw64 = {k: v.double() for k, v in kw.items()}
            out_t = theirs(leaf_t, y.double(), reduction=reduction, **kw64)
            expected, = torch.autograd.grad(out_t, leaf_t, grad_out.double())
            torch.testing.assert_close(got, expected.to(dtype), **TOL[dtype])


def _reduced_losses(x, z, y, w, red):
    """(pyext loss, torch loss, input, keyword arguments, the loss's backward op as f(grad, input)) for the losses
    whose reduced forms compute their input's gradient in the forward: BCE on x, the others on z, target y."""
    ops = torch.ops.pyext
    F = torch.nn.functional

    def op(name, *rest):
        fn = lambda g, a: getattr(ops, name)(g, a, y, *rest, red)  # noqa: E731
        fn.__name__ = f"pyext::{name}"
        return fn

    return [
        (P.binary_cross_entropy, F.binary_cross_entropy, x, dict(weight=w), op("binary_cross_entropy_backward", w)),
        (P.binary_cross_entropy, F.binary_cross_entropy, x, {}, op("binary_cross_entropy_backward", None)),
        (P.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, z, dict(weight=w, pos_weight=w),
         op("binary_cross_entropy_with_logits_backward", w, w)),
        (P.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, z, {},
         op("binary_cross_entropy_with_logits_backward", None, None)),
        (P.mse_loss, F.mse_loss, z, {}, op("mse_loss_backward")),
    ]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reduced_loss_gradient_is_the_forwards(device, dtype):
    # Which pass computed the gradient shows where the input changes between forward and backward unseen by the
    # version check (through .data): for an incoming gradient of 1 the gradient is the forward's, at the old input
    # (on a GPU, the backward's kernel has returned at once); for another, or under a dispatch mode, the backward's,
    # at the new one.
    red = 1
    x = make((1000,), dtype, device, low=0.02, high=0.98)
    z = make((1000,), dtype, device)
    y = make((1000,), dtype, device, low=0.0, high=1.0)
    w = make((1000,), dtype, device, low=0.5, high=1.5)
    for ours, _, inp, kw, backward_op in _reduced_losses(x, z, y, w, red):
        changed = inp.flip(0)
        for g, under_mode in ((1.0, False), (2.5, False), (1.0, True)):
            grad_out = torch.tensor(g, dtype=dtype, device=device)
            leaf = inp.detach().clone().requires_grad_()
            out = ours(leaf, y, **kw)
            leaf.data.copy_(changed)
            with _seen() if under_mode else contextlib.nullcontext():
                got, = torch.autograd.grad(out, leaf, grad_out)
            at = inp if g == 1.0 and not under_mode else changed
            torch.testing.assert_close(got, backward_op(grad_out, at), rtol=0, atol=0)
            assert not torch.equal(backward_op(grad_out, inp), backward_op(grad_out, changed))


def test_mse_broadcast_gradient_from_the_backward():
    # Where input and target broadcast, the input's gradient is summed back to its shape: the backward op computes it
    # (the forward's pass gives a gradient of the broadcast shape).
    x = torch.rand(3, 1, requires_grad=True)
    y = torch.rand(4)
    with pytest.warns(UserWarning):
        out = P.mse_loss(x, y)
    got, = torch.autograd.grad(out, x)
    x_t = x.detach().requires_grad_()
    with pytest.warns(UserWarning):
        expected, = torch.autograd.grad(torch.nn.functional.mse_loss(x_t, y), x_t)
    torch.testing.assert_close(got, expected)


def test_reduced_loss_gradient_from_the_forward_is_given_once():
    # A retained graph's next backward recomputes: the first caller owns the tensor it was given.
    x = torch.rand(100).requires_grad_()
    y = torch.rand(100)
    for out in (P.binary_cross_entropy(x, y), P.binary_cross_entropy_with_logits(x, y, reduction="sum")):
        first, = torch.autograd.grad(out, x, retain_graph=True)
        expected = first.clone()
        first.mul_(3)
        second, = torch.autograd.grad(out, x)
        torch.testing.assert_close(second, expected, rtol=0, atol=0)


def test_reduced_loss_with_gradient_keeps_torchs_checks():
    # The forward that computes the gradient checks BCE's domain as the loss does, and the node the version of
    # the input it saved, before giving out the gradient.
    y = torch.rand(8)
    with pytest.raises(RuntimeError, match="should be between 0 and 1"):
        P.binary_cross_entropy((torch.rand(8) + 1).requires_grad_(), y)
    x = torch.rand(8).requires_grad_()
    h = x * 1
    out = P.binary_cross_entropy_with_logits(h, y)
    with torch.no_grad():
        h.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


@pytest.mark.parametrize("device", DEVICES)
def test_inplace(device):
    a, b = rand((3, 4), device=device), rand((4,), device=device)
    check(lambda x, y: P.add_(P.mul(x, 1.0), y, alpha=0.5), (a, b))
    check(lambda x, y: P.mul_(P.add(x, 0.0), y), (a, b))


@pytest.mark.parametrize("device", DEVICES)
def test_sigmoid(device):
    check(P.sigmoid, (rand((5, 3), device=device, low=-6, high=6),))


@pytest.mark.parametrize("device", DEVICES)
def test_sigmoid_third_order(device):
    x = rand((7,), device=device)
    (g1,) = torch.autograd.grad(P.sigmoid(x).sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(g1.sum(), x, create_graph=True)
    (g3,) = torch.autograd.grad(g2.sum(), x)
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(g3, s * (1 - s) * (1 - 6 * s + 6 * s * s))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bce(device, reduction, weighted):
    x = rand((4, 3), device=device, low=0.05, high=0.95)
    y = rand((4, 3), device=device, low=0.0, high=1.0)
    w = torch.rand(3, dtype=torch.float64, device=device) + 0.5 if weighted else None
    check(lambda a, b: P.binary_cross_entropy(a, b, w, reduction=reduction), (x, y))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weighted", [False, True])
def test_bce_with_logits(device, reduction, weighted, pos_weighted):
    x = rand((4, 3), device=device, low=-4, high=4)
    y = rand((4, 3), device=device, low=0.0, high=1.0)
    w = torch.rand(4, 1, dtype=torch.float64, device=device) + 0.5 if weighted else None
    pw = torch.rand(3, dtype=torch.float64, device=device) + 0.5 if pos_weighted else None
    check(lambda a, b: P.binary_cross_entropy_with_logits(a, b, w, reduction=reduction, pos_weight=pw), (x, y))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_mse(device, reduction):
    check(lambda a, b: P.mse_loss(a, b, reduction=reduction), (rand((4, 3), device=device), rand((4, 3), device=device)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_mse_weighted(device, reduction):
    x, y = rand((4, 3), device=device), rand((4, 3), device=device)
    w = rand((4, 3), device=device, low=0.5, high=2.0)
    check(lambda a, b, c: P.mse_loss(a, b, reduction=reduction, weight=c), (x, y, w))


def test_weight_gradient_is_a_clear_error():
    x = torch.rand(3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(NotImplementedError, match="derivative for 'weight'"):
        P.binary_cross_entropy(x, torch.rand(3, dtype=torch.float64), w).backward()


def _calls(device):
    """(name, fn, inputs) for every op with an autograd kernel, the backward ops included."""
    x = torch.rand(2, 3, dtype=torch.float64, device=device) * 0.9 + 0.05
    y = torch.rand(2, 3, dtype=torch.float64, device=device)
    g = torch.rand(2, 3, dtype=torch.float64, device=device)
    ops = torch.ops.pyext
    return [
        ("add", lambda a, b: P.add(a, b, alpha=2), (x, y)),
        ("add scalar", lambda a: P.add(a, 3.0), (x,)),
        ("mul", P.mul, (x, y)),
        ("mul scalar", lambda a: P.mul(a, 3.0), (x,)),
        ("mul_backward", lambda a, b, c: ops.mul_backward(a, b, c)[1], (g, x, y)),
        ("sigmoid", P.sigmoid, (x,)),
        ("bce", P.binary_cross_entropy, (x, y)),
        ("bce_with_logits", P.binary_cross_entropy_with_logits, (x, y)),
        ("mse", P.mse_loss, (x, y)),
        ("sigmoid_backward", ops.sigmoid_backward, (g, x)),
        ("bce_backward", lambda a, b, c: ops.binary_cross_entropy_backward(a, b, c, None, 0), (g, x, y)),
        ("bce_target_backward", lambda a, b: ops.binary_cross_entropy_target_backward(a, b, None, 0), (g, x)),
        ("bce_logits_backward", lambda a, b, c: ops.binary_cross_entropy_with_logits_backward(a, b, c, None, None, 0),
         (g, x, y)),
        ("bce_logits_target_backward",
         lambda a, b: ops.binary_cross_entropy_with_logits_target_backward(a, b, None, None, 0), (g, x)),
        ("mse_backward", lambda a, b, c: ops.mse_loss_backward(a, b, c, 0), (g, x, y)),
    ]


@pytest.mark.parametrize("device", DEVICES)
def test_graph_recorded_exactly_when_a_gradient_is_wanted(device):
    # Calls that want no gradient skip the graph node (a faster path): they must record nothing,
    # and every call that wants one must still record it, whichever input wants it.
    for name, fn, inputs in _calls(device):
        out = fn(*inputs)
        assert out.grad_fn is None and not out.requires_grad, name
        for i in range(len(inputs)):
            wanting = [t.detach().requires_grad_(j == i) for j, t in enumerate(inputs)]
            out = fn(*wanting)
            assert out.grad_fn is not None and out.requires_grad, (name, i)
            with torch.no_grad():
                out = fn(*wanting)
            assert out.grad_fn is None and not out.requires_grad, (name, i)


@pytest.mark.parametrize("device", DEVICES)
def test_nodes_keep_autograds_contract(device):
    # Each recorded call is a graph node of pyext's own (csrc/autograd.cpp), its saved tensors SavedVariables:
    # torch's errors for a second backward and for a saved tensor changed in place, and saved-tensor hooks.
    saves_nothing = {"add", "add scalar", "mul scalar"}
    for name, fn, inputs in _calls(device):
        leaves = [t.detach().requires_grad_() for t in inputs]
        packed = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
            out = fn(*leaves)
        assert out.grad_fn.name().startswith("pyext::"), name
        assert bool(packed) == (name not in saves_nothing), name
        out.sum().backward()
        if name in saves_nothing:
            continue
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            out.sum().backward()
        inner = [t * 1 for t in leaves]  # not leaves: changed in place below
        out = fn(*inner)
        loss = out.sum()
        with torch.no_grad():
            (out if name == "sigmoid" else inner[0]).add_(1)  # sigmoid saves its output, the others their first input
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


@pytest.mark.parametrize("device", DEVICES)
def test_mul_saves_what_torch_saves(device):
    """mul keeps an operand for its backward only where the other operand's gradient may be wanted, as torch's
    MulBackward0 does: an activation multiplied by a tensor that wants no gradient is not kept alive with the
    graph. The gradients, summed back to broadcast operands' shapes, match torch's."""
    x = torch.randn(3, 4, dtype=torch.float64, device=device, requires_grad=True)
    h, h_col = x * 2, x[:, :1] * 3  # activations
    w = torch.randn(4, dtype=torch.float64, device=device)
    w_col = torch.randn(3, 4, dtype=torch.float64, device=device)
    number = torch.tensor(2.0, dtype=torch.float64)  # a CPU 0-d tensor, beside any device
    for a, b in [(h, w), (w, h), (h_col, w_col), (w_col, h_col), (h, h_col), (h, number)]:
        packed = {}
        for name, mul in (("pyext", P.mul), ("torch", torch.mul)):
            saved = []
            with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
                out = mul(a, b)
            packed[name] = sorted((id(t) for t in saved))
            wanted = [t for t in (a, b) if t.requires_grad]
            grads = torch.autograd.grad(out, wanted, torch.ones_like(out))
            if name == "pyext":
                ours = grads
        assert packed["pyext"] == packed["torch"], (a.shape, b.shape)
        for g_ours, g_torch in zip(ours, grads):
            assert g_ours.shape == g_torch.shape
            torch.testing.assert_close(g_ours, g_torch)


@pytest.mark.parametrize("device", DEVICES)
def test_forward_mode_ad_is_a_clear_error(device):
    # Not supported (no op has a jvp formula): a tangent on any input is an error, never dropped.
    import torch.autograd.forward_ad as fwAD

    for name, fn, inputs in _calls(device):
        for i in range(len(inputs)):
            with fwAD.dual_level():
                duals = [fwAD.make_dual(t, torch.ones_like(t)) if j == i else t for j, t in enumerate(inputs)]
                with pytest.raises(RuntimeError, match="jvp is not implemented"):
                    fn(*duals)
    x = torch.randn(3, dtype=torch.float64, device=device)
    for transform in (lambda f: torch.func.jvp(f, (x,), (torch.ones_like(x),)), lambda f: torch.func.grad(f)(x)):
        with pytest.raises(RuntimeError, match="functorch transforms"):
            transform(lambda t: P.mul(P.sigmoid(t), 2.0).sum())
    torch.testing.assert_close(torch.vmap(P.sigmoid)(x.view(3, 1)), torch.sigmoid(x.view(3, 1)))
