"""Which array library lives on which device, found without importing CuPy until it is needed."""
from __future__ import annotations

import importlib

import numpy as np

DEVICES = ("cpu", "cuda")


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return device


def array_module(device: str):
    """numpy for "cpu", cupy for "cuda" (with one clear sentence when CuPy is missing)."""
    if check_device(device) == "cpu":
        return np
    try:
        return importlib.import_module("cupy")
    except ImportError as exc:
        raise RuntimeError(
            "device='cuda' needs CuPy: install fastrnn[cuda12] or fastrnn[cuda13] "
            f"(import cupy failed: {exc})") from None


def is_cupy_array(a) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


def device_of(a) -> str:
    """"cuda" for a CuPy array, "cpu" for anything else."""
    return "cuda" if is_cupy_array(a) else "cpu"


def to_host(a):
    """A NumPy array from a NumPy or CuPy array (or anything np.asarray takes)."""
    return a.get() if is_cupy_array(a) else np.asarray(a)
