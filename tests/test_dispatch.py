"""The registry: resolution, FASTRNN_BACKEND, "auto", fr.backends(), lazy imports, clear errors."""
from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

import fastrnn as fr
from fastrnn import dispatch
from fastrnn.cells import CELLS

from support import CELL_KINDS, make_cell, make_module


@pytest.fixture(autouse=True)
def no_env_backend(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)


def _best_available(device):
    available = [n for n in dispatch.registered_backends()
                 if dispatch.backend_info(n).device == device and dispatch.is_available(n)]
    return max(available, key=lambda n: dispatch.backend_info(n).priority) if available else None


def test_the_three_backends_are_registered_with_their_devices():
    names = dispatch.registered_backends()
    assert {"numpy", "numba", "cupy"} <= set(names)
    assert dispatch.backend_info("numpy").device == "cpu"
    assert dispatch.backend_info("numba").device == "cpu"
    assert dispatch.backend_info("cupy").device == "cuda"
    assert dispatch.backend_info("numba").priority > dispatch.backend_info("numpy").priority


def test_reference_is_always_available():
    assert dispatch.unavailable_reason("numpy") is None
    assert "numpy" in fr.backends()


def test_backends_lists_the_available_ones_best_first(temporary_backend):
    """fr.backends() against lists written out here: the two CPU backends (numba only where Numba
    and SciPy import), and around them one backend that ranks first, one between numba and numpy and
    one, ranked highest of all, that cannot run and so must not be listed."""
    numba_here = all(importlib.util.find_spec(m) is not None for m in ("numba", "scipy"))
    numba = ["numba"] if numba_here else []
    assert fr.backends("cpu") == numba + ["numpy"]
    cuda = fr.backends("cuda")
    assert cuda in ([], ["cupy"])

    temporary_backend("between", "fastrnn.reference", priority=5)
    temporary_backend("broken", "fastrnn.reference", ("fastrnn_no_such_module",), priority=99)
    temporary_backend("first", "fastrnn.reference", priority=20)
    temporary_backend("cuda_last", "fastrnn.reference", priority=-1, device="cuda")
    assert fr.backends("cpu") == ["first"] + numba + ["between", "numpy"]
    assert fr.backends("cuda") == cuda + ["cuda_last"]
    # one list for both devices, by priority; numba and cupy tie at 10 and keep registration order
    assert fr.backends() == ["first"] + numba + cuda + ["between", "numpy", "cuda_last"]
    unavailable = set(dispatch.registered_backends()) - set(fr.backends())
    assert "broken" in unavailable
    assert all(dispatch.unavailable_reason(n) for n in unavailable), "each unavailable one says why"


def test_availability_report_has_a_line_per_backend():
    report = dispatch.availability_report().splitlines()
    assert len(report) == len(dispatch.registered_backends())
    for name, line in zip(dispatch.registered_backends(), report):
        assert line.startswith(name)
        reason = dispatch.unavailable_reason(name)
        assert ("available" in line) if reason is None else (reason in line)


@pytest.mark.parametrize("cell_name", list(CELLS))
def test_every_backend_implements_every_cell(backend, cell_name):
    kern = dispatch.kernels(cell_name, backend)
    assert isinstance(kern, dispatch.CellKernels)
    assert callable(kern.forward) and callable(kern.backward)
    assert kern.step is None or callable(kern.step)
    assert dispatch.kernels(CELLS[cell_name], backend) is kern


def test_auto_picks_the_highest_priority_available_cpu_backend():
    best = _best_available("cpu")
    assert dispatch.resolve("auto", "cpu") == best
    assert dispatch.resolve(None, "cpu") == best
    if dispatch.is_available("numba"):
        assert best == "numba", "auto must pick numba over numpy when numba is available"
    for kind in CELL_KINDS:
        assert make_module(kind, 3, 4, backend="auto", dtype="float32").backend == best
    assert fr.LSTM(3, 4).backend == best
    assert fr.GRUCell(3, 4).backend == best


def test_auto_on_cuda_picks_a_cuda_backend_or_says_why_not():
    best = _best_available("cuda")
    if best is not None:
        assert dispatch.resolve("auto", "cuda") == best
        return
    with pytest.raises(fr.BackendUnavailableError,
                       match=r"no backend is available for device 'cuda'") as info:
        fr.LSTM(3, 4, device="cuda")
    for name in dispatch.registered_backends():
        if dispatch.backend_info(name).device == "cuda":
            assert dispatch.unavailable_reason(name) in str(info.value)


def test_env_var_sets_the_default(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "numpy")
    assert dispatch.default_backend() == "numpy"
    assert dispatch.resolve(None, "cpu") == "numpy"
    assert fr.LSTM(3, 4).backend == "numpy"
    assert fr.RNNCell(3, 4).backend == "numpy"


def test_explicit_backend_overrides_env_var(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "numpy")
    best = _best_available("cpu")
    assert fr.GRU(3, 4, backend="auto").backend == best
    assert fr.GRU(3, 4, backend=best).backend == best


