"""Tensors of more than 2^31 elements (bfloat16, 4 GiB each): 64-bit indexing reaches the last
elements. Skipped when the machine lacks the memory (they need about 9 GiB)."""
import pytest
import torch

import pyext.ops as P
from conftest import DEVICES

N = 2**31 + 7


def free_bytes(device):
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


@pytest.mark.parametrize("device", DEVICES)
def test_more_than_2_31_elements(device):
    if free_bytes(device) < 12 * 2**30:
        pytest.skip("needs about 12 GiB free")
    x = torch.zeros(N, dtype=torch.bfloat16, device=device)
    x[-3:] = torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16)
    out = P.add(x, 0.5)
    assert out[-3:].tolist() == [1.5, 2.5, 3.5] and out[0].item() == 0.5
    assert out[2**31 - 1 : 2**31 + 1].tolist() == [0.5, 0.5]
    del out
    y = torch.zeros(N, dtype=torch.bfloat16, device=device)
    assert P.mse_loss(x, y, reduction="sum").item() == 14.0  # only the last three elements differ
    with torch.no_grad():
        P.mul_(x, 2.0)
    assert x[-3:].tolist() == [2.0, 4.0, 6.0]
