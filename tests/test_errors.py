"""Every bad input raises a clear exception naming the argument and the problem."""
import contextlib
import subprocess
import sys
import threading

import pytest
import torch
import torch.nn.functional as F

import pyext
import pyext.ops as P
import pyext.optim
from conftest import DEVICES, HAS_CUDA, needs_torch_mse_weight


def t(*shape, device="cpu", **kw):
    return torch.rand(*shape, device=device, **kw)


@pytest.mark.parametrize("device", DEVICES)
def test_shapes_that_do_not_broadcast(device):
    with pytest.raises(RuntimeError, match=r"size of tensor a \(3\) must match the size of tensor b \(4\)"):
        P.add(t(3, device=device), t(4, device=device))
    with pytest.raises(RuntimeError, match="must match the size"):
        P.mul(t(2, 3, device=device), t(2, 1, 4, device=device))
    with pytest.raises(RuntimeError, match="must match the size"):
        P.mse_loss(t(3, device=device), t(4, device=device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n,at", [(4, 2), (1027, 1026), (4099, 17)], ids=["pack", "tail", "one-of-many"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_bce_values_outside_unit_interval(device, n, at, dtype):
    y = t(n, device=device, dtype=dtype)
    for bad in (1.5, 1 + 2**-7, -0.1, -2**-130, float("inf"), -float("inf"), float("nan"), -float("nan")):
        x = t(n, device=device, dtype=dtype)
        x[at] = bad
        for reduction in ("none", "mean", "sum"):
            with pytest.raises(RuntimeError, match="binary_cross_entropy: all elements of input should be between 0 and 1"):
                P.binary_cross_entropy(x, y, reduction=reduction)
            with pytest.raises(RuntimeError, match="all elements of target should be between 0 and 1"):
                P.binary_cross_entropy(y, x, reduction=reduction)
    # both outside: the error names input, as torch's check (input first) does
    x = t(n, device=device, dtype=dtype)
    x[at] = 2.0
    with pytest.raises(RuntimeError, match="all elements of input should be between 0 and 1"):
        P.binary_cross_entropy(x, x)
    # the ends of the interval, -0 included (-0 >= 0, as torch's check has it), are in it
    x = t(n, device=device, dtype=dtype)
    x[at - 1], x[at] = -0.0, 1.0
    torch.testing.assert_close(P.binary_cross_entropy(x, y), torch.nn.functional.binary_cross_entropy(x, y))
    torch.testing.assert_close(P.binary_cross_entropy(y, x), torch.nn.functional.binary_cross_entropy(y, x))
    # the process stays usable afterwards
    torch.testing.assert_close(P.binary_cross_entropy(y, y), torch.nn.functional.binary_cross_entropy(y, y))


# While a CUDA graph is captured the call cannot wait for its domain flag: the kernel asserts instead when the
# graph replays with a value outside [0, 1], as torch's own BCE does. That ends the process's CUDA context,
# hence a subprocess.
GRAPH_SCRIPT = """
import torch, pyext.ops as P
x = torch.full((4099,), 0.25, device="cuda")
y = torch.full_like(x, 0.5)
side = torch.cuda.Stream()
side.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(side):
    P.binary_cross_entropy(x, y)  # warm-up, outside the capture
torch.cuda.current_stream().wait_stream(side)
graph = torch.cuda.CUDAGraph()
with torch.cuda.graph(graph):
    loss = P.binary_cross_entropy(x, y)
graph.replay()
torch.testing.assert_close(loss, torch.nn.functional.binary_cross_entropy(x, y))
print("replayed in range", flush=True)
x[4000] = 1.5
graph.replay()
torch.cuda.synchronize()
print("replayed out of range without an error", flush=True)
"""


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU (or pyext built without CUDA)")
def test_bce_outside_unit_interval_fails_a_cuda_graph_replay():
    done = subprocess.run([sys.executable, "-c", GRAPH_SCRIPT], capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert "replayed in range" in done.stdout, output
    assert "without an error" not in done.stdout, output
    assert done.returncode != 0
    assert "binary_cross_entropy: an element of input or target outside [0, 1]" in output, output


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rows, cols", [(1000, 3), (3, 1000)])
def test_bce_values_outside_unit_interval_of_a_transposed_operand(device, rows, cols):
    """On the CPU a transposed operand beside contiguous ones is gathered into a buffer, segment by segment
    (csrc/cpu_kernels.cpp, plan_block): a value outside [0, 1] there, in either argument, is found."""
    for reduction in ("none", "mean"):
        x = t(cols, rows, device=device).t()
        y = t(rows, cols, device=device)
        x[rows // 2, cols - 1] = 1.5
        with pytest.raises(RuntimeError, match="all elements of input should be between 0 and 1"):
            P.binary_cross_entropy(x, y, reduction=reduction)
        with pytest.raises(RuntimeError, match="all elements of target should be between 0 and 1"):
            P.binary_cross_entropy(y, x, reduction=reduction)


@pytest.mark.parametrize("device", DEVICES)
def test_bce_domain_errors_stay_with_their_thread(device):
    # On CUDA each call's domain flags live in mapped host memory kept per host thread (and device): calls from
    # several threads at once, each on its own stream, must each get their own verdict, an error for the bad
    # input every time and none for the good ones.
    good, bad = t(1 << 16, device=device), t(1 << 16, device=device)
    bad[(1 << 16) - 3] = 1.5
    expected = P.binary_cross_entropy(good, good)
    problems = []

    def calls(x, should_fail, stream):
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            for _ in range(40):
                try:
                    out = P.binary_cross_entropy(x, good)
                except RuntimeError as e:
                    if not should_fail or "all elements of input should be between 0 and 1" not in str(e):
                        problems.append(f"unexpected error: {e}")
                    continue
                if should_fail:
                    problems.append("no error for an input outside [0, 1]")
                elif not torch.equal(out, expected):
                    problems.append(f"{out.item()} where {expected.item()}")

    inputs = (good, bad, good, bad)
    streams = [torch.cuda.Stream() for _ in inputs] if device == "cuda" else [None] * len(inputs)
    for stream in streams:
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream())  # the inputs above are made on this one
    workers = [threading.Thread(target=calls, args=(x, x is bad, stream)) for x, stream in zip(inputs, streams)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not problems, problems[:5]


@pytest.mark.parametrize("device", DEVICES)
def test_wrong_shapes_for_loss_arguments(device):
    x, y = t(4, 3, device=device), t(4, 3, device=device)
    with pytest.raises(RuntimeError, match=r"binary_cross_entropy: target has shape \[4\] but input has shape \[4, 3\]"):
        P.binary_cross_entropy(x, t(4, device=device))
    with pytest.raises(RuntimeError, match=r"binary_cross_entropy_with_logits: target has shape \[3, 4\]"):
        P.binary_cross_entropy_with_logits(x, t(3, 4, device=device))
    with pytest.raises(RuntimeError, match=r"binary_cross_entropy: weight has shape \[4\], which does not broadcast "
                                           r"to the input shape \[4, 3\]"):
        P.binary_cross_entropy(x, y, t(4, device=device))
    with pytest.raises(RuntimeError, match=r"weight has shape \[2, 4, 3\], which does not broadcast"):
        P.binary_cross_entropy_with_logits(x, y, t(2, 4, 3, device=device))
    with pytest.raises(RuntimeError, match=r"pos_weight has shape \[5\], which does not broadcast"):
        P.binary_cross_entropy_with_logits(x, y, pos_weight=t(5, device=device))


@needs_torch_mse_weight
@pytest.mark.parametrize("device", DEVICES)
def test_mse_weight_of_another_size(device):
    """mse_loss's weight has the input's size (no broadcasting), with torch's error."""
    x, y = t(4, 3, device=device), t(4, 3, device=device)
    for w in (t(3, device=device), t(1, 3, device=device)):
        for fn in (P.mse_loss, F.mse_loss):
            with pytest.raises(ValueError, match="^Weights and input must have the same size.$"):
                fn(x, y, weight=w)


def test_wrong_grad_output_shape():
    x, y = t(4, 3), t(4, 3)
    with pytest.raises(RuntimeError, match=r"binary_cross_entropy_backward: grad_output of a reduced loss must have "
                                           r"one element, but has shape \[2\]"):
        torch.ops.pyext.binary_cross_entropy_backward(t(2), x, y, None, 1)
    with pytest.raises(RuntimeError, match=r"mse_loss_backward: grad_output has shape \[5\], which does not broadcast "
                                           r"to the input shape \[4, 3\]"):
        torch.ops.pyext.mse_loss_backward(t(5), x, y, 0)


def test_unknown_reduction():
    x = t(3)
    for fn in (P.binary_cross_entropy, P.binary_cross_entropy_with_logits, P.mse_loss):
        with pytest.raises(ValueError, match="'avg' is not a valid value for reduction|avg is not a valid value"):
            fn(x, x, reduction="avg")
    with pytest.raises(RuntimeError, match=r"mse_loss: reduction must be 0 \('none'\), 1 \('mean'\) or 2 \('sum'\), but got 7"):
        torch.ops.pyext.mse_loss(x, x, 7)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.cuda
def test_tensors_on_different_devices():
    x, y = t(4), t(4, device="cuda")
    with pytest.raises(RuntimeError, match="add: expected other to be on cpu like input, but it is on cuda:0"):
        P.add(x, y)
    with pytest.raises(RuntimeError, match="binary_cross_entropy: expected target to be on cuda:0 like input"):
        P.binary_cross_entropy(y, x)
    with pytest.raises(RuntimeError, match="expected weight to be on cuda:0"):
        P.binary_cross_entropy_with_logits(y, y, x)


@pytest.mark.parametrize("device", DEVICES)
def test_inplace_output_would_need_broadcasting(device):
    with pytest.raises(RuntimeError, match=r"output with shape \[3, 1\] doesn't match the broadcast shape \[3, 4\]"):
        P.add_(t(3, 1, device=device), t(3, 4, device=device))
    with pytest.raises(RuntimeError, match=r"output with shape \[4\] doesn't match the broadcast shape \[2, 4\]"):
        P.mul_(t(4, device=device), t(2, 4, device=device))
    with pytest.raises(RuntimeError, match=r"output with shape \[3, 1\] doesn't match the broadcast shape \[3, 4\]"):
        P.add_(t(3, 1, device=device).mul(1).requires_grad_(), t(3, 4, device=device, requires_grad=True))


@pytest.mark.parametrize("device", DEVICES)
def test_inplace_on_leaf_that_requires_grad(device):
    w = t(3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place operation"):
        P.add_(w, 1.0)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place operation"):
        P.mul_(w, t(3, device=device))
    with torch.no_grad():  # the optimizer's way: allowed
        P.add_(w, 1.0, alpha=-0.1)


@pytest.mark.parametrize("device", DEVICES)
def test_inplace_into_expanded_tensor(device):
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor refers to a single memory location"):
        P.add_(t(1, device=device).expand(4), t(4, device=device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_unsupported_dtypes_name_the_dtype(device, dtype):
    x = torch.ones(3, device=device, dtype=dtype)
    with pytest.raises(RuntimeError, match=r"add: unsupported dtype \w+ \(pyext kernels take float32, float64, "
                                           r"float16 and bfloat16\)|complex other"):
        P.add(x, x)
    with pytest.raises(RuntimeError, match=r"mul: unsupported dtype"):
        P.mul(x, x)
    with pytest.raises(RuntimeError, match=r"mse_loss: unsupported dtype"):
        P.mse_loss(x, x)


@pytest.mark.skipif(pyext.build_info()["cuda"] or not torch.cuda.is_available(),
                    reason="only meaningful for a CPU-only build on a machine with a GPU")
def test_cpu_only_build_names_the_problem():
    with pytest.raises(RuntimeError, match="pyext was built without CUDA"):
        P.sigmoid(t(3, device="cuda"))


@pytest.mark.parametrize("device", DEVICES)
def test_inplace_on_overlapping_or_aliased_tensors(device):
    x = torch.arange(6.0, device=device)
    with pytest.raises(RuntimeError, match="some elements of the input tensor and the written-to tensor refer to a "
                                           "single memory location"):
        P.add_(x[1:], x[:-1])
    y = torch.arange(1.0, 5.0, device=device)
    P.mul_(y, y)  # the same tensor on both sides: torch's result
    assert y.tolist() == [1.0, 4.0, 9.0, 16.0]
    P.add_(y, y, alpha=0.5)
    assert y.tolist() == [1.5, 6.0, 13.5, 24.0]


def test_non_finite_optimizer_settings():
    p = [torch.zeros(2, requires_grad=True)]
    for kwargs in (dict(lr=float("nan")), dict(lr=float("inf")), dict(lr=0.1, momentum=float("nan")),
                   dict(lr=0.1, weight_decay=float("inf"))):
        with pytest.raises(ValueError, match="Invalid"):
            pyext.optim.SGD(p, **kwargs)
    kw = dict(lr=float("nan"), momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False,
              is_first_step=False)
    with pytest.raises(RuntimeError, match="sgd_step_: lr must be finite, but is nan"):
        torch.ops.pyext.sgd_step_([torch.zeros(2)], [torch.zeros(2)], [], **kw)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.cuda
def test_mixed_devices_everywhere():
    c, g = t(4), t(4, device="cuda")
    for fn in (P.mul, P.mse_loss, P.binary_cross_entropy_with_logits):
        with pytest.raises(RuntimeError, match="expected .* to be on"):
            fn(g, c)
    kw = dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False,
              is_first_step=False)
    with pytest.raises(RuntimeError, match=r"sgd_step_: grads\[0\] is on cpu but params\[0\] is on cuda:0"):
        torch.ops.pyext.sgd_step_([g], [c], [], **kw)
    with pytest.raises(RuntimeError, match=r"params\[1\] is on cpu but params\[0\] is on cuda:0"):
        torch.ops.pyext.sgd_step_([g, c], [g, c], [], **kw)
