"""The GEMM providers of the numba backend, and the per-machine choice between them.

Every matrix product of the backend goes through here:

- sequence products (`matmul`): the input projection X W_ih^T over all T*N rows, and backward's
  dx = dG W_ih, dW_ih = dG^T X, dW_hh = dG^T H_prev; always NumPy's BLAS.
- step products (`step_product`): the per-step recurrent GEMM with W_hh fixed for the whole call,
  h W_hh^T in the forward loop and dG W_hh in the backward loop. W_hh is prepared once per call
  (a provider may copy it into the layout its kernel streams) and reused for every step.

Step providers (a name in PROVIDERS):

  numpy     NumPy's BLAS (OpenBLAS in the pip wheels) on out = a op(W).
  numpy-t   NumPy's BLAS on the transposed product op(W)^T a^T into a scratch buffer, copied back
            transposed: on OpenBLAS (Zen, AVX2) the (G, N) result was measured ~1.6x faster than
            the (N, G) one for N = 4..64 (LSTM (N, H) = (32, 256): 153 -> 95 us a step); the copy
            costs ~0.6 ns an element (~19 us at 32 x 1024). The pointwise passes need the result
            row-major: read through a transposed view they lose their SIMD, ~10x slower.
  numba     fastrnn's jitted small_matmul (_blas.py), for a few rows (at most NUMBA_MAX_ROWS): no
            BLAS call overhead, W streamed once per row.
  mkl, mkl-packed   opt-in only, see below.

Which one a shape gets is measured on first use on this machine (tens of milliseconds: every
candidate in interleaved rounds on scratch arrays of the same shape, fastest rounds compared), and the
choice is cached on disk under cache_dir() keyed by CPU model, thread count and library versions,
so later processes do not measure again. FASTRNN_GEMM=<name> forces one provider for every step
product it can run (tests and benchmarks use that; a forced "numba" still leaves shapes above
NUMBA_MAX_ROWS rows to numpy). `fastrnn info` prints what was chosen (choices_report).

Opt-in only, with the extra fastrnn[mkl]: FASTRNN_GEMM=mkl or mkl-packed (_mkl.py: cblas_?gemm, or
W packed once per call by cblas_?gemm_pack and each step run by cblas_?gemm_compute). On this
project's 2-core AMD EPYC machine neither beat OpenBLAS on one thread at the step shapes (parity,
packing bought nothing) and both lost ~2x on the whole-sequence shapes; its two-thread figures were
swamped by other jobs on the shared machine, and a second OpenMP pool next to OpenBLAS's is the
trap threads.py describes. So the chooser does not measure them. On the Intel machine of issue 9, packed MKL was 2.4x OpenBLAS on the LSTM step shape:
worth a measured choice there once both pools can be kept from spinning against each other.
"""
from __future__ import annotations

import functools
import json
import os
from importlib import metadata
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .. import threads
from ._blas import small_matmul, transpose_into

ENV_FORCE = "FASTRNN_GEMM"
ENV_CACHE_DIR = "FASTRNN_CACHE_DIR"
CACHE_FILE = "gemm-choices.json"

PROVIDERS = ("numpy", "numpy-t", "numba", "mkl", "mkl-packed")
MKL_PROVIDERS = ("mkl", "mkl-packed")
# Rows above which the jitted product is never a candidate (it loses to BLAS well before; measured
# on 2 Zen 3 cores, H = 128..512).
NUMBA_MAX_ROWS = 8

# Measurement: ROUNDS interleaved rounds, each timing every candidate over enough calls to fill
# ROUND_S seconds (at least one call); the candidate with the fastest round wins. The fastest round,
# not the median: on a shared machine other jobs only ever add time, and they came and went within
# a measurement (2-thread GEMMs 2-100x slower while they ran).
ROUNDS = 7
ROUND_S = 0.002

StepProduct = Callable[[np.ndarray, np.ndarray], None]


