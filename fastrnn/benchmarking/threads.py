"""Thread counts: the same for every contestant, set before a worker imports anything, and read back.

Each library sizes its thread pool from its own knob, most of them read once at import, so the runner
puts every knob into the worker's environment (`worker_env`); the worker also tells PyTorch directly,
then reads back what each library it loaded actually uses (`read_back`), for the record.
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import Optional

# OpenMP (PyTorch, Numba's omp layer), MKL, OpenBLAS (NumPy's and SciPy's), Apple Accelerate, Numba.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
              "NUMBA_NUM_THREADS")
# Other settings that change thread behaviour, recorded when set.
RELATED_ENV = ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "CUPY_TF32")

# Symbols that report an OpenBLAS build's thread count (scipy-openblas wheels prefix and suffix them).
_OPENBLAS_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                     "openblas_get_num_threads64_", "openblas_get_num_threads")


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def worker_env(threads: int, base: Optional[dict] = None) -> dict:
    """`base` (default: this process's environment) with every thread knob set to `threads`."""
    env = dict(os.environ if base is None else base)
    env.update({name: str(threads) for name in THREAD_ENV})
    return env


def apply_in_process(threads: int) -> None:
    """What cannot be set through the environment: PyTorch's intra-op pool, when torch is loaded."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries mapped into this process (Linux), NumPy's and SciPy's."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def openblas_threads() -> dict:
    """{library file name: thread count} for each OpenBLAS loaded here."""
    found = {}
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in _OPENBLAS_GETTERS:
            getter = getattr(lib, symbol, None)
            if getter is not None:
                getter.restype = ctypes.c_int
                found[os.path.basename(path)] = int(getter())
                break
    return found


def read_back() -> dict:
    """The thread count each library loaded in this process uses, as it reports it."""
    threads: dict = {}
    blas = openblas_threads()
    if blas:
        threads["openblas"] = blas
    if "numba" in sys.modules:
        import numba

        threads["numba"] = numba.get_num_threads()
    torch = sys.modules.get("torch")
    if torch is not None:
        threads["torch"] = torch.get_num_threads()
        threads["torch_interop"] = torch.get_num_interop_threads()
    env = {k: os.environ[k] for k in THREAD_ENV + RELATED_ENV if k in os.environ}
    if env:
        threads["env"] = env
    return threads