def test_env_var_naming_a_backend_of_another_device_does_not_block_this_one(monkeypatch,
                                                                           temporary_backend):
    """FASTRNN_BACKEND=numpy (a CPU default) must not make every device="cuda" module fail: for a
    device it does not run on, the default falls back to "auto". An explicit backend= still must
    match the device."""
    fake_cuda = temporary_backend("fake_cuda", "fastrnn.reference", priority=50, device="cuda")
    monkeypatch.setenv(dispatch.ENV_VAR, "numpy")
    assert dispatch.resolve(None, "cpu") == "numpy"
    assert dispatch.resolve(None, "cuda") == fake_cuda
    with pytest.raises(fr.BackendUnavailableError, match=r"backend 'numpy' runs on 'cpu'"):
        dispatch.resolve("numpy", "cuda")


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_env_var_means_auto(monkeypatch, value):
    monkeypatch.setenv(dispatch.ENV_VAR, value)
    assert dispatch.default_backend() == "auto"
    assert fr.RNN(3, 4).backend == _best_available("cpu")


def test_unknown_env_var_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "fortran")
    with pytest.raises(fr.BackendUnavailableError,
                       match=r"unknown backend 'fortran' \(from the FASTRNN_BACKEND environment "
                             r"variable\); registered: numpy"):
        fr.LSTM(3, 4)


def test_backend_info_of_an_unknown_name():
    with pytest.raises(ValueError, match=r"unknown backend 'nope'; registered backends: numpy"):
        dispatch.backend_info("nope")


def test_resolve_rejects_unknown_device():
    with pytest.raises(ValueError, match=r"device must be one of \('cpu', 'cuda'\), got 'tpu'"):
        dispatch.resolve("auto", "tpu")


def test_a_backend_registered_later_is_picked_up(temporary_backend):
    """One registry entry is all a new backend needs: auto, backends() and kernels() see it."""
    name = temporary_backend("late_reference", "fastrnn.reference", priority=1000)
    assert name in dispatch.registered_backends()
    assert fr.backends()[0] == name
    assert dispatch.resolve("auto", "cpu") == name
    m = fr.LSTM(3, 4)
    assert m.backend == name
    assert dispatch.kernels("gru", name) is dispatch.kernels("gru", "numpy")


def test_missing_requirement_is_reported_by_name(temporary_backend):
    name = temporary_backend("needs_missing", "fastrnn.reference", ("fastrnn_no_such_module",))
    reason = dispatch.unavailable_reason(name)
    assert reason is not None and "fastrnn_no_such_module" in reason
    assert name not in fr.backends()
    with pytest.raises(fr.BackendUnavailableError, match="fastrnn_no_such_module is not importable"):
        dispatch.kernels("lstm", name)


def test_backend_module_that_fails_to_import_is_reported(temporary_backend):
    name = temporary_backend("broken_module", "fastrnn.no_such_backend_module")
    reason = dispatch.unavailable_reason(name)
    assert reason is not None and "fastrnn.no_such_backend_module failed to import" in reason
    assert name not in fr.backends()


def test_backend_module_without_kernels_is_unavailable(temporary_backend):
    """A package directory that exists but defines no KERNELS (e.g. a backend being written, which
    Python imports as an empty namespace package) must not count as available, and asking for its
    kernels must raise BackendUnavailableError, not AttributeError."""
    name = temporary_backend("no_kernels", "fastrnn.cells")
    assert name not in fr.backends()
    assert dispatch.unavailable_reason(name) is not None
    with pytest.raises(fr.BackendUnavailableError, match="no_kernels"):
        dispatch.kernels("lstm", name)


def test_cell_modules_resolve_like_the_sequence_modules(backend):
    for kind in CELL_KINDS:
        assert make_cell(kind, 2, 3, backend=backend, dtype="float64").backend == backend
        assert make_module(kind, 2, 3, backend=backend, dtype="float64").backend == backend


def test_import_fastrnn_is_light():
    """`import fastrnn` loads no backend: no Numba, no CuPy, no SciPy, no torch."""
    code = ("import sys, fastrnn; heavy = [m for m in ('numba', 'cupy', 'scipy', 'torch') "
            "if m in sys.modules]; print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env=_env_with_repo_on_path())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import fastrnn imported {result.stdout.strip()}"


def _env_with_repo_on_path():
    env = dict(os.environ)
    root = str(pathlib.Path(fr.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_to_cuda_moves_the_module_or_leaves_it_untouched():
    m = fr.LSTM(3, 4, backend="numpy")
    best = _best_available("cuda")
    if best is None:
        with pytest.raises(fr.BackendUnavailableError, match=r"no backend is available for device 'cuda'"):
            m.to("cuda")
        assert (m.device, m.backend) == ("cpu", "numpy"), "a failed .to() must leave the module as it was"
        return
    before = {k: v.copy() for k, v in m.state_dict().items()}
    assert m.to("cuda") is m
    assert (m.device, m.backend) == ("cuda", best)
    for k, v in m.state_dict().items():
        assert (v.get() == before[k]).all(), k
