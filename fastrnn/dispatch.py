"""The backend registry: (cell, backend) -> implementation, backend resolution, clear errors.

A backend is a module that is imported only when first used (so `import fastrnn` stays fast and works
without Numba's JIT warm-up or CuPy). What that module exposes, and what its kernels take and return,
is the backend contract of fastrnn.contract; this module only finds the module and its KERNELS table.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Optional

from .cells import CELLS, CellSpec
from .contract import CellKernels


class BackendUnavailableError(RuntimeError):
    """The backend asked for cannot run here.

    Raised when a module is built (or moved with ``to``) with a backend that is unknown, meant
    for the other device, or unavailable on this machine (a missing package, no GPU), or when
    no backend at all can run on the module's device. The message names the backend, says why
    it cannot run, and lists the backends that can; ``fastrnn info`` prints the same report.
    A subclass of `RuntimeError`.

    Examples
    --------
    >>> fr.LSTM(4, 8, backend="tpu")
    Traceback (most recent call last):
        ...
    fastrnn.dispatch.BackendUnavailableError: unknown backend 'tpu'; registered: ...
    """


@dataclass(frozen=True)
class BackendInfo:
    """A registered backend.

    device: "cpu" (NumPy arrays) or "cuda" (CuPy arrays).
    priority: higher wins when backend="auto" picks among the available backends of a device.
    module: dotted path of the module holding KERNELS, imported on first use.
    requires: importable modules the backend needs; a missing one is reported by name.
    """

    name: str
    device: str
    priority: int
    module: str
    requires: tuple[str, ...] = ()
    description: str = ""


_BACKENDS: dict[str, BackendInfo] = {}
_loaded: dict[str, Any] = {}
_failures: dict[str, str] = {}

DEVICES = ("cpu", "cuda")
ENV_VAR = "FASTRNN_BACKEND"


def register_backend(info: BackendInfo) -> None:
    """Add a backend; the modules, the tests and the benchmarks all pick it up from here."""
    if info.device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {info.device!r}")
    _BACKENDS[info.name] = info
    _loaded.pop(info.name, None)
    _failures.pop(info.name, None)


register_backend(BackendInfo("numpy", "cpu", 0, "fastrnn.reference", (),
                             "NumPy reference: the numerical spec, slow"))
register_backend(BackendInfo("numba", "cpu", 10, "fastrnn.cpu", ("numba", "scipy"),
                             "Numba-compiled fused CPU kernels"))
register_backend(BackendInfo("cupy", "cuda", 10, "fastrnn.gpu", ("cupy",),
                             "raw CUDA kernels through CuPy, GEMMs on cuBLAS"))


def registered_backends() -> list[str]:
    """Every backend known to fastrnn, available here or not."""
    return list(_BACKENDS)


def backend_info(name: str) -> BackendInfo:
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; registered backends: {', '.join(_BACKENDS)}")
    return _BACKENDS[name]


def _load(name: str):
    """Import a backend's module once; remember why it failed."""
    if name in _loaded:
        return _loaded[name]
    if name in _failures:
        return None
    info = backend_info(name)
    for req in info.requires:
        try:
            importlib.import_module(req)
        except Exception as exc:  # ImportError, or a broken install raising something else
            _failures[name] = f"{req} is not importable ({type(exc).__name__}: {exc})"
            return None
    try:
        module = importlib.import_module(info.module)
    except Exception as exc:
        _failures[name] = f"{info.module} failed to import ({type(exc).__name__}: {exc})"
        return None
    if not isinstance(getattr(module, "KERNELS", None), dict):
        _failures[name] = f"{info.module} defines no KERNELS table"
        return None
    probe = getattr(module, "unavailable_reason", None)
    reason = probe() if probe is not None else None
    if reason:
        _failures[name] = reason
        return None
    _loaded[name] = module
    return module


def unavailable_reason(name: str) -> Optional[str]:
    """None when `name` can run here, else one sentence saying what is missing."""
    backend_info(name)
    _load(name)
    return _failures.get(name)


def is_available(name: str) -> bool:
    return unavailable_reason(name) is None


