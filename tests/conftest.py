"""Fixtures generated from the backend registry, markers, and the end-of-session error summary.

Every backend in fastrnn.dispatch.registered_backends() is one param of the `backend` fixture (and CPU
ones of `cpu_backend`), so a backend that registers later is run through the whole suite at once. A
backend that cannot run here is skipped with its unavailable_reason; CUDA backends carry the `gpu`
marker (`-m "not gpu"` deselects them; the markers are registered in pyproject.toml).
"""
from __future__ import annotations

import pytest

from fastrnn import dispatch, threads

import support


def pytest_report_header(config):
    return ["fastrnn backends:"] + ["  " + line for line in dispatch.availability_report().splitlines()]


def _backend_params(device=None):
    params = []
    for name in dispatch.registered_backends():
        info = dispatch.backend_info(name)
        if device is not None and info.device != device:
            continue
        marks = [pytest.mark.gpu] if info.device == "cuda" else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def _require(name: str) -> str:
    reason = dispatch.unavailable_reason(name)
    if reason is not None:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    return name


@pytest.fixture(params=_backend_params())
def backend(request) -> str:
    """Every registered backend; CUDA ones get device="cuda" modules and CuPy inputs."""
    return _require(request.param)


@pytest.fixture(params=_backend_params("cpu"))
def cpu_backend(request) -> str:
    """Every registered CPU backend (the PyTorch parity tests run on the CPU build of torch)."""
    return _require(request.param)


@pytest.fixture(params=_backend_params("cuda"))
def cuda_backend(request) -> str:
    return _require(request.param)


@pytest.fixture
def temporary_backend():
    """Register throw-away backends for one test: register(name, module, requires=(), priority=-1,
    device="cpu"); they are removed from the registry (and its caches) afterwards."""
    added = []

    def register(name, module, requires=(), priority=-1, device="cpu"):
        dispatch.register_backend(dispatch.BackendInfo(name, device, priority, module, tuple(requires)))
        added.append(name)
        return name

    yield register
    for name in added:
        dispatch.unregister_backend(name)


@pytest.fixture
def team(monkeypatch):
    """The numba backend's thread team (fastrnn.cpu.team), on wherever it applies for the test
    (FASTRNN_TEAM=1, at least 2 threads); the module, whose `runs` counter tells whether it ran."""
    if dispatch.unavailable_reason("numba") is not None:
        pytest.skip(f"numba backend unavailable: {dispatch.unavailable_reason('numba')}")
    from fastrnn.cpu import team

    if threads.get_num_threads() < 2:
        monkeypatch.setattr(threads, "_threads", 2)
    monkeypatch.setenv("FASTRNN_TEAM", "1")
    reason = team.unavailable_reason()
    assert reason is None, f"the team must be able to run here: {reason}"
    return team


def pytest_terminal_summary(terminalreporter):
    if not support.WORST:
        return
    tr = terminalreporter
    tr.section("fastrnn: worst relative error reached (max|a-b| / max|b| per tensor)")
    for (suite, backend, dtype, part), (err, where) in sorted(support.WORST.items()):
        tr.write_line(f"{suite:22s} {backend:6s} {dtype:8s} {part:9s} {err:9.2e}  at {where}")
