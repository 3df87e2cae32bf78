"""The backend contract: what a backend's per-layer forward, backward and step take and return.

Every backend (fastrnn.reference, fastrnn.cpu, fastrnn.gpu) imports this module and nothing of the
dispatch layer; every caller (functional.py for the sequence modules, layers.py for the cells, the
tests) builds these objects, so the call is spelled out here once. They are dataclasses whose
fields are keyword-only: no positional call to get out of order.

A backend module exposes

    KERNELS: dict[str, CellKernels]      cell name (see fastrnn.cells.CELLS) -> its kernels
    unavailable_reason() -> str | None   optional; None when the backend can run here

and each CellKernels holds, for one cell, one layer and one direction:

    forward(ForwardRequest) -> ForwardResult
    backward(BackwardRequest) -> BackwardResult
    step(StepRequest) -> StepResult      optional: one time step of inference, the low-latency path
                                         of the *Cell modules; when absent, forward with T=1 is used
    stream(x, h, c, w_ih, w_hh, b_ih, b_hh) -> (h', c') or None
                                         optional: the same step on plain arrays, for the cells'
                                         streaming calls (arrays already checked: C-contiguous,
                                         the module's dtype and shapes; c and c' None but for the
                                         LSTM), with none of the request objects' Python cost;
                                         None means "take step() instead" (a batch or a case it
                                         does not cover)
    forward_pair(ForwardRequest, ForwardRequest) -> (ForwardResult, ForwardResult) or None
    backward_pair(BackwardRequest, BackwardRequest) -> (BackwardResult, BackwardResult) or None
                                         optional: the two directions of a bidirectional layer
                                         (the same input, the second request's reverse True) in
                                         one call, which may run them side by side; each result
                                         is what forward (backward) gives for its request, and
                                         None means "call forward (backward) once a direction"

Shapes (T time steps, N batch rows, I input features, H hidden units, G = cell.gates):

    x          (T, N, I)   C-contiguous, float32 or float64; every other float array has x's dtype
                           and x's array module (NumPy or CuPy)
    h0, c0     (N, H)      c0 is None unless cell.has_cell_state
    w_ih       (G*H, I)    PyTorch layout, gate blocks in cell.gate_names order
    w_hh       (G*H, H)
    b_ih, b_hh (G*H,)      or both None when the layer has bias=False
    lengths    (N,) int32, C-contiguous, in x's array module, each in 1..T; or None meaning "all T".
               ForwardRequest converts whatever it is given to that form (normalise_lengths), so a
               backend never converts it again. Row n runs steps 0..lengths[n]-1 and is idle after
               that (state held, output 0).
    reverse    the reverse direction: row n visits t = lengths[n]-1 down to 0
    training   when False nothing is kept for backward and the result's cache is None
    out        (T, N, H)   out[t, n] = hidden state after time index t; 0 where t >= lengths[n]
    h_n, c_n   (N, H)      each row's state after its own last step (c_n None unless LSTM)
    cache      opaque: what backward needs (or None); owned by the backend that made it
    dout       (T, N, H)   gradient of the loss with respect to out (ignored where t >= lengths[n])
    dh_n       (N, H)      gradient with respect to h_n (zeros, never None)
    dc_n       (N, H)      gradient with respect to c_n for the LSTM, else None
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh
               the gradients, with the shapes of x, h0, c0, w_ih, w_hh, b_ih, b_hh (None where that
               input was None); weight and bias gradients are the totals over all T*N.

Inputs are never modified, and results never alias inputs or a backend's reusable buffers. A
training forward's cache may hold its out (result.out_in_cache): a caller that hands out to code
which may change it before the backward passes a copy (functional.stack_forward's private_out).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from .cells import CellSpec
from .devices import array_module, device_of, to_host

Array = Any   # a numpy.ndarray or a cupy.ndarray

# The classes holding arrays compare by identity (eq=False): comparing their fields would compare
# arrays elementwise, whose truth value is an error, not an answer. They are slotted, not frozen:
# the cells' streaming step builds three of them per call, and a frozen dataclass's __init__ (one
# object.__setattr__ per field) took 2.1 us against 0.9 us slotted for five fields, which is a
# sizeable share of a 5-10 us step. Backends treat them as read-only all the same.


@dataclass(eq=False, kw_only=True, slots=True)
class LayerWeights:
    """The parameters of one layer and one direction, in PyTorch's layout.

    w_ih (G*H, I), w_hh (G*H, H); b_ih, b_hh (G*H,) or both None (bias=False).
    """

    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array] = None
    b_hh: Optional[Array] = None

    @property
    def has_bias(self) -> bool:
        return self.b_ih is not None


def normalise_lengths(lengths, x) -> Optional[Array]:
    """`lengths` as the contract promises it: None, or an (N,) int32 C-contiguous array in x's array
    module. An array that already is one is returned as it is (no copy).

    Raises TypeError for non-integer lengths (a silent truncation of 2.5 would be a wrong answer)
    and ValueError for a shape other than (N,). The range 1..T is the modules' check
    (validation.check_lengths): testing it here would cost a device synchronisation on every call.
    """
    if lengths is None:
        return None
    xp = array_module(device_of(x))
    if xp is np:
        lengths = to_host(lengths)   # np.asarray refuses a CuPy array; cupy.asarray takes NumPy
    arr = xp.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
    n = x.shape[1]
    if arr.shape != (n,):
        raise ValueError(f"lengths must have shape ({n},), one per batch row, got {tuple(arr.shape)}")
    return xp.ascontiguousarray(arr, dtype=xp.int32)


@dataclass(eq=False, kw_only=True, slots=True)
class ForwardRequest:
    """One layer, one direction, over the whole sequence. See the module docstring for shapes."""

    cell: CellSpec
    x: Array                      # (T, N, I)
    h0: Array                     # (N, H)
    c0: Optional[Array]           # (N, H), LSTM only
    weights: LayerWeights
    lengths: Optional[Array] = None   # normalised on construction: (N,) int32 in x's module, or None
    reverse: bool = False
    training: bool = False

    def __post_init__(self):
        self.lengths = normalise_lengths(self.lengths, self.x)
        self.reverse = bool(self.reverse)
        self.training = bool(self.training)


@dataclass(eq=False, kw_only=True, slots=True)
class ForwardResult:
    out: Array                    # (T, N, H)
    h_n: Array                    # (N, H)
    c_n: Optional[Array]          # (N, H), LSTM only
    cache: Any = None             # None unless the request was training
    # The cache holds out itself (the states the steps started from are out shifted by a step):
    # out must then stay unchanged until the backward. Only a training forward sets it.
    out_in_cache: bool = False


@dataclass(eq=False, kw_only=True, slots=True)
class BackwardRequest:
    """BPTT of one training forward: `cache` is that forward's result.cache."""

    cell: CellSpec
    cache: Any
    dout: Array                   # (T, N, H)
    dh_n: Array                   # (N, H)
    dc_n: Optional[Array] = None  # (N, H), LSTM only


