"""The accuracy of the math that reaches the user (sigmoid, BCE's logs, BCE-with-logits' softplus),
in ulps against float64, over every 1009th float and every bfloat16 and float16 value:
benchmarks/check_vector_math.py's checks, which run over every float when run as a script."""
import ctypes
import importlib.util
import os
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.cpp_extension import include_paths

import pyext
import pyext.ops as P
from conftest import DEVICES

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("pyext_check_vector_math", ROOT / "benchmarks" / "check_vector_math.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)

# The CPU's own exp, log and softplus, where the build has them: bounds a little above the largest errors the script
# found over every 13th float. AVX-512 (csrc/avx512_math.h): 2.45, 0.911, 0.908, 1.170 (over every float, exp
# alone is within 0.990 ulp, log alone within 0.922 and the softplus ln(1 + e^z) within 1.14, and -ln x is the log
# itself). AVX2 (csrc/avx2_math.h): 2.451, 0.911, 0.909, 1.666 (over every float, exp within 0.988 ulp, BCE's two
# logs, the GPU's bit for bit, within 0.913, and the softplus, log1p of exp, within 1.684:
# benchmarks/cpu_math_exhaustive.cpp). torch's, measured alongside: 2.45, 0.78, 0.82, 1.49.
OWN_MATH_BOUNDS = {
    "avx512": {
        "sigmoid": 2.5,
        "-ln x (bce, y=1)": 1.0,
        "-ln(1-x) (bce, y=0)": 1.0,
        "ln(1+e^-x) (bce logits, y=1)": 1.2,
    },
    "avx2": {
        "sigmoid": 2.5,
        "-ln x (bce, y=1)": 1.0,
        "-ln(1-x) (bce, y=0)": 1.0,
        "ln(1+e^-x) (bce logits, y=1)": 1.7,
    },
}
CPU_VEC = pyext.build_info()["cpu_vec"]
# avx512 and avx512_bf16 have the AVX-512 math; a build for no vector ISA, none of its own
CPU_BOUNDS = OWN_MATH_BOUNDS.get("avx512" if CPU_VEC.startswith("avx512") else CPU_VEC)


@pytest.mark.parametrize("vec", list(OWN_MATH_BOUNDS))
def test_every_check_has_a_bound(vec):
    assert set(OWN_MATH_BOUNDS[vec]) == set(check.CHECKS)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(check.CHECKS))
def test_error_in_ulps(name, device):
    r = check.measure(name, stride=1009, device=device)
    assert r["count"] > 10**6  # normal results measured
    if device == "cpu" and CPU_BOUNDS:
        assert r["pyext_max"] <= CPU_BOUNDS[name]
    # Everywhere (a build for no vector ISA, at::vec's functions; CUDA's libdevice on GPUs): close to torch's.
    assert r["pyext_max"] <= r["torch_max"] + 2.5
    assert r["pyext_mean"] <= r["torch_mean"] * 2


# BCE-with-logits' softplus ln(1 + e^-x) where the AVX-512 table's pieces meet (x = i + 1/2), where the table
# ends and the branch to exp and log takes over (15.5), and at 0, -0, inf, NaN: each edge and the floats beside
# it, shuffled so that vectors mix the table's lanes with the branch's.
@pytest.mark.parametrize("device", DEVICES)
def test_softplus_at_the_table_edges(device):
    edges = torch.tensor([i + 0.5 for i in range(16)] + [0.0, 1.0, 16.0, 20.0, 40.0, 60.0, 80.0, 1e-30])
    beside = torch.cat([edges, torch.nextafter(edges, torch.tensor(0.0)), torch.nextafter(edges, torch.tensor(1e9))])
    x = beside[torch.randperm(len(beside), generator=torch.Generator().manual_seed(0))].repeat(4).to(device)
    name = "ln(1+e^-x) (bce logits, y=1)"
    ours, theirs, exact, _ = check.CHECKS[name]
    err = check.ulp_errors(ours(x), exact(x.double()))
    assert err.numel() == x.numel()  # every result a normal number here
    if device == "cpu" and CPU_BOUNDS:
        assert err.max().item() <= CPU_BOUNDS[name]
    else:  # as test_error_in_ulps
        assert err.max().item() <= check.ulp_errors(theirs(x), exact(x.double())).max().item() + 2.5
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan")], device=device).repeat(8)
    for y in (torch.ones_like(special), torch.zeros_like(special)):  # as torch: ln 2, ln 2, NaN or inf, NaN, NaN
        torch.testing.assert_close(P.binary_cross_entropy_with_logits(special, y, reduction="none"),
                                   F.binary_cross_entropy_with_logits(special, y, reduction="none"),
                                   rtol=1.2e-7, atol=0, equal_nan=True)


