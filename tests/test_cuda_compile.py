"""Every CUDA kernel and every template instantiation the "cupy" backend launches compiles with NVRTC for
sm_80 and sm_90.  No GPU is needed: NVRTC runs on the CPU.  Registers and spills of each kernel are printed
(run with -s) and written into the assertion message of any failure.

The source text, options and name expressions come from fastrnn.gpu._source, the same place the backend
gets them from, so CI compiles exactly what a GPU run would load.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from fastrnn.cells import CELLS
from fastrnn.gpu import _source

pytest.importorskip("cupy", reason="cupy is not installed: NVRTC compile test skipped")
try:
    from cupy.cuda import nvrtc
except Exception as exc:  # cupy present but its NVRTC binding or library is not
    pytest.skip(f"NVRTC is not importable ({type(exc).__name__}: {exc})", allow_module_level=True)

ARCHS = ("sm_80", "sm_90")


def _nvrtc_or_skip():
    try:
        nvrtc.getVersion()
    except Exception as exc:  # libnvrtc not found
        pytest.skip(f"NVRTC is not usable here ({type(exc).__name__}: {exc})")


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")
_USAGE = re.compile(r"Used (\d+) registers")
_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def compile_unit(unit: str, arch: str):
    """Compile one translation unit; return (ok, log, {name expression: (regs, spill_st, spill_ld)})."""
    src = _source.expand(unit)
    names = _source.name_expressions(unit)
    prog = nvrtc.createProgram(src, unit, [], [])
    try:
        for name in names:
            nvrtc.addNameExpression(prog, name)
        options = list(_source.OPTIONS) + list(_source.CUPY_ADDED_OPTIONS) + [
            f"--gpu-architecture={arch}", "-Xptxas=-v"]
        try:
            nvrtc.compileProgram(prog, options)
            ok = True
        except nvrtc.NVRTCError:
            ok = False
        log = nvrtc.getProgramLog(prog)
        stats = {}
        if ok:
            lowered = {nvrtc.getLoweredName(prog, name): name for name in names}
            current = None
            for line in log.splitlines():
                m = _ENTRY.search(line)
                if m:
                    current = lowered.get(m.group(1), m.group(1))
                    stats.setdefault(current, [None, None, None])
                    continue
                if current is None:
                    continue
                m = _SPILL.search(line)
                if m:
                    stats[current][1:] = [int(m.group(1)), int(m.group(2))]
                m = _USAGE.search(line)
                if m:
                    stats[current][0] = int(m.group(1))
            missing = [n for n in names if n not in stats]
            assert not missing, f"{unit} {arch}: no ptxas report for {missing}\n{log}"
        return ok, log, {k: tuple(v) for k, v in stats.items()}
    finally:
        nvrtc.destroyProgram(prog)


def _table(unit, arch, stats):
    lines = [f"{unit} for {arch}:"]
    for name, (regs, st, ld) in sorted(stats.items()):
        lines.append(f"  {name:45s} {regs:4d} registers, spill stores {st} B, spill loads {ld} B")
    return "\n".join(lines)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("unit", _source.UNITS)
def test_kernels_compile(unit, arch):
    _nvrtc_or_skip()
    ok, log, stats = compile_unit(unit, arch)
    assert ok, f"NVRTC failed to compile {unit} for {arch}:\n{log}"
    table = _table(unit, arch, stats)
    print("\n" + table)
    spilling = {n: s for n, s in stats.items() if s[1] or s[2]}
    assert not spilling, f"register spills in {unit} for {arch}:\n{table}"
    # warnings are not tolerated either: they usually mean a narrowing or an unused-result bug
    assert "warning" not in log.lower(), f"NVRTC warnings for {unit} ({arch}):\n{log}"


# Written out here, not taken from _source: the C++ element type of each dtype, the enumerator of
# kernels/frnn_common.cuh that names each cell, and the kernels of each unit.
C_TYPES = {"float32": "float", "float64": "double"}
CELL_ENUMERATORS = {"rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU", "lstm": "LSTM", "gru": "GRU"}
UNIT_KERNELS = {"pointwise.cu": ("fwd_step", "bwd_step"), "persistent.cu": ("persistent_fwd",)}


def _enum_values() -> dict[str, int]:
    """The cell enumerators of kernels/frnn_common.cuh and their values, read from the source."""
    text = (_source.kernel_dir() / "frnn_common.cuh").read_text()
    m = re.search(r"enum\s*:\s*int\s*\{([^}]*)\}", text)
    assert m, "the cell enum of frnn_common.cuh was not found"
    items = (item.split("=") for item in m.group(1).split(",") if item.strip())
    return {name.strip(): int(value) for name, value in items}


def _expected_instantiations() -> dict[tuple[str, str, str], tuple[str, str]]:
    """(kernel, cell, dtype) -> (unit, name expression) for every kernel the backend must be able to
    launch: each kernel of each unit, for every cell of fastrnn.cells and both dtypes."""
    ids = _enum_values()
    return {(kernel, cell, dtype): (unit, f"fastrnn::{kernel}<{C_TYPES[dtype]}, "
                                          f"{ids[CELL_ENUMERATORS[cell]]}>")
            for unit, kernels in UNIT_KERNELS.items() for kernel in kernels
            for cell in CELLS for dtype in C_TYPES}


def test_the_compiled_instantiations_are_the_expected_ones():
    """What the compile test above builds (and a GPU run loads) is every cell in both dtypes, with
    the cell ids and element types the kernels define: a cell added to fastrnn.cells without a CUDA
    id, or an id out of step with frnn_common.cuh, fails here."""
    compiled = {(unit, name) for unit in _source.UNITS for name in _source.name_expressions(unit)}
    assert compiled == set(_expected_instantiations().values())


def test_the_glue_launches_the_expected_instantiation():
    """The kernel CupyOps looks up for each cell and dtype is that cell's, in that dtype (a swapped
    element type or cell id would still be compiled, but would compute garbage)."""
    from fastrnn.gpu import _cupy_ops

    class LookedUp(Exception):
        """Stops a launch once the kernel has been asked for: nothing runs without a GPU."""

    def lookup(unit, name):
        raise LookedUp(unit, name)

    ops = object.__new__(_cupy_ops.CupyOps)
    ops.function = lookup
    asked = {}
    for cell_name, cell in CELLS.items():
        for dtype in C_TYPES:
            buf = np.zeros(1, dtype)
            launches = {"fwd_step": lambda: ops.fwd_step(cell, 1, 1, 1, 0, 0, None, *[buf] * 10),
                        "bwd_step": lambda: ops.bwd_step(cell, 1, 1, 1, 0, 0, None, *[buf] * 11),
                        "persistent_fwd": lambda: ops._persistent_kernel(cell, dtype, 1, 0)}
            for kernel, launch in launches.items():
                with pytest.raises(LookedUp) as info:
                    launch()
                asked[(kernel, cell_name, dtype)] = info.value.args
    assert asked == _expected_instantiations()


def test_kernel_sources_are_found():
    d = _source.kernel_dir()
    for unit in _source.UNITS:
        assert (d / unit).is_file()
        text = _source.expand(unit, d)
        assert "#include \"" not in text, "a local include was not pasted in"
