"""Registration: torch.library.opcheck for every op, torch.compile(fullgraph=True) with no graph
break, build_info, and the nn modules as drop-ins for torch's."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import pyext
import pyext.nn
import pyext.ops as P
import pyext.optim
from torch.overrides import TorchFunctionMode

from conftest import DEVICES, HAS_CUDA

ops = torch.ops.pyext
ROOT = Path(__file__).resolve().parent.parent


def samples(device):
    """(op, args, kwargs) for every overload, with inputs that require grad where they may."""
    def t(*shape, low=-2.0, high=2.0, grad=True):
        x = torch.rand(shape, device=device) * (high - low) + low
        return x.requires_grad_(grad)

    p, y = t(4, 3, low=0.05, high=0.95), t(4, 3, low=0, high=1)
    w, pw = t(3, grad=False) + 3, t(4, 1, grad=False) + 3
    g, g0 = t(4, 3, grad=False), t(grad=False)
    return [
        (ops.add.Tensor, (t(4, 3), t(3)), {"alpha": 2.0}),
        (ops.add.Scalar, (t(4, 3), 1.5, 2.0), {}),
        (ops.add_.Tensor, (t(4, 3, grad=False), t(3, grad=False)), {"alpha": -1}),
        (ops.add_.Scalar, (t(4, 3, grad=False), 0.5, 3), {}),
        (ops.mul.Tensor, (t(4, 3), t(4, 1)), {}),
        (ops.mul.Scalar, (t(4, 3), -2.0), {}),
        (ops.mul_.Tensor, (t(4, 3, grad=False), t(3, grad=False)), {}),
        (ops.mul_.Scalar, (t(4, 3, grad=False), 0.25), {}),
        (ops.mul_backward.default, (g, t(4, 3), t(3)), {}),
        (ops.sigmoid.default, (t(5, 2),), {}),
        (ops.sigmoid_backward.default, (t(5, 2), t(5, 2, low=0, high=1)), {}),
        (ops.binary_cross_entropy.default, (p, y, w, 1), {}),
        (ops.binary_cross_entropy.default, (p, y, None, 0), {}),
        (ops.binary_cross_entropy_backward.default, (g0, p, y, w, 1), {}),
        (ops.binary_cross_entropy_target_backward.default, (g, p, w, 0), {}),
        (ops.binary_cross_entropy_with_logits.default, (t(4, 3), y, w, pw, 2), {}),
        (ops.binary_cross_entropy_with_logits_backward.default, (g, t(4, 3), y, None, pw, 0), {}),
        (ops.binary_cross_entropy_with_logits_target_backward.default, (g0, t(4, 3), w, None, 1), {}),
        (ops.mse_loss.default, (t(4, 3), t(4, 3), 1), {}),
        (ops.mse_loss_backward.default, (g, t(4, 3), t(4, 3), 0), {}),
    ]


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for op, args, kwargs in samples(device):
        torch.library.opcheck(op, args, kwargs)


def logistic_step(x, w, b, y):
    """One forward of the tutorial's logistic regression, every step a pyext op."""
    return P.binary_cross_entropy(P.sigmoid(P.add(P.mul(x, w).sum(-1, keepdim=True), b)), y)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    x = torch.randn(64, 2, device=device)
    y = (torch.rand(64, 1, device=device) > 0.5).float()
    w = torch.randn(2, device=device, requires_grad=True)
    b = torch.zeros(1, device=device, requires_grad=True)
    compiled = torch.compile(logistic_step, fullgraph=True, backend=backend)
    loss = compiled(x, w, b, y)
    ref = logistic_step(x, w, b, y)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(torch.autograd.grad(loss, [w, b]), torch.autograd.grad(ref, [w, b]))

    def losses(a, t):
        return (P.binary_cross_entropy_with_logits(a, t, reduction="sum")
                + P.mse_loss(a, t) + P.mse_loss(a, t, weight=weight) + P.add(a, t, alpha=0.5).sum())
    a = torch.randn(8, 3, device=device, requires_grad=True)
    t = torch.rand(8, 3, device=device)
    weight = torch.rand(8, 3, device=device) + 0.5
    c = torch.compile(losses, fullgraph=True, backend=backend)
    torch.testing.assert_close(c(a, t), losses(a, t))
    torch.testing.assert_close(torch.autograd.grad(c(a, t), a), torch.autograd.grad(losses(a, t), a))


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_autograd(device):
    """The backward compiled too (compiled autograd): each pyext node is captured into its graph, and the
    gradients are eager's."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    x = torch.randn(64, 2, device=device)
    y = (torch.rand(64, 1, device=device) > 0.5).float()
    w = torch.randn(2, device=device, requires_grad=True)
    b = torch.zeros(1, device=device, requires_grad=True)

    def train_step(x, y):
        loss = logistic_step(x, w, b, y) + P.mse_loss(P.mul(x, w), x, reduction="sum")
        loss.backward()
        return loss
    ref = train_step(x, y)
    grads = (w.grad, b.grad)
    w.grad = b.grad = None
    with torch._dynamo.config.patch(compiled_autograd=True):
        loss = torch.compile(train_step, backend="aot_eager")(x, y)
    assert counters["compiled_autograd"]["captures"] == 1
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close((w.grad, b.grad), grads)


def test_build_info():
    info = pyext.build_info()
    assert isinstance(info["cuda"], bool) and isinstance(info["cuda_archs"], list)
    if info["cuda"]:
        assert info["cuda_archs"], "a CUDA build names the architectures it compiled for"
    if HAS_CUDA:
        major, minor = torch.cuda.get_device_capability()
        assert any(a.startswith(f"{major}.{minor}") for a in info["cuda_archs"])
    # 512-bit operands read in halves: only where there are 512-bit vectors
    assert isinstance(info["half_vector_loads"], bool)
    assert not info["half_vector_loads"] or info["cpu_vec"].startswith("avx512")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_cpu_kernels_use_torchs_threads(threads):
    """Our CPU loops split their work over torch.get_num_threads() threads of torch's own OpenMP pool (a
    build without OpenMP ran every kernel on one thread)."""
    assert pyext.build_info()["openmp"] == torch.backends.openmp.is_available()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        used = pyext._C._parallel_for_threads()
    finally:
        torch.set_num_threads(before)
    assert used == (threads if torch.backends.openmp.is_available() else 1)


@pytest.mark.parametrize("device", DEVICES)
def test_nn_modules_are_drop_ins(device):
    x = torch.randn(16, 3, device=device, requires_grad=True)
    y = torch.rand(16, 3, device=device)
    w = torch.rand(3, device=device) + 0.5
    pairs = [
        (pyext.nn.Sigmoid(), torch.nn.Sigmoid(), (x,)),
        (pyext.nn.BCELoss(weight=w, reduction="sum"), torch.nn.BCELoss(weight=w, reduction="sum"),
         (torch.sigmoid(x), y)),
        (pyext.nn.BCELoss(size_average=False), torch.nn.BCELoss(size_average=False), (torch.sigmoid(x), y)),
        (pyext.nn.BCEWithLogitsLoss(pos_weight=w), torch.nn.BCEWithLogitsLoss(pos_weight=w), (x, y)),
        (pyext.nn.BCEWithLogitsLoss(w, reduction="none"), torch.nn.BCEWithLogitsLoss(w, reduction="none"), (x, y)),
        (pyext.nn.MSELoss(reduction="sum"), torch.nn.MSELoss(reduction="sum"), (x, y)),
    ]
    for ours, theirs, args in pairs:
        out, ref = ours(*args), theirs(*args)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(torch.autograd.grad(out.sum(), x, retain_graph=True),
                                   torch.autograd.grad(ref.sum(), x, retain_graph=True))
    assert set(pyext.nn.BCEWithLogitsLoss(pos_weight=w).state_dict()) == set(
        torch.nn.BCEWithLogitsLoss(pos_weight=w).state_dict())
    assert F.binary_cross_entropy is not P.binary_cross_entropy  # ours really runs, not torch's


class SeenFunctions(TorchFunctionMode):
    """A __torch_function__ mode that records the functions it sees."""

    def __init__(self):
        super().__init__()
        self.funcs = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.funcs.append(func)
        return func(*args, **(kwargs or {}))


class Fallback:
    """An entry point's fallback that records the calls reaching it."""

    def __init__(self):
        self.calls = []

    def __call__(self, *args):
        self.calls.append(args)
        return "fallback"


