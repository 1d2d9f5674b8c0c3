"""gradcheck and gradgradcheck (float64) for every op and every differentiable input."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import pyext.ops as P
from conftest import DEVICES


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


def test_weight_gradient_is_a_clear_error():
    x = torch.rand(3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(NotImplementedError, match="derivative for 'weight'"):
        P.binary_cross_entropy(x, torch.rand(3, dtype=torch.float64), w).backward()
