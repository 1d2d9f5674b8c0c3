"""Build pyext's C++ (CPU) and, when a CUDA toolkit is found, CUDA kernels.

Knobs (environment variables):
  PYEXT_CPU_ONLY=1          build the CPU kernels only, even with a CUDA toolkit present.
  CUDA_HOME=/path           the CUDA toolkit to use (else nvcc on PATH, resolved through wrapper
                            scripts and links to its real toolkit, else /usr/local/cuda).
  TORCH_CUDA_ARCH_LIST=...  architectures to compile for, e.g. "9.0" or "8.0;9.0+PTX". With a GPU
                            visible torch picks its arch; with none we default to DEFAULT_ARCHS.
  PYEXT_CPU_VEC=avx512_bf16|avx512|avx2|default  the CPU vector ISA for at::vec (default: the widest this
                                     CPU has; avx512_bf16 adds AVX512-BF16's rounding of float to bfloat16).
  PYEXT_HALF_VECTOR_LOADS=0|1  the cheap formulas and the SGD step read 512-bit vectors as two 256-bit loads
                            (default: on AMD's family 25, Zen 4, with AVX-512; cpu_kernels.cpp says why).
  PYEXT_SANITIZE=address,undefined  build the C++ with those sanitizers (run Python with the runtimes
                            preloaded; tests/sanitize.sh does it for the CPU test suite).
"""
import os
import re
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
DEFAULT_ARCHS = "8.0;9.0"  # A100 and H100/H200


def _toolkit_of(nvcc: Path):
    """The toolkit folder of an nvcc: follow links, and wrapper scripts that exec another nvcc."""
    seen = set()
    while nvcc not in seen:
        seen.add(nvcc)
        nvcc = nvcc.resolve()
        home = nvcc.parent.parent
        if (home / "include" / "cuda_runtime.h").exists():
            return home
        try:
            text = nvcc.read_text(errors="ignore")[:4096]  # a script: look for the nvcc it runs
        except OSError:
            return None
        targets = re.findall(r"(/\S+/bin/nvcc)\b", text)
        if not targets:
            return None
        nvcc = Path(targets[0])
    return None


def find_cuda_home():
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var) and (Path(os.environ[var]) / "bin" / "nvcc").exists():
            return Path(os.environ[var])
    nvcc = shutil.which("nvcc")
    if nvcc:
        home = _toolkit_of(Path(nvcc))
        if home:
            return home
    default = Path("/usr/local/cuda")
    if (default / "bin" / "nvcc").exists() and (default / "include" / "cuda_runtime.h").exists():
        return default
    return None


CPU_ONLY = os.environ.get("PYEXT_CPU_ONLY", "0") not in ("", "0")
CUDA_HOME = None if CPU_ONLY else find_cuda_home()
if CUDA_HOME is not None:
    # torch.utils.cpp_extension reads CUDA_HOME when it is imported.
    os.environ["CUDA_HOME"] = str(CUDA_HOME)

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


AVX512_FLAGS = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c",
                "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"]
CPU_VEC_FLAGS = {
    "avx512_bf16": [*AVX512_FLAGS, "-mavx512bf16", "-DPYEXT_AVX512_BF16"],
    "avx512": AVX512_FLAGS,
    "avx2": ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"],
    "default": ["-DCPU_CAPABILITY=DEFAULT"],
}


def cpuinfo_field(name):
    """The first CPU's value of a /proc/cpuinfo field ("" where there is none)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.split(":")[0].strip() == name), "")


def cpu_vec_flags():
    """at::vec's vector width follows the flags we compile with: the widest this CPU runs."""
    choice = os.environ.get("PYEXT_CPU_VEC")
    if choice is None:
        flags = set(cpuinfo_field("flags").split())
        if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma", "f16c"} <= flags:
            choice = "avx512_bf16" if "avx512_bf16" in flags else "avx512"
        elif {"avx2", "fma", "f16c"} <= flags:
            choice = "avx2"
        else:
            choice = "default"
    if choice not in CPU_VEC_FLAGS:
        raise SystemExit(f"PYEXT_CPU_VEC must be one of {', '.join(CPU_VEC_FLAGS)}, not {choice!r}")
    half = os.environ.get("PYEXT_HALF_VECTOR_LOADS")
    if half is None:
        zen4 = cpuinfo_field("vendor_id") == "AuthenticAMD" and cpuinfo_field("cpu family") == "25"
        half = "1" if zen4 and choice.startswith("avx512") else "0"
    return CPU_VEC_FLAGS[choice] + (["-DPYEXT_HALF_VECTOR_LOADS"] if half not in ("", "0") else [])


def cuda_archs():
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if not archs and not torch.cuda.is_available():
        archs = os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS
    if not archs:  # torch will compile for the visible GPUs
        caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
        archs = ";".join(f"{a}.{b}" for a, b in sorted(caps))
    return archs


def openmp_flags():
    """at::parallel_for's parallel region is an inline `#pragma omp parallel`, compiled into each caller:
    without OpenMP here every CPU kernel of ours would run on one thread. At run time the libgomp torch has
    already loaded serves it (one thread pool, and torch.set_num_threads applies)."""
    return ["-fopenmp"] if torch.backends.openmp.is_available() else []


def extension():
    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("*.cpp"))
    openmp = openmp_flags()
    cpu = [*cpu_vec_flags(), *openmp]  # the C++ standard: torch's cpp_extension picks it
    # Every function on a 64-byte boundary: a loop's place within its 64-byte blocks, to which this CPU's front
    # end is sensitive, then depends on its own function's code only, not on the sizes of the functions before
    # it (the same instructions of one float loop took 19 or 23 us by where a change elsewhere had moved them;
    # benchmarks/NOTES.md, session 25).
    cxx, link = ["-O3", "-falign-functions=64", *cpu], openmp
    sanitize = os.environ.get("PYEXT_SANITIZE")
    if sanitize:
        flags = [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
        cxx, link = ["-O1", "-g", *cpu, *flags], link + flags
    if CUDA_HOME is None:
        return CppExtension("pyext._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link)
    archs = cuda_archs()
    sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cuda").glob("*.cu"))
    # --threads 0: one nvcc compiles its architectures in parallel, on every core.
    nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo", "-DPYEXT_WITH_CUDA", "--threads", "0"]
    # build_info() reports the archs; nvcc would split a comma-separated -D value, so only cxx gets it.
    define = ["-DPYEXT_WITH_CUDA", f"-DPYEXT_CUDA_ARCHS={archs.replace(';', ',')}"]
    print(f"pyext: building CUDA kernels with {CUDA_HOME} for TORCH_CUDA_ARCH_LIST={archs}", file=sys.stderr)
    return CUDAExtension(
        "pyext._C", sources, extra_compile_args={"cxx": cxx + define, "nvcc": nvcc}, extra_link_args=link
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
)