def reached_fallback(entry, args):
    """Whether the entry point handed args, as they came, to its fallback (and returned what it returned)."""
    fallback = entry.__self__
    fallback.calls.clear()
    out = entry(*args)
    return (out == "fallback" and len(fallback.calls) == 1 and len(fallback.calls[0]) == len(args)
            and all(x is y for x, y in zip(fallback.calls[0], args)))


def test_eager_entry_points_take_plain_tensors_and_hand_the_rest_to_their_fallback():
    """pyext.ops calls the ops through pyext._C's typed entry points in eager mode; each hands what it does not
    take to its fallback, the op through torch.ops, which hands subclasses and modes to __torch_function__."""
    a, b = torch.randn(5), torch.randn(5)
    entry = {name: pyext._C._entry_point(name, Fallback())
             for name in ("add", "mul", "sigmoid", "binary_cross_entropy", "mse_loss")}
    torch.testing.assert_close(entry["add"](a, b, 2), torch.add(a, b, alpha=2))
    torch.testing.assert_close(entry["add"](a, True, 0.5), torch.add(a, True, alpha=0.5))
    torch.testing.assert_close(entry["mse_loss"](a, b, 2), torch.nn.functional.mse_loss(a, b, reduction="sum"))
    p = torch.nn.Parameter(a.clone())  # a subclass whose __torch_function__ is disabled: taken
    assert entry["mul"](p, b).grad_fn is not None
    assert all(not fallback.calls for fallback in (e.__self__ for e in entry.values()))

    class Sub(torch.Tensor):
        pass

    left = [
        ("add", (a.as_subclass(Sub), b, 1)),  # a subclass: its __torch_function__ first
        ("mul", (a, b.as_subclass(Sub))),
        ("binary_cross_entropy", (a, b, b.as_subclass(Sub), 1)),
        ("add", (a, 1 + 2j, 1)),  # a number of another type: torch.ops raises for it
        ("mul", (a, 2**70)),
        ("mul", (a, "2")),
        ("sigmoid", (3.0,)),
        ("mse_loss", (a, b, 1.0)),
        ("mul", (a,)),  # a wrong count: torch.ops raises for it
    ]
    for name, args in left:
        assert reached_fallback(entry[name], args), (name, args)
    with SeenFunctions():
        assert reached_fallback(entry["sigmoid"], (a,))
    with pytest.raises(ValueError, match="no entry point"):
        pyext._C._entry_point("div", Fallback())

    with SeenFunctions() as mode:
        P.add(a, b)
        P.mul_(a.clone(), 2.0)
        P.sigmoid(a)
        P.binary_cross_entropy_with_logits(a, torch.rand(5))
    ops = torch.ops.pyext
    seen = [f for f in mode.funcs if isinstance(f, (torch._ops.OpOverload, torch._ops.OpOverloadPacket))]
    assert seen == [ops.add.Tensor, ops.mul_.Scalar, ops.sigmoid, ops.binary_cross_entropy_with_logits]

    class Logged(torch.Tensor):
        funcs = []

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            cls.funcs.append(func)
            return super().__torch_function__(func, types, args, kwargs)

    out = P.mul(a.as_subclass(Logged), b)
    assert ops.mul.Tensor in Logged.funcs and type(out) is Logged
    torch.testing.assert_close(out.as_subclass(torch.Tensor), a * b)


