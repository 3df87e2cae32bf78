"""Where the CUDA sources live, how they are turned into one compilable text, and which template
instantiations the backend uses.

No CuPy import here: the CI compile test (tests/test_cuda_compile.py) feeds exactly these texts, options
and name expressions to NVRTC on a machine without a GPU, so what CI compiles is what the backend loads.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

# Cell ids of kernels/frnn_common.cuh.
CELL_IDS = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3}
CTYPES = {"float32": "float", "float64": "double"}

# Translation units: each becomes one RawModule.
POINTWISE = "pointwise.cu"
PERSISTENT = "persistent.cu"
UNITS = (POINTWISE, PERSISTENT)

# Must match PERSIST_MAX_N / PERSIST_THREADS in kernels/persistent.cu.
PERSIST_MAX_N = 8
PERSIST_THREADS = 256

# NVRTC options the backend compiles with.
OPTIONS = ("-std=c++17",)
# What CuPy 14's RawModule appends to OPTIONS on its own (cupy/cuda/compiler.py), besides the
# architecture; the compile test adds these too, so that CI compiles what a GPU run loads.
# -ftz=true flushes float32 denormals (below ~1.2e-38) to zero: far below the parity tolerance.
CUPY_ADDED_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")

ENV_KERNEL_DIR = "FASTRNN_KERNEL_DIR"

# [ \t] rather than \s: \s also matches newlines, which would swallow the blank lines around an
# #include and put the #line numbers in NVRTC's messages off.
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", re.MULTILINE)


def _candidate_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get(ENV_KERNEL_DIR)
    if env:
        dirs.append(Path(env))
    here = Path(__file__).resolve().parent
    dirs.append(here.parent / "_kernels")          # installed wheel: kernels/ shipped as fastrnn/_kernels
    dirs.append(here.parent.parent / "kernels")    # source tree / editable install
    return dirs


def kernel_dir() -> Path:
    """The directory holding the .cu / .cuh files: $FASTRNN_KERNEL_DIR, the wheel's fastrnn/_kernels,
    or the source tree's kernels/ (in that order)."""
    for d in _candidate_dirs():
        if (d / POINTWISE).is_file():
            return d
    try:  # a zipped or otherwise non-filesystem install
        from importlib.resources import files
        res = files("fastrnn") / "_kernels"
        if (res / POINTWISE).is_file():
            return Path(str(res))
    except Exception:
        pass
    tried = ", ".join(str(d) for d in _candidate_dirs())
    raise FileNotFoundError(f"fastrnn's CUDA sources ({POINTWISE}) were not found; looked in {tried}")


def expand(unit: str, directory: Path | None = None) -> str:
    """The unit's text with its local #include "..." files pasted in (once each, #line-marked).

    Pasting instead of passing -I makes the text CuPy hashes for its kernel cache cover the headers too,
    so editing a header can never load a stale cached binary.
    """
    directory = kernel_dir() if directory is None else directory
    seen: set[str] = set()

    def paste(name: str) -> str:
        if name in seen:
            return ""
        seen.add(name)
        text = (directory / name).read_text()
        text = _PRAGMA_ONCE.sub("", text)

        def repl(m: re.Match) -> str:
            inner = paste(m.group(1))
            resume = text.count("\n", 0, m.start()) + 2   # the line after the #include
            return f'#line 1 "{m.group(1)}"\n{inner}\n#line {resume} "{name}"'

        return _INCLUDE.sub(repl, text)

    return f'#line 1 "{unit}"\n' + paste(unit)


def fwd_step_name(cell: str, dtype: str) -> str:
    return f"fastrnn::fwd_step<{CTYPES[dtype]}, {CELL_IDS[cell]}>"


def bwd_step_name(cell: str, dtype: str) -> str:
    return f"fastrnn::bwd_step<{CTYPES[dtype]}, {CELL_IDS[cell]}>"


def persistent_name(cell: str, dtype: str) -> str:
    return f"fastrnn::persistent_fwd<{CTYPES[dtype]}, {CELL_IDS[cell]}>"


def name_expressions(unit: str) -> list[str]:
    """Every instantiation of `unit` that the backend may launch (all of them are compiled in CI)."""
    names = []
    for cell in CELL_IDS:
        for dtype in CTYPES:
            if unit == POINTWISE:
                names += [fwd_step_name(cell, dtype), bwd_step_name(cell, dtype)]
            elif unit == PERSISTENT:
                names.append(persistent_name(cell, dtype))
            else:
                raise ValueError(f"unknown CUDA unit {unit!r}")
    return names
