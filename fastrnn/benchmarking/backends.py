"""Who takes part in a benchmark: every backend of the dispatch registry, plus PyTorch as the baseline.

PyTorch appears as two contestants, "torch-cpu" and "torch-cuda" (cuDNN), so that each fastrnn backend
is compared with PyTorch on its own device. They are found without importing torch until asked.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Optional, Sequence

from .. import dispatch

REFERENCE = "numpy"  # the NumPy oracle every contestant is checked against
TORCH_BASELINES = {"cpu": "torch-cpu", "cuda": "torch-cuda"}


@dataclass(frozen=True)
class Contestant:
    name: str
    device: str           # "cpu" or "cuda"
    is_torch: bool
    reason: Optional[str]  # None when it can run here, else why not

    @property
    def available(self) -> bool:
        return self.reason is None


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


def all_contestants() -> list[Contestant]:
    """Every registered backend and both PyTorch baselines, available or not."""
    found = []
    for name in dispatch.registered_backends():
        info = dispatch.backend_info(name)
        found.append(Contestant(name, info.device, False, dispatch.unavailable_reason(name)))
    for device, name in TORCH_BASELINES.items():
        found.append(Contestant(name, device, True, torch_reason(device)))
    return found


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