def backends(device: Optional[str] = None) -> list[str]:
    """The backends that can run on this machine, best first.

    A backend is listed when everything it needs imports and its own probe finds what it needs
    (for ``"cupy"``: CuPy, a driver and a GPU). The first one for a device is what
    ``backend="auto"`` picks there (unless it lacks the cell asked for).

    Parameters
    ----------
    device : {"cpu", "cuda"}, optional
        Only the backends for this device; None lists every device's.

    Returns
    -------
    list of str
        Backend names, highest priority first; ties keep registration order.

    Examples
    --------
    >>> fr.backends("cpu")
    ['numba', 'numpy']
    >>> "numpy" in fr.backends()
    True
    """
    names = [n for n in _BACKENDS if device is None or _BACKENDS[n].device == device]
    names.sort(key=lambda n: -_BACKENDS[n].priority)
    return [n for n in names if is_available(n)]


def availability_report() -> str:
    """One line per registered backend: available, or why not."""
    lines = []
    for name, info in _BACKENDS.items():
        reason = unavailable_reason(name)
        state = "available" if reason is None else f"unavailable: {reason}"
        lines.append(f"{name:6s} ({info.device}) {state}")
    return "\n".join(lines)


def default_backend() -> str:
    """The backend named by FASTRNN_BACKEND, or "auto"."""
    return os.environ.get(ENV_VAR, "").strip() or "auto"


def _implements(name: str, cell: Optional[CellSpec]) -> bool:
    return cell is None or cell.name in getattr(_load(name), "KERNELS", {})


def resolve(backend: Optional[str], device: str, cell: Optional[CellSpec] = None) -> str:
    """Turn a user's backend choice into the name of an available backend for `device` (and `cell`).

    backend None means the FASTRNN_BACKEND environment variable, else "auto"; a FASTRNN_BACKEND that
    names a backend of the other device leaves this device on "auto", so one setting can steer the CPU
    without blocking GPU modules. "auto" picks the highest-priority available backend for the device
    that implements the cell. Anything else must be registered, available, meant for that device and
    implement the cell, or a BackendUnavailableError says what is available and why the rest is not.

    Parameters
    ----------
    backend : str or None
        A registered backend's name, ``"auto"``, or None (the environment, then ``"auto"``).
    device : {"cpu", "cuda"}
        The device of the module asking.
    cell : fastrnn.cells.CellSpec, optional
        The cell the module computes; ``"auto"`` then skips backends that lack it.

    Returns
    -------
    str
        The name of the backend that will compute.

    Raises
    ------
    BackendUnavailableError
        When the choice cannot run here, or nothing can run on `device`.

    Examples
    --------
    >>> from fastrnn import dispatch
    >>> dispatch.resolve("numpy", "cpu")
    'numpy'
    >>> dispatch.resolve("auto", "cpu") == fr.backends("cpu")[0]
    True
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    choice = backend
    if choice is None:
        choice = default_backend()
        if choice in _BACKENDS and _BACKENDS[choice].device != device:
            choice = "auto"
    if choice == "auto":
        found = [n for n in backends(device) if _implements(n, cell)]
        if found:
            return found[0]
        raise BackendUnavailableError(
            f"no backend is available for device {device!r}:\n{availability_report()}")
    if choice not in _BACKENDS:
        source = f" (from the {ENV_VAR} environment variable)" if backend is None else ""
        raise BackendUnavailableError(
            f"unknown backend {choice!r}{source}; registered: {', '.join(_BACKENDS)}; "
            f"available here: {', '.join(backends()) or 'none'}")
    info = _BACKENDS[choice]
    if info.device != device:
        raise BackendUnavailableError(
            f"backend {choice!r} runs on {info.device!r}, but the module is on {device!r}; "
            f"backends for {device!r} available here: {', '.join(backends(device)) or 'none'}")
    reason = unavailable_reason(choice)
    if reason is not None:
        raise BackendUnavailableError(
            f"backend {choice!r} is unavailable: {reason}\n{availability_report()}")
    return choice


def unregister_backend(name: str) -> None:
    """Remove a backend registered with register_backend (e.g. a temporary one in a test)."""
    backend_info(name)
    del _BACKENDS[name]
    _loaded.pop(name, None)
    _failures.pop(name, None)


def kernels(cell: CellSpec | str, backend: str) -> CellKernels:
    """The forward/backward (and optional step) implementation of `cell` on `backend`."""
    spec = CELLS[cell] if isinstance(cell, str) else cell
    module = _load(backend)
    if module is None:
        raise BackendUnavailableError(f"backend {backend!r} is unavailable: {_failures[backend]}")
    try:
        return module.KERNELS[spec.name]
    except KeyError:
        raise BackendUnavailableError(
            f"backend {backend!r} does not implement cell {spec.name!r}") from None