def test_eager_calls_skip_torch_ops(monkeypatch):
    """Given plain tensors and no mode, each wrapper in pyext.ops takes its typed entry point and never reaches
    torch.ops (whose boxed call from Python costs about 1 us)."""
    a, b, y = torch.randn(4, 3), torch.randn(3), torch.rand(4, 3)
    x = torch.rand(4, 3)
    calls = [
        (lambda: P.add(a, b, alpha=2), lambda: torch.add(a, b, alpha=2)),
        (lambda: P.add(a, 1.5), lambda: torch.add(a, 1.5)),
        (lambda: P.add_(a.clone(), b), lambda: a + b),
        (lambda: P.add_(a.clone(), 2, alpha=3), lambda: a + 6),
        (lambda: P.mul(a, b), lambda: a * b),
        (lambda: P.mul(a, -2.0), lambda: a * -2.0),
        (lambda: P.mul_(a.clone(), b), lambda: a * b),
        (lambda: P.mul_(a.clone(), 0.5), lambda: a * 0.5),
        (lambda: P.sigmoid(a), lambda: torch.sigmoid(a)),
        (lambda: P.binary_cross_entropy(x, y), lambda: F.binary_cross_entropy(x, y)),
        (lambda: P.binary_cross_entropy_with_logits(a, y, reduction="sum"),
         lambda: F.binary_cross_entropy_with_logits(a, y, reduction="sum")),
        (lambda: P.mse_loss(a, y, reduction="none"), lambda: F.mse_loss(a, y, reduction="none")),
    ]

    class Unreachable:
        def __getattr__(self, name):
            raise AssertionError(f"an eager call took torch.ops.pyext.{name}")

    monkeypatch.setattr(P, "_ops", Unreachable())
    for ours, theirs in calls:
        torch.testing.assert_close(ours(), theirs())


