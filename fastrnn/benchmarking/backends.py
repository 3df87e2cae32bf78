"""Who takes part in a benchmark: every backend of the dispatch registry, PyTorch as the baseline, and
the GEMM floor of each device (the case's matrix products alone).

A contestant names a *family*: the Workload class (workloads.FAMILIES) that builds its timed call. PyTorch
appears as two contestants, "torch-cpu" and "torch-cuda" (cuDNN), so that each fastrnn backend is
compared with PyTorch on its own device. Nothing here imports torch or CuPy until asked.

Adding a contestant (say, a model built from fastrnn's PyTorch adapter) is one Workload subclass in
workloads.py registered in FAMILIES, and one line in EXTRA_CONTESTANTS below: the runner, the worker
processes, the report and the plots take it from there.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from .. import dispatch

REFERENCE = "numpy"  # the NumPy oracle every contestant is checked against
TORCH_BASELINES = {"cpu": "torch-cpu", "cuda": "torch-cuda"}
FLOOR_NAMES = {"cpu": "gemm-floor-cpu", "cuda": "gemm-floor-cuda"}


@dataclass(frozen=True)
class Contestant:
    """name: what the report calls it; device: "cpu" or "cuda"; family: the workloads.FAMILIES key
    that builds its timed call ("fastrnn", "torch", "gemm-floor"); reason: None when it can run here,
    else why not."""

    name: str
    device: str
    family: str
    reason: Optional[str]

    @property
    def available(self) -> bool:
        return self.reason is None

    @property
    def is_torch(self) -> bool:
        return self.family == "torch"

    def to_dict(self) -> dict:
        return {"name": self.name, "device": self.device, "family": self.family,
                "torch": self.is_torch, "available": self.available, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict) -> "Contestant":
        return cls(d["name"], d["device"], d["family"], d.get("reason"))


def torch_reason(device: str) -> Optional[str]:
    """None when PyTorch can run on `device` here, else why not."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install torch, or fastrnn[bench])"
    if device == "cpu":
        return None
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device" + (" (CPU-only build)" if torch.version.cuda is None else "")
    return None


def floor_reason(device: str) -> Optional[str]:
    """None when the GEMM floor of `device` can be timed here (NumPy's BLAS; cuBLAS through CuPy)."""
    if device == "cpu":
        return None
    return dispatch.unavailable_reason("cupy") if "cupy" in dispatch.registered_backends() else \
        "no CUDA backend is registered"


# Contestants beyond the registry and PyTorch's layers: () -> Contestant, called when the list is built.
EXTRA_CONTESTANTS: list[Callable[[], Contestant]] = []


def all_contestants() -> list[Contestant]:
    """Every registered backend, both PyTorch baselines and the extra contestants, available or not."""
    found = []
    for name in dispatch.registered_backends():
        info = dispatch.backend_info(name)
        found.append(Contestant(name, info.device, "fastrnn", dispatch.unavailable_reason(name)))
    for device, name in TORCH_BASELINES.items():
        found.append(Contestant(name, device, "torch", torch_reason(device)))
    return found + [make() for make in EXTRA_CONTESTANTS]


def floor_contestant(device: str) -> Contestant:
    return Contestant(FLOOR_NAMES[device], device, "gemm-floor", floor_reason(device))


def select(requested: Optional[Sequence[str]] = None) -> list[Contestant]:
    """The contestants asked for ("torch" means both PyTorch baselines), available or not.

    An unknown name raises ValueError listing the known ones."""
    everyone = all_contestants()
    if not requested:
        return everyone
    by_name = {c.name: c for c in everyone}
    wanted: list[str] = []
    for name in requested:
        names = list(TORCH_BASELINES.values()) if name == "torch" else [name]
        for n in names:
            if n not in by_name:
                raise ValueError(f"unknown backend {name!r}; choose from "
                                 f"{', '.join(list(by_name) + ['torch'])}")
            if n not in wanted:
                wanted.append(n)
    return [by_name[n] for n in wanted]
