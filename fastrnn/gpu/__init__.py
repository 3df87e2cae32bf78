"""The "cupy" backend: fused CUDA kernels (kernels/*.cu) driven through CuPy, GEMMs on cuBLAS.

Importing this package never touches the GPU or imports CuPy; unavailable_reason() says in one sentence
why the backend cannot run here (no CuPy, no visible GPU, a driver too old, no cuBLAS).  The contract of
KERNELS is the one of fastrnn/contract.py.

Environment switches (read on every call):
  FASTRNN_CUDA_GRAPHS=0      run the step loops launch by launch instead of replaying CUDA graphs
  FASTRNN_CUDA_PERSISTENT=0  never use the persistent small-batch inference kernel
  FASTRNN_KERNEL_DIR=path    load the .cu sources from there
"""
from __future__ import annotations

from ..contract import (BackwardRequest, BackwardResult, CellKernels, ForwardRequest, ForwardResult,
                        StepRequest, StepResult)

_CELL_NAMES = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def unavailable_reason():
    """None when the backend can run here, else one sentence saying what is missing."""
    try:
        import cupy
    except Exception as exc:
        return (f"CuPy is not importable ({type(exc).__name__}: {exc}); "
                "install fastrnn[cuda12] or fastrnn[cuda13]")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        text = str(exc)
        if "InsufficientDriver" in text or "driver version is insufficient" in text:
            return _driver_problem(cupy, text)
        return f"no CUDA GPU is visible ({type(exc).__name__}: {text})"
    if count == 0:
        return "no CUDA GPU is visible (cupy.cuda.runtime.getDeviceCount() returned 0)"
    try:
        from cupy.cuda import cublas  # noqa: F401  (the library is loaded on first attribute access)
        cublas.getVersion
    except Exception as exc:
        return f"cuBLAS cannot be loaded ({type(exc).__name__}: {exc})"
    try:
        from . import _source
        _source.kernel_dir()
    except Exception as exc:
        return str(exc)
    return None


def _version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def _driver_problem(cupy, text: str) -> str:
    """cudaErrorInsufficientDriver means either no driver at all (a machine without a GPU) or one older
    than the CUDA runtime CuPy was built for; say which."""
    try:
        driver = cupy.cuda.runtime.driverGetVersion()
        runtime = cupy.cuda.runtime.runtimeGetVersion()
    except Exception:
        return f"no usable NVIDIA driver ({text})"
    if driver == 0:
        return "no NVIDIA driver is installed, so no CUDA GPU is visible"
    return (f"the NVIDIA driver supports CUDA {_version(driver)} but this CuPy needs CUDA "
            f"{_version(runtime)}: update the driver or install the CuPy wheel for CUDA {_version(driver)}")


def _ops():
    from . import _cupy_ops
    return _cupy_ops.ops()


def _forward(req: ForwardRequest) -> ForwardResult:
    from . import _layer
    return _layer.forward(_ops(), req)


def _backward(req: BackwardRequest) -> BackwardResult:
    from . import _layer
    return _layer.backward(_ops(), req)


def _step(req: StepRequest) -> StepResult:
    from . import _layer
    return _layer.step(_ops(), req)


KERNELS = {name: CellKernels(forward=_forward, backward=_backward, step=_step) for name in _CELL_NAMES}

__all__ = ["KERNELS", "unavailable_reason"]
