"""Argument checks shared by the sequence modules and the cells: each failure is one sentence that
names what was expected."""
from __future__ import annotations

import torch

from ._arrays import FLOAT_DTYPES, device_kind


def check_compute_dtype(module_name: str, weight: torch.Tensor) -> None:
    if weight.dtype not in FLOAT_DTYPES:
        raise TypeError(f"fastrnn.torch.{module_name} computes in float32 or float64, but its "
                        f"parameters are {weight.dtype}; convert the module with .float() or .double()")


def check_input(module_name: str, tensor, what: str, weight: torch.Tensor) -> torch.Tensor:
    """`tensor` must be a tensor with the parameters' dtype on the parameters' device."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{module_name}: {what} must be a torch.Tensor, got {type(tensor).__name__}")
    device_kind(tensor)
    if tensor.device != weight.device:
        raise ValueError(f"{module_name}: {what} is on {tensor.device}, but the module's parameters "
                         f"are on {weight.device}; move one of them with .to()")
    if tensor.dtype != weight.dtype:
        raise TypeError(f"{module_name}: {what} has dtype {tensor.dtype}, but the module's parameters "
                        f"have dtype {weight.dtype}; convert the input with .to({weight.dtype}) or the "
                        "module with .float() / .double()")
    return tensor


def check_shape(module_name: str, tensor: torch.Tensor, expected: tuple, what: str) -> None:
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"{module_name}: {what} must have shape {tuple(expected)}, "
                         f"got {tuple(tensor.shape)}")


def state_pair(module_name: str, hx, what: str):
    """(h, c) from an LSTM's hx: None or a pair of tensors."""
    if hx is None:
        return None, None
    if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
        raise TypeError(f"{module_name}: {what} must be a pair (h, c) of tensors or None, "
                        f"got {type(hx).__name__}")
    return hx[0], hx[1]
