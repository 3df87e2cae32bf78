"""LSTMCell, GRUCell and RNNCell: torch.nn's single-step modules with fastrnn's kernels behind them.

Each subclasses its torch.nn twin (constructor, parameters weight_ih, weight_hh, bias_ih, bias_hh,
initialisation, state_dict); forward runs one step as a one-layer stack of length 1 when autograd
needs it, and the backend's low-latency single step (when it has one) when it does not.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import cells
from ..contract import LayerWeights, StepRequest
from ._arrays import device_kind, kernels_for, on_torch_stream, to_array, to_tensor
from ._checks import check_input, check_parameters, check_shape, state_pair
from ._docs import FACTORY_AND_BACKEND
from ._stack import StackPlan, needs_autograd, run_stack


class _FastCell:
    """The forward shared by the three cells (mixed in before the torch.nn class)."""

    fastrnn_backend = None

    def __init__(self, *args, backend=None, **kwargs):
        super().__init__(*args, **kwargs)      # the torch.nn class's constructor
        self._init_fastrnn(backend)

    _CELL = None   # the cell spec of LSTMCell and GRUCell; RNNCell's depends on its nonlinearity

    def _cell_spec(self):
        return self._CELL

    def _init_fastrnn(self, backend) -> None:
        self.fastrnn_backend = backend

    def _states(self, hx, x, unbatched):
        name = type(self).__name__
        batch = x.shape[0]
        expected = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
        layout = "(hidden_size,)" if unbatched else "(batch, hidden_size)"
        has_c = self._cell_spec().has_cell_state
        parts = zip(state_pair(name, hx, "hx"), ("hx[0] (h)", "hx[1] (c)")) if has_c else [(hx, "hx")]
        states = []
        for value, what in parts:
            if value is None:
                states.append(x.new_zeros((batch, self.hidden_size)))
                continue
            check_input(name, value, what, x)
            check_shape(name, value, expected, f"{what} {layout}")
            states.append((value.unsqueeze(0) if unbatched else value).contiguous())
        return states[0], (states[1] if has_c else None)

    def forward(self, input, hx=None):
        name = type(self).__name__
        cell = self._cell_spec()
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
        weights = [getattr(self, n) for n in names]
        check_parameters(name, names, weights)
        check_input(name, input, "input", weights[0])
        if input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input must have shape (batch, {self.input_size}) or unbatched "
                             f"({self.input_size},), got {tuple(input.shape)}")
        unbatched = input.dim() == 1
        x = (input.unsqueeze(0) if unbatched else input).contiguous()
        h, c = self._states(hx, x, unbatched)
        device = device_kind(x)
        kern = kernels_for(cell, device, self.fastrnn_backend)
        if kern.step is not None and not needs_autograd([x, h, c] + weights):
            h1, c1 = self._step(kern, cell, device, x, h, c, weights)
        else:
            plan = StackPlan(kern, cell, 1, 1, self.bias, 0.0, None, device, x.device.index, name)
            _, h_n, c_n = run_stack(plan, x[None], h[None], None if c is None else c[None], weights)
            h1, c1 = h_n[0], (None if c_n is None else c_n[0])
        if unbatched:
            h1 = h1.squeeze(0)
            c1 = None if c1 is None else c1.squeeze(0)
        return (h1, c1) if cell.has_cell_state else h1

    @staticmethod
    def _step(kern, cell, device, x, h, c, weights):
        w = [to_array(t) for t in weights] + ([None, None] if len(weights) == 2 else [])
        layer = LayerWeights(w_ih=w[0], w_hh=w[1], b_ih=w[2], b_hh=w[3])
        with torch.no_grad(), on_torch_stream(device, x.device.index):
            result = kern.step(StepRequest(cell=cell, x=to_array(x), h=to_array(h), c=to_array(c),
                                           weights=layer))
        return to_tensor(result.h), to_tensor(result.c)


_CELL_DOC = """{summary}

    A ``torch.nn.{name}`` subclass: constructor, parameters (weight_ih ({g}H, input_size), weight_hh
    ({g}H, H), bias_ih, bias_hh ({g}H,)), initialisation and state_dict are torch.nn's; the step runs
    on fastrnn's kernels (float32 or float64, CPU or CUDA tensors).

    Parameters
    ----------
    input_size, hidden_size : int
        Features of the input and of the hidden state H.
    bias : bool, default True
        Whether the cell has b_ih and b_hh.{extra}
    {factory}

    Inputs
    ------
    input : Tensor (N, input_size) or unbatched (input_size,)
    {hx_doc}

    Outputs
    -------
    {out_doc}

    Gradients flow to the input, the state(s) and every parameter; without autograd (torch.no_grad(),
    nothing requiring grad) the backend's single-step inference kernel runs. Double backward raises an
    error.

    Examples
    --------
    >>> import torch, fastrnn.torch as frt
    {example}
    """


def _doc(name, summary, g, hx_doc, out_doc, example, extra=""):
    return _CELL_DOC.format(factory=FACTORY_AND_BACKEND, name=name, summary=summary, g=g,
                            hx_doc=hx_doc, out_doc=out_doc,
                            example=example, extra=extra)


_H_IN = ("hx : Tensor (N, H) or unbatched (H,), optional\n        The state; zeros when omitted.")
_H_OUT = "h' : Tensor (N, H) or unbatched (H,)\n        The next state."


class LSTMCell(_FastCell, nn.LSTMCell):
    __doc__ = _doc(
        "LSTMCell", "One LSTM step computed by fastrnn, a drop-in for torch.nn.LSTMCell.", 4,
        "hx : pair (h, c) of Tensors (N, H) or unbatched (H,), optional\n        The state; zeros "
        "when omitted.",
        "(h', c') : Tensors (N, H) or unbatched (H,)\n        The next state.",
        ">>> cell = frt.LSTMCell(8, 16)\n    >>> h, c = cell(torch.randn(4, 8))\n"
        "    >>> h, c = cell(torch.randn(4, 8), (h, c))\n    >>> h.shape\n    torch.Size([4, 16])")

    _CELL = cells.LSTM


class GRUCell(_FastCell, nn.GRUCell):
    __doc__ = _doc(
        "GRUCell", "One GRU step computed by fastrnn, a drop-in for torch.nn.GRUCell.", 3, _H_IN,
        _H_OUT, ">>> cell = frt.GRUCell(8, 16)\n    >>> h = cell(torch.randn(4, 8))\n"
        "    >>> h.shape\n    torch.Size([4, 16])")

    _CELL = cells.GRU


class RNNCell(_FastCell, nn.RNNCell):
    __doc__ = _doc(
        "RNNCell", "One Elman RNN step computed by fastrnn, a drop-in for torch.nn.RNNCell.", 1, _H_IN,
        _H_OUT, ">>> cell = frt.RNNCell(8, 16, nonlinearity='relu')\n"
        "    >>> h = cell(torch.randn(8))                # unbatched\n    >>> h.shape\n"
        "    torch.Size([16])",
        extra="\n    nonlinearity : {'tanh', 'relu'}, default 'tanh'\n        The activation.")

    def _cell_spec(self):
        return cells.rnn_cell(self.nonlinearity)
