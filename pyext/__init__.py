"""pyext: hand-written C++ and CUDA kernels for PyTorch.

    import pyext.ops   # pyext.ops.add, mul, sigmoid, binary_cross_entropy, ...
    import pyext.nn    # Sigmoid, BCELoss, BCEWithLogitsLoss, MSELoss
    import pyext.optim # SGD, a drop-in for torch.optim.SGD with a fused multi-tensor step
"""
try:
    import torch  # noqa: F401  (loads libtorch before our library)

    from . import _C
except ImportError as e:  # pragma: no cover - only without a build
    raise ImportError(
        f"pyext's compiled kernels could not be loaded ({e}). Build them from the repository root with "
        "`pip install --no-build-isolation -e .` (nvcc on PATH or CUDA_HOME set builds the CUDA kernels "
        "too; PYEXT_CPU_ONLY=1 builds CPU kernels only)."
    ) from e

from . import ops  # noqa: E402  (registers fake kernels and autograd)
from . import nn  # noqa: E402
from . import optim  # noqa: E402


def build_info() -> dict:
    """What the compiled kernels were built with: {'cuda': bool, 'cuda_archs': [...], 'cpu_vec': str,
    'openmp': bool, 'half_vector_loads': bool} (the last: setup.py's PYEXT_HALF_VECTOR_LOADS)."""
    info = dict(_C.build_info())
    info["cuda_archs"] = [a for a in info["cuda_archs"].split(",") if a]
    return info


__all__ = ["ops", "nn", "optim", "build_info"]
