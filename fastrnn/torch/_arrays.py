"""Tensors to fastrnn arrays and back, without copies.

A CPU tensor crosses as a NumPy view of its storage (``Tensor.numpy()``), a CUDA tensor as a CuPy view
through DLPack; results come back the same way, so the kernels read and write torch's memory directly.
CUDA work runs on torch's current stream (``on_torch_stream``) so that it is ordered with torch's own
kernels. CuPy is imported only when a CUDA tensor arrives.
"""
from __future__ import annotations

import contextlib
import importlib

import numpy as np
import torch

from .. import dispatch

FLOAT_DTYPES = (torch.float32, torch.float64)


def device_kind(tensor: torch.Tensor) -> str:
    """fastrnn's device name ("cpu" or "cuda") for a tensor, or a clear error for any other device."""
    kind = tensor.device.type
    if kind not in ("cpu", "cuda"):
        raise TypeError(f"fastrnn.torch runs on CPU and CUDA tensors, got a tensor on {tensor.device}")
    return kind


def array_module(device: str):
    """numpy for "cpu", cupy for "cuda" (imported on first use)."""
    if device == "cpu":
        return np
    try:
        return importlib.import_module("cupy")
    except ImportError as exc:
        raise RuntimeError("fastrnn.torch needs CuPy for CUDA tensors: install fastrnn[cuda12] or "
                           f"fastrnn[cuda13] (import cupy failed: {exc})") from None


def to_array(tensor):
    """A NumPy (CPU) or CuPy (CUDA) view of the tensor (kernels take C-contiguous arrays, so a
    non-contiguous tensor, e.g. a user's transposed parameter, is copied first); None stays None."""
    if tensor is None:
        return None
    tensor = tensor.detach().contiguous()
    if tensor.device.type == "cpu":
        return tensor.numpy()
    return array_module("cuda").from_dlpack(tensor)


def to_tensor(array):
    """A tensor viewing a NumPy or CuPy array (the inverse of to_array); None stays None."""
    if array is None:
        return None
    if isinstance(array, np.ndarray):
        return torch.from_numpy(array)
    return torch.from_dlpack(array)


def on_torch_stream(device: str, index):
    """Context in which CuPy works on the tensors' GPU and launches on torch's current stream there
    (nothing to do on the CPU)."""
    if device == "cpu":
        return contextlib.nullcontext()
    cupy = array_module("cuda")
    index = torch.cuda.current_device() if index is None else index
    stack = contextlib.ExitStack()
    stack.enter_context(cupy.cuda.Device(index))
    stream = torch.cuda.current_stream(index)
    stack.enter_context(cupy.cuda.ExternalStream(stream.cuda_stream, index))
    return stack


def kernels_for(cell, device: str, backend):
    """The kernels of the backend that runs `cell` on `device` (backend None or "auto": the best)."""
    name = dispatch.resolve(backend, device, cell)
    return dispatch.kernels(cell, name)