# bfloat16 and float16, over every value: the results round to the nearest 16-bit value but for a few, never
# far past half an ulp (the GPU computes them with the hardware's approximations, cuda/math16.cuh, whose
# relative error, at most 2^-17, is a 64th of float16's ulp; bfloat16's log, without the series near 1, 2^-13.5,
# a 23rd of its ulp).
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", list(check.CHECKS))
def test_16bit_error_in_ulps(name, dtype, device):
    r = check.measure(name, device=device, dtype=dtype)
    assert r["count"] > 10**4  # normal results measured
    assert r["pyext_max"] <= 0.6
    assert r["pyext_not_nearest"] <= r["torch_not_nearest"] + 0.01


# The GPU's float BCE math (cuda/math_unit.cuh: its own log and log1p for arguments in [0, 1]), compiled for this
# machine's CPU (tests/host_unit_math.cpp), where no GPU is needed to measure it. Over every 13th float its BCE was
# within 0.911 ulp for -ln x and 0.909 for -ln(1 - x), torch's CPU BCE within 0.782 and 0.821, with the same mean
# errors (0.2503 and 0.0530 against 0.2500 and 0.0530). The CUDA rows of test_error_in_ulps measure the kernels.
@pytest.fixture(scope="module")
def host_bce(tmp_path_factory):
    lib = tmp_path_factory.mktemp("host_unit_math") / "host_unit_math.so"
    includes = [f"-I{p}" for p in include_paths()]
    subprocess.run([os.environ.get("CXX", "c++"), "-O2", "-std=c++17", "-shared", "-fPIC", *includes,
                    str(ROOT / "tests" / "host_unit_math.cpp"), "-o", str(lib)], check=True)
    fn = ctypes.CDLL(str(lib)).bce_unit_math
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]

    def bce(x, y):
        x, y = x.float().contiguous(), y.float().contiguous()
        out = torch.empty_like(x)
        fn(x.data_ptr(), y.data_ptr(), out.data_ptr(), x.numel())
        return out

    return bce


@pytest.mark.parametrize("name,target", [("-ln x (bce, y=1)", 1.0), ("-ln(1-x) (bce, y=0)", 0.0)])
def test_gpu_float_bce_math_on_the_host(name, target, host_bce):
    r = check.measure(name, stride=1009, ours=lambda x: host_bce(x, torch.full_like(x, target)))
    assert r["count"] > 10**6
    assert r["pyext_max"] <= 1.0
    assert r["pyext_mean"] <= r["torch_mean"] * 1.1


def test_gpu_float_bce_math_at_the_edges(host_bce):
    # 0, -0 (in [0, 1] for the domain check, as for torch's) and 1, subnormals (2^-140: ln x = -97.0, not clamped),
    # the clamp at -100, both sides of 0.5 and 1 - 2^-24 (where 1 - x changes exponent), against torch's BCE in
    # float64, for targets 0, 1 and between
    x = torch.tensor([0, -0.0, 2**-149, 2**-140, 2**-126, 1e-30, 1e-8, 2**-25, 2**-24, 0.25, 0.5 - 2**-25, 0.5,
                      0.5 + 2**-24, 0.75, 1 - 2**-23, 1 - 2**-24, 1], dtype=torch.float64)
    y = torch.tensor([0, 1, 0.25, 0.5, 0.9], dtype=torch.float64)
    x, y = torch.cat([x, torch.rand(10**5, dtype=torch.float64)]), torch.cat([y, torch.rand(10**5, dtype=torch.float64)])
    x, y = x.float().double(), y.float().double()  # inputs the float math can take exactly
    xx, yy = torch.meshgrid(x[:17], y[:5], indexing="ij")
    x, y = torch.cat([xx.flatten(), x[17:]]), torch.cat([yy.flatten(), y[5:]])
    expected = F.binary_cross_entropy(x, y, reduction="none")
    torch.testing.assert_close(host_bce(x, y).double(), expected, rtol=4 * 2**-24, atol=0)
