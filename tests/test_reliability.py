"""Reliability: ops called from many threads at once give correct results; thousands of training
steps do not grow the process's memory (or, on CUDA, the allocated device memory); an error inside an op
leaves the process usable."""
import ctypes
import gc
import threading

import pytest
import torch
import torch.nn.functional as F

import pyext.nn
import pyext.ops as P
import pyext.optim
from conftest import DEVICES


@pytest.mark.parametrize("device", DEVICES)
def test_eight_threads_at_once(device):
    errors = []
    barrier = threading.Barrier(8)

    def work(seed):
        try:
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn(3000, generator=gen).to(device)
            y = torch.rand(3000, generator=gen).to(device)
            barrier.wait()
            for _ in range(20):
                torch.testing.assert_close(P.add(x, y, alpha=seed), torch.add(x, y, alpha=seed))
                torch.testing.assert_close(P.sigmoid(x), torch.sigmoid(x))
                torch.testing.assert_close(P.binary_cross_entropy_with_logits(x, y),
                                           F.binary_cross_entropy_with_logits(x, y))
                torch.testing.assert_close(P.binary_cross_entropy(y, y), F.binary_cross_entropy(y, y))
        except Exception as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def memory_in_use():
    """The process's memory in use, in bytes. Under AddressSanitizer (tests/sanitize.sh) its live heap:
    there the resident set also holds the quarantine of freed blocks, up to 256 MiB by default, and grows
    by design. Elsewhere the resident set."""
    live_heap = getattr(ctypes.CDLL(None), "__sanitizer_get_current_allocated_bytes", None)
    if live_heap is not None:
        live_heap.restype = ctypes.c_size_t
        return live_heap()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.parametrize("device", DEVICES)
def test_training_steps_do_not_grow_memory(device):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), pyext.nn.Sigmoid(), torch.nn.Linear(16, 1)).to(device)
    opt = pyext.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = pyext.nn.BCEWithLogitsLoss()
    x, y = torch.randn(64, 8, device=device), torch.rand(64, 1, device=device)

    def steps(n):
        for _ in range(n):
            opt.zero_grad()
            loss = loss_fn(model(x), y) + P.mse_loss(P.mul(model(x), 0.5), y)
            loss.backward()
            opt.step()

    steps(200)  # warm up: allocator caches, lazy initialisation
    gc.collect()  # tensors an earlier test left in reference cycles are not the steps' to free
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
    in_use = memory_in_use()
    steps(3000)
    if device == "cuda":
        torch.cuda.synchronize()
        assert torch.cuda.memory_allocated() == before
    grown = memory_in_use() - in_use
    assert grown < 2 << 20, f"memory in use grew by {grown / 2**20:.1f} MiB over 3000 steps"


@pytest.mark.parametrize("device", DEVICES)
def test_an_error_inside_an_op_leaves_the_process_usable(device):
    """An error inside one of our ops (no memory for its output; on CUDA the allocator's error, and the BCE
    domain check that the kernel reports through device memory) raises a Python exception naming what went
    wrong, and the ops that follow run correctly. (A CUDA error that corrupts the context, such as an illegal
    address, cannot be recovered from in any process; compute-sanitizer checks that none of our ops makes one.)"""
    huge = torch.randn(1, device=device).expand(2**40)  # a broadcast view: 4 TiB of float32 if materialised
    with pytest.raises(RuntimeError, match="out of memory|can't allocate memory"):
        P.add(huge, 1.0)
    with pytest.raises(RuntimeError, match="should be between 0 and 1"):
        P.binary_cross_entropy(torch.full((1000,), 2.0, device=device), torch.rand(1000, device=device))
    a, b = torch.randn(10_000, device=device), torch.rand(10_000, device=device)
    torch.testing.assert_close(P.add(a, b, alpha=2), torch.add(a, b, alpha=2))
    torch.testing.assert_close(P.binary_cross_entropy(b, b), F.binary_cross_entropy(b, b))
    if device == "cuda":
        torch.cuda.synchronize()
