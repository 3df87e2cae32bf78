"""One thread count for every runtime the CPU backend drives: OpenBLAS, MKL and Numba.

Two runtimes that each keep their own pool busy on the same cores slow each other down many times
over: OpenBLAS's workers yield-spin for a while after each GEMM and OpenMP's busy-wait after each
region, so a GEMM on one pool right after work on the other waits for the spinning threads to give
the cores back (measured on 2 cores: 20-50x slower GEMMs). fastrnn therefore keeps all of them at
one count, set here.

The default follows OMP_NUM_THREADS, else the CPUs this process may run on, which is what OpenBLAS
and Numba each default to as well; until set_num_threads is called, fastrnn leaves OpenBLAS and
Numba at what their own variables gave them. Nothing here imports Numba or loads a BLAS: a pool
that is not loaded yet is set when it is (fastrnn.cpu applies the count to Numba on import, the MKL
provider to MKL when it loads it).
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import Optional

_threads: Optional[int] = None

# Exported names of the C function openblas_set_num_threads in the builds NumPy (ILP64, suffix 64_)
# and SciPy ship (scipy-openblas prefixes its symbols) and in a system OpenBLAS. The names ending in
# a bare "_" are the Fortran bindings, which take a pointer: never those.
_OPENBLAS_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads")


def default_num_threads() -> int:
    """OMP_NUM_THREADS when it holds a positive integer, else the CPUs this process may use."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """The number of threads fastrnn's CPU backend and the BLAS it calls use.

    Returns
    -------
    int
        The count given to `set_num_threads`, or by default OMP_NUM_THREADS, else the number of
        CPUs this process may run on.

    Examples
    --------
    >>> import fastrnn
    >>> fastrnn.get_num_threads() >= 1
    True
    """
    return _threads if _threads is not None else default_num_threads()


def set_num_threads(n: int) -> None:
    """Use n threads in OpenBLAS, MKL (when fastrnn has loaded it) and Numba's parallel layer.

    Parameters
    ----------
    n : int
        A positive number of threads; it applies to the whole process, as each runtime's own
        setting does.

    Examples
    --------
    >>> import fastrnn
    >>> before = fastrnn.get_num_threads()
    >>> fastrnn.set_num_threads(1)
    >>> fastrnn.get_num_threads()
    1
    >>> fastrnn.set_num_threads(before)
    """
    global _threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive int, got {n!r}")
    _threads = n
    apply()


def apply_if_set() -> None:
    """apply() when set_num_threads has been called; otherwise each pool keeps the count its own
    environment variables gave it (OPENBLAS_NUM_THREADS, NUMBA_NUM_THREADS, ...)."""
    if _threads is not None:
        apply()


def apply() -> None:
    """Push the current count into every pool that is loaded now."""
    n = get_num_threads()
    for lib, name in openblas_libraries():
        setter = getattr(lib, name)
        setter.argtypes = [ctypes.c_int]
        setter.restype = None
        setter(n)
    if "numba" in sys.modules:
        _set_numba(n)
    for hook in _hooks:
        hook(n)


_hooks: list = []


def on_change(hook) -> None:
    """Call hook(n) now and whenever the count changes (how a lazily loaded runtime follows it)."""
    _hooks.append(hook)
    hook(get_num_threads())


def _set_numba(n: int) -> None:
    """Numba's pool is capped at its launch size (NUMBA_NUM_THREADS); setting the count launches the
    pool, so it is set only once Numba has started it: fastrnn's kernels never start it."""
    from numba.np.ufunc import parallel

    if parallel._is_initialized:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def _loaded_libraries() -> list[str]:
    """Paths of the shared libraries mapped into this process (Linux; elsewhere none)."""
    try:
        with open("/proc/self/maps") as maps:
            fields = (line.split(None, 5) for line in maps)
            paths = {f[5].strip() for f in fields if len(f) == 6}
    except OSError:
        return []
    return sorted(p for p in paths if ".so" in os.path.basename(p))


# omp_pause_resource_all's "soft" kind (OpenMP 5.0): idle threads may be let go, state is kept.
_OMP_PAUSE_SOFT = 1
_gnu_openmp_pauses: Optional[list] = None


def release_idle_openmp_threads() -> None:
    """Let the idle threads of GNU OpenMP (libgomp: PyTorch's Linux wheels bundle it) go, so that
    they stop busy-waiting on the cores fastrnn's kernels are about to use.

    After each parallel region libgomp's workers spin for the next one (GOMP_SPINCOUNT, by default
    some milliseconds), and a thread team of fastrnn's started meanwhile shares its cores with them
    (measured on 2 cores, the char-LM converted by fastrnn.torch: 163 ms a training step against
    140 ms with OMP_WAIT_POLICY=PASSIVE). omp_pause_resource_all(omp_pause_soft), the OpenMP 5.0
    call for handing resources to another runtime, ends the calling thread's idle pool; libgomp
    starts a new one at its next parallel region (tens of microseconds), with the same thread
    count. No setting of the other library changes. Looked up once per process among the libraries
    already loaded; a no-op where there is none (or on platforms without /proc/self/maps)."""
    global _gnu_openmp_pauses
    if _gnu_openmp_pauses is None:
        _gnu_openmp_pauses = []
        for path in _loaded_libraries():
            if not os.path.basename(path).startswith("libgomp"):
                continue
            try:
                lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
                pause = lib.omp_pause_resource_all
            except (OSError, AttributeError):
                continue
            pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
            _gnu_openmp_pauses.append(pause)
    for pause in _gnu_openmp_pauses:
        pause(_OMP_PAUSE_SOFT)


def openblas_libraries() -> list[tuple[ctypes.CDLL, str]]:
    """(library, name of its openblas_set_num_threads) for every OpenBLAS loaded in this process
    (NumPy's, and SciPy's once something has imported scipy.linalg), found without loading anything
    new; the matching getter is the same name with "get" for "set"."""
    found = []
    for path in _loaded_libraries():
        if "openblas" not in os.path.basename(path).lower():
            continue
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        except OSError:
            continue
        name = next((n for n in _OPENBLAS_SETTERS if hasattr(lib, n)), None)
        if name is not None:
            found.append((lib, name))
    return found
