"""Every CUDA kernel and every template instantiation the "cupy" backend launches compiles with NVRTC for
sm_80 and sm_90.  No GPU is needed: NVRTC runs on the CPU.  Registers and spills of each kernel are printed
(run with -s) and written into the assertion message of any failure.

The source text, options and name expressions come from fastrnn.gpu._source, the same place the backend
gets them from, so CI compiles exactly what a GPU run would load.
"""
from __future__ import annotations

import re

import pytest

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


def test_every_backend_instantiation_is_compiled():
    """The names the glue asks CuPy for are exactly the ones compiled above."""
    compiled = {n for unit in _source.UNITS for n in _source.name_expressions(unit)}
    for cell in _source.CELL_IDS:
        for dtype in _source.CTYPES:
            for name in (_source.fwd_step_name(cell, dtype), _source.bwd_step_name(cell, dtype),
                         _source.persistent_name(cell, dtype)):
                assert name in compiled


def test_kernel_sources_are_found():
    d = _source.kernel_dir()
    for unit in _source.UNITS:
        assert (d / unit).is_file()
        text = _source.expand(unit, d)
        assert "#include \"" not in text, "a local include was not pasted in"