def test_wrappers_fall_back_to_is_compiling():
    """Without torch.compiler.is_dynamo_compiling (its docs call it internal), the wrappers test is_compiling:
    eager calls still take the entry points, and torch.compile still traces torch.ops with no graph break."""
    script = """
import torch, torch.compiler
kept = torch.compiler.is_dynamo_compiling
del torch.compiler.is_dynamo_compiling  # gone while pyext imports (Dynamo itself still uses it: put back after)
import pyext.ops as P
torch.compiler.is_dynamo_compiling = kept
assert P.is_dynamo_compiling is torch.compiler.is_compiling
a = torch.randn(5, requires_grad=True)
torch.testing.assert_close(P.mul(a, 2.0), a * 2)
compiled = torch.compile(lambda x: P.sigmoid(P.add(x, 1.0, alpha=2)), fullgraph=True, backend="aot_eager")
torch.testing.assert_close(compiled(a), torch.sigmoid(a + 2))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("strict", [True, False])
def test_export(strict):
    """torch.export records pyext's ops: strict, where Dynamo traces the wrappers (their torch.ops path), and
    non-strict, where the typed entry points see its fake tensors and modes."""
    class Model(torch.nn.Module):
        def forward(self, x, w, y):
            return P.binary_cross_entropy(P.sigmoid(P.add(P.mul(x, w), 1.0, alpha=2)), y)

    args = torch.randn(4, 3), torch.randn(3), torch.rand(4, 3)
    program = torch.export.export(Model(), args, strict=strict)
    called = [n.target for n in program.graph.nodes if n.op == "call_function"]
    assert called == [ops.mul.Tensor, ops.add.Scalar, ops.sigmoid.default, ops.binary_cross_entropy.default]
    torch.testing.assert_close(program.module()(*args), Model()(*args))


def test_sgd_entry_point_takes_lists_of_plain_tensors(monkeypatch):
    """pyext.optim.SGD's step calls pyext._C's sgd_step_ entry point (three lists, no boxed call) in eager mode;
    a tuple, a tensor subclass in a list or another argument type is handed to its fallback (torch.ops)."""
    params, grads, bufs = ([torch.randn(n) for n in (3, 70)] for _ in range(3))
    expected = [p.clone() for p in params], [b.clone() for b in bufs]
    kw = dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True, maximize=False,
              is_first_step=False)
    torch.ops.pyext.sgd_step_(*expected[:1], grads, expected[1], **kw)
    step = pyext._C._entry_point("sgd_step_", Fallback())
    assert step(params, grads, bufs, 0.1, 0.9, 0, 0.01, True, False, False, None, None, None) is None
    assert not step.__self__.calls
    torch.testing.assert_close(params, expected[0], rtol=0, atol=0)
    torch.testing.assert_close(bufs, expected[1], rtol=0, atol=0)

    class Sub(torch.Tensor):
        pass

    args = (0.1, 0.9, 0.0, 0.0, False, False, False, None, None, None)
    for left in [(tuple(params), grads, bufs, *args), ([params[0].as_subclass(Sub)], grads[:1], bufs[:1], *args),
                 (params, grads, bufs, 0.1, 0.9, 0.0, 0.0, 1, False, False, None, None, None)]:
        assert reached_fallback(step, left)

    ps = [torch.nn.Parameter(torch.randn(4)) for _ in range(2)]
    for p in ps:
        p.grad = torch.randn(4)
    opt = pyext.optim.SGD(ps, lr=0.1, momentum=0.9)
    with SeenFunctions() as mode:  # under a mode the step goes through torch.ops, which the mode sees
        opt.step()
    assert torch.ops.pyext.sgd_step_ in mode.funcs
    before = [p.detach().clone() for p in ps]

    def boxed(*args, **kwargs):
        raise AssertionError("the eager step took torch.ops")

    monkeypatch.setattr(torch.ops.pyext, "sgd_step_", boxed)
    opt.step()  # without a mode: the entry point
    assert all(not torch.equal(a, b) for a, b in zip(before, ps))


def test_eager_entry_points_go_through_torch_dispatch_modes():
    """The typed entry points call the dispatcher, so Python dispatch modes (FakeTensorMode, logging modes)
    see pyext's ops, and an exception raised in a mode reaches the caller (the GIL is taken back)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class Seen(TorchDispatchMode):
        def __init__(self, fail=False):
            super().__init__()
            self.funcs, self.fail = [], fail

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.funcs.append(func)
            if self.fail:
                raise ValueError("refused by the mode")
            return func(*args, **(kwargs or {}))

    x = torch.randn(4)
    sigmoid = pyext._C._entry_point("sigmoid", Fallback())
    with Seen() as mode:
        sigmoid(x)
        P.add(x, 2.0)
    assert not sigmoid.__self__.calls  # taken, not handed to torch.ops
    assert mode.funcs == [torch.ops.pyext.sigmoid.default, torch.ops.pyext.add.Scalar]
    with pytest.raises(ValueError, match="refused by the mode"), Seen(fail=True):
        P.mul(x, x)
    with FakeTensorMode():
        out = P.binary_cross_entropy_with_logits(torch.empty(4, 3), torch.empty(4, 3), reduction="none")
    assert type(out).__name__ == "FakeTensor" and out.shape == (4, 3)
