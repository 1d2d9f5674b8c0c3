"""Shared test helpers: devices, dtypes with tolerances, shapes and layouts."""
import inspect

import pytest
import torch
import torch.nn.functional as F

import pyext  # noqa: F401  (loads the kernels)

HAS_CUDA = torch.cuda.is_available() and pyext.build_info()["cuda"]

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU (or pyext built without CUDA)")]),
]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# F.mse_loss's weight, which pyext.ops.mse_loss follows (in torch 2.13 and 2.14; the GPU machine runs 2.11)
needs_torch_mse_weight = pytest.mark.skipif("weight" not in inspect.signature(F.mse_loss).parameters,
                                            reason="this torch's F.mse_loss takes no weight")

# Per-dtype tolerances against torch's op on the same values in the same dtype.
TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    # torch itself rounds some intermediates (e.g. alpha * other) to the half type: a few ulps apart
    torch.float16: dict(rtol=2e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
}

SHAPES = [(), (0,), (1,), (1023,), (2**20 + 3,), (3, 5, 7)]
LAYOUTS = ["contiguous", "transposed", "offset", "stepped", "expanded"]


@pytest.fixture(autouse=True)
def seeded():
    """Every test draws the same inputs on every run."""
    torch.manual_seed(0)


def shape_id(shape):
    return "x".join(map(str, shape)) if shape else "0d"


def make(shape, dtype, device, layout="contiguous", low=None, high=None, gen=None):
    """A tensor of `shape` laid out as `layout` (a view into a larger or differently ordered buffer).

    Values: standard normal, or uniform in [low, high) when given."""
    shape = tuple(shape)

    def fill(s):
        if low is None:
            t = torch.randn(s, generator=gen, dtype=torch.float64)
        else:
            t = torch.rand(s, generator=gen, dtype=torch.float64) * (high - low) + low
        return t.to(dtype=dtype, device=device)

    n = 1
    for s in shape:
        n *= s
    if layout == "contiguous" or (layout == "transposed" and len(shape) < 2) or not shape:
        return fill(shape)
    if layout == "transposed":
        return fill(shape[:-2] + (shape[-1], shape[-2])).transpose(-1, -2)
    if layout == "offset":  # one element past a 16-byte boundary: misaligned for vector loads
        return fill((n + 1,))[1:].view(shape)
    if layout == "stepped":
        return fill(shape[:-1] + (2 * shape[-1],))[..., ::2]
    if layout == "expanded":
        return fill(shape[:-1] + (1,)).expand(shape)
    raise ValueError(layout)


def assert_close(actual, expected, dtype, **override):
    tol = dict(TOL[dtype])
    tol.update(override)
    torch.testing.assert_close(actual, expected, equal_nan=True, **tol)
