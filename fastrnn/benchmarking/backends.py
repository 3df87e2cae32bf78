"""Who takes part in a benchmark: every backend of the dispatch registry, PyTorch as the baseline, and
the GEMM floor of each device (the case's matrix products alone).

A contestant names a *family*: the Workload class (workloads.FAMILIES) that builds its timed call. PyTorch
appears as two contestants, "torch-cpu" and "torch-cuda" (cuDNN), so that each fastrnn backend is
compared with PyTorch on its own device. Nothing here imports torch or CuPy until asked.

Adding a contestant (say, a model built from fastrnn's PyTorch adapter) is one Workload subclass in
workloads.py registered in FAMILIES, and one line in EXTRA_CONTESTANTS below: the runner, the worker
processes, the report and the plots take it from there. A family runs the case kinds FAMILY_KINDS gives
it (the layer and step kinds unless listed), so layer contestants never meet a model case and model
contestants never meet a layer case.

The char-LM model cases (grid.model_cases) have two contestants per device: "torch.nn-<device>", the
plain torch.nn model and their baseline, and "fastrnn.torch-<device>", the same model after
fastrnn.torch.convert. The CUDA pair exists only where torch sees a CUDA device.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from .. import dispatch
from .grid import KINDS, LAYER_KINDS, Case

REFERENCE = "numpy"  # the NumPy oracle every contestant is checked against
TORCH_BASELINES = {"cpu": "torch-cpu", "cuda": "torch-cuda"}
FLOOR_NAMES = {"cpu": "gemm-floor-cpu", "cuda": "gemm-floor-cuda"}
MODEL_BASELINES = {"cpu": "torch.nn-cpu", "cuda": "torch.nn-cuda"}
MODEL_CONVERTED = {"cpu": "fastrnn.torch-cpu", "cuda": "fastrnn.torch-cuda"}
BASELINE_NAMES = frozenset(TORCH_BASELINES.values()) | frozenset(MODEL_BASELINES.values())

# The case kinds each family runs (grid.KINDS); a family not listed runs grid.LAYER_KINDS.
FAMILY_KINDS = {"torch-model": ("model",), "fastrnn-torch-model": ("model",)}
# Families whose workers load PyTorch, and those that are fastrnn measured against a baseline.
TORCH_FAMILIES = frozenset({"torch", "torch-model", "fastrnn-torch-model"})
CHALLENGER_FAMILIES = frozenset({"fastrnn", "fastrnn-torch-model"})


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

    @property
    def kinds(self) -> tuple[str, ...]:
        """The grid.KINDS this contestant runs."""
        return FAMILY_KINDS.get(self.family, LAYER_KINDS)

    def runs(self, case: Case) -> bool:
        return case.kind in self.kinds

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


def cuda_model_pair_wanted() -> bool:
    """Whether the CUDA char-LM pair is listed: only where torch sees a CUDA device (elsewhere it is
    absent, not reported as unavailable)."""
    return torch_reason("cuda") is None


def model_contestant(family: str, device: str) -> Optional[Contestant]:
    """A char-LM contestant ("torch-model": torch.nn, the baseline; "fastrnn-torch-model": the model
    after fastrnn.torch.convert) on `device`, or None when it is not listed here."""
    if device == "cuda" and not cuda_model_pair_wanted():
        return None
    names = MODEL_BASELINES if family == "torch-model" else MODEL_CONVERTED
    reason = torch_reason(device)
    if reason is None and family != "torch-model":
        reason = fastrnn_backend_reason(device)
    return Contestant(names[device], device, family, reason)


def fastrnn_backend_reason(device: str) -> Optional[str]:
    """None when fastrnn has a backend for the char-LM's LSTM on `device` (what a converted model
    computes with), else why not (a GPU machine with CUDA torch but without CuPy has none)."""
    from ..cells import CELLS

    try:
        dispatch.resolve(None, device, CELLS["lstm"])
    except dispatch.BackendUnavailableError as exc:
        return f"fastrnn has no {device} backend for the LSTM: {exc}"
    return None


# Contestants beyond the registry and PyTorch's layers: () -> Contestant or None (not listed here),
# called when the list is built.
EXTRA_CONTESTANTS: list[Callable[[], Optional[Contestant]]] = [
    lambda: model_contestant("torch-model", "cpu"),
    lambda: model_contestant("fastrnn-torch-model", "cpu"),
    lambda: model_contestant("torch-model", "cuda"),
    lambda: model_contestant("fastrnn-torch-model", "cuda"),
]


def all_contestants() -> list[Contestant]:
    """Every registered backend, both PyTorch baselines and the extra contestants, available or not."""
    found = []
    for name in dispatch.registered_backends():
        info = dispatch.backend_info(name)
        found.append(Contestant(name, info.device, "fastrnn", dispatch.unavailable_reason(name)))
    for device, name in TORCH_BASELINES.items():
        found.append(Contestant(name, device, "torch", torch_reason(device)))
    return found + [c for c in (make() for make in EXTRA_CONTESTANTS) if c is not None]


def baseline_name(kind: str, device: str) -> Optional[str]:
    """The contestant whose time a speedup on a case of `kind` on `device` divides: PyTorch's layer
    for the layer and step kinds, the torch.nn model for model cases."""
    return (MODEL_BASELINES if kind == "model" else TORCH_BASELINES).get(device)


def runnable_cases(cases: Sequence[Case], contestants: Sequence[Contestant]
                   ) -> tuple[list[Case], Optional[str]]:
    """The cases some available contestant runs, and one line on what was left out (None if nothing).

    Model cases are left out when PyTorch is missing, or when no model contestant was selected."""
    available = [c for c in contestants if c.available]
    kept = [case for case in cases if any(c.runs(case) for c in available)]
    dropped = [case for case in cases if case not in kept]
    if not dropped:
        return kept, None
    kinds = [k for k in KINDS if any(case.kind == k for case in dropped)]
    reasons = sorted({c.reason for c in contestants if not c.available
                      and any(c.runs(case) for case in dropped)})
    why = "; ".join(reasons) if reasons else "no selected contestant runs them"
    return kept, (f"omitting the {len(dropped)} {'/'.join(kinds)} case(s) ("
                  + ", ".join(case.label for case in dropped[:3]) + (", ..." if len(dropped) > 3 else "")
                  + f"): {why}")


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