def matmul(a: np.ndarray, b: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """a @ b for the whole-sequence products; a and b may be transposed or strided views."""
    return np.matmul(a, b, out=out)


# -- step products --------------------------------------------------------------------------------

def _numpy(w: np.ndarray, transpose: bool, rows: int) -> StepProduct:
    b = w.T if transpose else w

    def product(a, out):
        np.matmul(a, b, out=out)
    return product


def _numpy_t(w: np.ndarray, transpose: bool, rows: int) -> StepProduct:
    # out^T = op(W)^T a^T: W itself when transpose, else the view W^T.
    wt = w if transpose else w.T
    scratch = np.empty((wt.shape[0], rows), dtype=w.dtype)

    def product(a, out):
        np.matmul(wt, a.T, out=scratch)
        transpose_into(scratch, out)
    return product


def _numba(w: np.ndarray, transpose: bool, rows: int) -> StepProduct:
    # small_matmul wants b (K, M) C-contiguous: W^T copied once for the call, W as it is.
    b = np.ascontiguousarray(w.T) if transpose else np.ascontiguousarray(w)

    def product(a, out):
        small_matmul(a, b, out)
    return product


def _mkl_plain(w, transpose, rows):
    from . import _mkl
    return _mkl.plain(w, transpose, rows)


def _mkl_packed(w, transpose, rows):
    from . import _mkl
    return _mkl.packed(w, transpose, rows)


_MAKERS = {"numpy": _numpy, "numpy-t": _numpy_t, "numba": _numba, "mkl": _mkl_plain,
           "mkl-packed": _mkl_packed}


def mkl_unavailable_reason() -> Optional[str]:
    """None where libmkl_rt loads (this loads it), else why not."""
    from . import _mkl
    return _mkl.unavailable_reason()


def step_product(w: np.ndarray, transpose: bool, rows: int) -> StepProduct:
    """W prepared for the per-step products of one call: product(a, out) sets
    out (rows, M) = a (rows, K) @ (W.T if transpose else W).

    a and out must be C-contiguous and must not alias each other or W; W must not change during
    the call. The provider is the one chosen for this shape on this machine (or FASTRNN_GEMM's).
    """
    K, M = (w.shape[1], w.shape[0]) if transpose else w.shape
    return _MAKERS[provider_for(_shape_key(transpose, rows, K, M, w.dtype))](w, transpose, rows)


def _shape_key(transpose: bool, rows: int, K: int, M: int, dtype) -> str:
    return f"{'nt' if transpose else 'nn'} {np.dtype(dtype).name} {rows}x{K}x{M}"


def _parse_key(key: str):
    op, dtype, dims = key.split()
    rows, K, M = (int(d) for d in dims.split("x"))
    return op == "nt", rows, K, M, np.dtype(dtype)


def candidates(rows: int) -> tuple[str, ...]:
    """The providers the chooser measures for a product of `rows` rows. MKL's are not among them:
    opt-in only (see the module docstring)."""
    return ("numpy", "numpy-t") + (("numba",) if rows <= NUMBA_MAX_ROWS else ())


# -- the choice -----------------------------------------------------------------------------------

_choices: dict[str, str] = {}     # this machine section's choices, loaded from disk once
_loaded_for: Optional[str] = None


def forced_provider() -> Optional[str]:
    """FASTRNN_GEMM's provider, or None; an unknown name is an error naming the known ones."""
    name = os.environ.get(ENV_FORCE, "").strip()
    if not name:
        return None
    if name not in PROVIDERS:
        raise ValueError(f"{ENV_FORCE}={name!r} is not a GEMM provider; expected one of "
                         f"{', '.join(PROVIDERS)}")
    if name in MKL_PROVIDERS and mkl_unavailable_reason() is not None:
        raise ValueError(f"{ENV_FORCE}={name}: MKL is not available: {mkl_unavailable_reason()}")
    return name


def provider_for(key: str) -> str:
    """The provider for a step-product shape: forced, cached, or measured now (then cached)."""
    forced = forced_provider()
    rows = _parse_key(key)[1]
    if forced is not None:
        return "numpy" if forced == "numba" and rows > NUMBA_MAX_ROWS else forced
    section = machine_id()
    if _loaded_for != section:
        _load(section)
    name = _choices.get(key)
    if name not in candidates(rows):
        name = measure(key)
        _choices[key] = name
        _save(section)
    return name


def measure(key: str) -> str:
    """Time every candidate on scratch arrays of the key's shape; the fastest round wins."""
    transpose, rows, K, M, dtype = _parse_key(key)
    rng = np.random.default_rng(0)
    w = rng.uniform(-1, 1, (M, K) if transpose else (K, M)).astype(dtype)
    a = rng.uniform(-1, 1, (rows, K)).astype(dtype)
    out = np.empty((rows, M), dtype=dtype)
    names = candidates(rows)
    products = [_MAKERS[name](w, transpose, rows) for name in names]
    calls = []
    for product in products:           # warm up (compiles or loads the jitted kernel) and size
        product(a, out)
        t0 = time.perf_counter()
        product(a, out)
        calls.append(max(1, int(ROUND_S / max(time.perf_counter() - t0, 1e-7))))
    samples = [[] for _ in names]
    for _ in range(ROUNDS):
        for i, product in enumerate(products):
            t0 = time.perf_counter()
            for _ in range(calls[i]):
                product(a, out)
            samples[i].append((time.perf_counter() - t0) / calls[i])
    return names[int(np.argmin([min(s) for s in samples]))]


def machine_id() -> str:
    """What a cached choice is valid for: CPU model, thread count, NumPy's BLAS and versions."""
    return f"{_static_machine_id()} | threads {threads.get_num_threads()}"


@functools.lru_cache(maxsize=None)
def _static_machine_id() -> str:
    """The part of machine_id that cannot change within a process (read once: it costs ~1 ms)."""
    import numba

    blas = getattr(np.__config__, "CONFIG", {}).get("Build Dependencies", {}).get("blas", {})
    try:
        mkl = "mkl " + metadata.version("mkl")
    except metadata.PackageNotFoundError:
        mkl = "no mkl"
    return (f"{_cpu_model()} | numpy {np.__version__} ({blas.get('name', '?')} "
            f"{blas.get('version', '?')}) | numba {numba.__version__} | {mkl}")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_dir() -> Path:
    """FASTRNN_CACHE_DIR, else $XDG_CACHE_HOME/fastrnn, else ~/.cache/fastrnn."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastrnn"


def read_cache_file(name: str = CACHE_FILE) -> dict:
    """{machine section: {key: choice}} from cache_dir()/name; {} when missing or unreadable."""
    try:
        data = json.loads((cache_dir() / name).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _load(section: str) -> None:
    global _loaded_for
    entries = read_cache_file().get(section, {})
    _choices.clear()
    _choices.update({k: v for k, v in entries.items() if v in PROVIDERS})
    _loaded_for = section


def _save(section: str) -> None:
    save_cache_section(CACHE_FILE, section, _choices)


def save_cache_section(name: str, section: str, choices: dict) -> None:
    """Merge one machine section's choices into cache_dir()/name (other machines' sections kept);
    an unwritable cache directory only costs a new measurement in the next process."""
    data = read_cache_file(name)
    data[section] = dict(sorted({**data.get(section, {}), **choices}.items()))
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, folder / name)
    except OSError:
        pass


def choices_report() -> str:
    """What `fastrnn info` prints: the forced provider or the cached choices for this machine."""
    forced = forced_provider()
    lines = [f"gemm: step products measured per shape on first use among {', '.join(candidates(1))} "
             f"({', '.join(MKL_PROVIDERS)} opt-in via {ENV_FORCE}); cached in {cache_dir() / CACHE_FILE}"]
    if forced is not None:
        lines.append(f"  forced by {ENV_FORCE}={forced}")
    section = machine_id()
    lines.append(f"  this machine: {section}")
    entries = read_cache_file().get(section, {})
    if not entries:
        lines.append("  no shape measured yet")
    for key, name in sorted(entries.items(), key=lambda kv: _parse_key(kv[0])[:4]):
        op, rows, K, M, dtype = _parse_key(key)
        what = "h W^T" if op else "dG W"
        lines.append(f"  {what:6s} {dtype.name:8s} {rows:5d} x {K:5d} x {M:5d}  {name}")
    return "\n".join(lines)
