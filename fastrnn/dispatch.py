"""The backend registry: (cell, backend) -> implementation, backend resolution, clear errors.

A backend is a module that is imported only when first used (so `import fastrnn` stays fast and works
without Numba's JIT warm-up or CuPy). The module exposes:

    KERNELS: dict[str, CellKernels]      cell name (see fastrnn.cells.CELLS) -> its kernels
    unavailable_reason() -> str | None   optional; None when the backend can run on this machine

The layer-level contract every kernel honours (one layer, one direction):

    forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, training)
        -> (out, h_n, c_n, cache)

        x        (T, N, I)  C-contiguous, float32 or float64; every other array has x's dtype
        h0, c0   (N, H)     c0 is None unless cell.has_cell_state
        w_ih     (G*H, I)   PyTorch layout, gate blocks in cell.gate_names order
        w_hh     (G*H, H)
        b_ih, b_hh (G*H,)   or both None when the layer has bias=False
        lengths  None, or (N,) int32 array (same array module as x), each in 1..T:
                 row n runs steps 0..lengths[n]-1 and is idle (state held, output 0) after that
        reverse  the reverse direction: row n visits t = lengths[n]-1 down to 0
        training when False nothing is kept for backward and cache is None
        out      (T, N, H)  out[t, n] = hidden state after time index t; 0 where t >= lengths[n]
        h_n, c_n (N, H)     each row's state after its own last step (c_n None unless LSTM)
        cache    opaque object holding what backward needs (or None)

    backward(cell, cache, dout, dh_n, dc_n)
        -> (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)

        dout     (T, N, H)  gradient of the loss with respect to out (ignored where t >= lengths[n])
        dh_n     (N, H)     gradient with respect to h_n (zeros, never None)
        dc_n     (N, H)     gradient with respect to c_n for the LSTM, else None
        returns gradients with the shapes of x, h0, c0, w_ih, w_hh, b_ih, b_hh (None where the input
        was None); inputs are never modified.

    step(cell, x, h, c, w_ih, w_hh, b_ih, b_hh) -> (h1, c1)      optional
        one time step of inference, x (N, I): the low-latency path used by the *Cell modules and
        streaming; when absent, forward() with T=1 is used.

`cell` is a fastrnn.cells.CellSpec. Weight and bias gradients are the totals over all T*N.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .cells import CELLS, CellSpec


class BackendUnavailableError(RuntimeError):
    """The backend asked for cannot run here; the message says why and what can."""


@dataclass(frozen=True)
class CellKernels:
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    step: Optional[Callable[..., Any]] = None


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
    """Backends usable on this machine (optionally only those for one device), best first."""
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