@dataclass(eq=False, kw_only=True, slots=True)
class BackwardResult:
    dx: Array                     # (T, N, I)
    dh0: Array                    # (N, H)
    dc0: Optional[Array]          # (N, H), LSTM only
    dw_ih: Array                  # (G*H, I)
    dw_hh: Array                  # (G*H, H)
    db_ih: Optional[Array]        # (G*H,), None without bias
    db_hh: Optional[Array]        # (G*H,), None without bias

    @property
    def weight_grads(self) -> tuple:
        """(dw_ih, dw_hh, db_ih, db_hh): the gradients in LayerWeights' order."""
        return self.dw_ih, self.dw_hh, self.db_ih, self.db_hh


@dataclass(eq=False, kw_only=True, slots=True)
class StepRequest:
    """One inference step of one layer: x (N, I), h and c (N, H) (c None unless LSTM)."""

    cell: CellSpec
    x: Array
    h: Array
    c: Optional[Array]
    weights: LayerWeights


@dataclass(eq=False, kw_only=True, slots=True)
class StepResult:
    h: Array                      # (N, H) the next hidden state
    c: Optional[Array] = None     # (N, H) the next cell state, LSTM only


@dataclass(frozen=True, kw_only=True)
class CellKernels:
    """One backend's implementation of one cell (see the module docstring)."""

    forward: Callable[[ForwardRequest], ForwardResult]
    backward: Callable[[BackwardRequest], BackwardResult]
    step: Optional[Callable[[StepRequest], StepResult]] = None
    stream: Optional[Callable[..., Optional[tuple]]] = None
    forward_pair: Optional[Callable[[ForwardRequest, ForwardRequest], Optional[tuple]]] = None
    backward_pair: Optional[Callable[[BackwardRequest, BackwardRequest], Optional[tuple]]] = None
