"""Argument checks shared by the sequence modules and the cells: each failure is one sentence that
names what was expected."""
from __future__ import annotations

import torch

from ._arrays import FLOAT_DTYPES, device_kind


class DtypeMismatchError(TypeError, ValueError):
    """An input or state whose dtype differs from the parameters'. A ValueError, as torch.nn raises
    for this, and a TypeError, as fastrnn.torch raised before."""


def check_parameters(module_name: str, names, weights) -> None:
    """The parameters must share one dtype, float32 or float64, and one device: fastrnn never
    computes in another precision than the parameters' and never mixes precisions."""
    first_name, first = names[0], weights[0]
    if first.dtype not in FLOAT_DTYPES:
        raise TypeError(f"fastrnn.torch.{module_name} computes in float32 or float64, but its "
                        f"parameters are {first.dtype}; convert the module with .float() or .double()")
    for name, weight in zip(names[1:], weights[1:]):
        if weight.dtype != first.dtype:
            raise TypeError(f"fastrnn.torch.{module_name}: parameter {name} has dtype {weight.dtype}, "
                            f"but {first_name} has {first.dtype}; all parameters must share one dtype, "
                            "float32 or float64: convert the module with .float() or .double()")
        if weight.device != first.device:
            raise ValueError(f"fastrnn.torch.{module_name}: parameter {name} is on {weight.device}, "
                             f"but {first_name} is on {first.device}; all parameters must be on one "
                             "device: move the module with .to()")


def check_input(module_name: str, tensor, what: str, weight: torch.Tensor) -> torch.Tensor:
    """`tensor` must be a tensor with the parameters' dtype (else a DtypeMismatchError) on the
    parameters' device."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{module_name}: {what} must be a torch.Tensor, got {type(tensor).__name__}")
    device_kind(tensor)
    if tensor.device != weight.device:
        raise ValueError(f"{module_name}: {what} is on {tensor.device}, but the module's parameters "
                         f"are on {weight.device}; move one of them with .to()")
    if tensor.dtype != weight.dtype:
        unsupported = "" if tensor.dtype in FLOAT_DTYPES else " (fastrnn computes in float32 or float64 only)"
        raise DtypeMismatchError(
            f"{module_name}: {what} has dtype {tensor.dtype}, but the module's parameters have dtype "
            f"{weight.dtype}; convert the input with .to({weight.dtype}) or the module with .float() / "
            f".double(){unsupported}")
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
