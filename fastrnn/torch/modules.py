"""LSTM, GRU and RNN: torch.nn's sequence modules with fastrnn's kernels behind them.

Each is a subclass of its torch.nn twin (same constructor, parameters, initialisation, state_dict,
repr, ``.to()``); only ``forward`` differs: it runs fastrnn's layer stack (see _stack.py) and leaves the
layout work (batch_first, unbatched input, packed sequences) to torch ops, which autograd handles.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .. import cells
from ._arrays import array_module, device_kind, kernels_for
from ._checks import check_input, check_parameters, check_shape, state_pair
from ._docs import FACTORY_AND_BACKEND
from ._stack import WEIGHT_KINDS, StackPlan, run_stack

_CELL_OF_MODE = {"LSTM": cells.LSTM, "GRU": cells.GRU, "RNN_TANH": cells.RNN_TANH,
                 "RNN_RELU": cells.RNN_RELU}


def check_no_projection(module) -> None:
    """fastrnn has no LSTM projections yet: say so by the option's name."""
    if getattr(module, "proj_size", 0) > 0:
        raise ValueError(f"fastrnn.torch.LSTM does not support proj_size > 0 (an LSTM with projections) "
                         f"yet, got proj_size={module.proj_size}; keep torch.nn.LSTM for this module")


class _FastSequence:
    """The forward shared by LSTM, GRU and RNN (mixed in before the torch.nn class)."""

    fastrnn_backend = None   # None or "auto": the best available backend for the tensors' device

    def __init__(self, *args, backend=None, **kwargs):
        super().__init__(*args, **kwargs)      # the torch.nn class's constructor
        self._init_fastrnn(backend)

    def _init_fastrnn(self, backend) -> None:
        check_no_projection(self)
        self.fastrnn_backend = backend

    def _weight_names(self):
        kinds = WEIGHT_KINDS if self.bias else WEIGHT_KINDS[:2]
        directions = ("", "_reverse") if self.bidirectional else ("",)
        return [f"{kind}_l{layer}{suffix}" for layer in range(self.num_layers)
                for suffix in directions for kind in kinds]

    def _time_major(self, input):
        """(x (T, N, I) contiguous, lengths or None, unbatched) from the forward's input."""
        name = type(self).__name__
        if isinstance(input, PackedSequence):
            padded, lengths = pad_packed_sequence(input)
            return padded.contiguous(), lengths, False
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"{name}: input must be a torch.Tensor or a PackedSequence, "
                            f"got {type(input).__name__}")
        if input.dim() not in (2, 3):
            layout = "(N, T, input_size)" if self.batch_first else "(T, N, input_size)"
            raise ValueError(f"{name}: input must be 3-D {layout} or unbatched 2-D (T, input_size), "
                             f"got {input.dim()}-D with shape {tuple(input.shape)}")
        unbatched = input.dim() == 2
        if unbatched:
            x = input.unsqueeze(1)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
        return x.contiguous(), None, unbatched

    def _initial_states(self, hx, x, unbatched):
        name = type(self).__name__
        rows = self.num_layers * (2 if self.bidirectional else 1)
        batch = x.shape[1]
        expected = (rows, self.hidden_size) if unbatched else (rows, batch, self.hidden_size)
        layout = "(num_layers * num_directions, " + ("" if unbatched else "batch, ") + "hidden_size)"
        is_lstm = self.mode == "LSTM"
        if is_lstm:
            parts = zip(state_pair(name, hx, "hx"), ("hx[0] (h_0)", "hx[1] (c_0)"))
        else:
            parts = [(hx, "hx")]
        states = []
        for value, what in parts:
            if value is None:
                states.append(x.new_zeros((rows, batch, self.hidden_size)))
                continue
            check_input(name, value, what, x)
            check_shape(name, value, expected, f"{what} {layout}")
            states.append((value.unsqueeze(1) if unbatched else value).contiguous())
        return states[0], (states[1] if is_lstm else None)

    def _plan(self, x, lengths) -> StackPlan:
        cell = _CELL_OF_MODE[self.mode]
        device = device_kind(x)
        lengths_array = None
        if lengths is not None and bool((lengths != x.shape[0]).any()):
            xp = array_module(device)
            lengths_array = xp.asarray(lengths.numpy().astype(np.int32))
        dropout = self.dropout if self.training and self.num_layers > 1 else 0.0
        return StackPlan(kernels_for(cell, device, self.fastrnn_backend), cell, self.num_layers,
                         2 if self.bidirectional else 1, self.bias, dropout, lengths_array, device,
                         x.device.index, type(self).__name__)

    def forward(self, input, hx=None):
        check_no_projection(self)
        name = type(self).__name__
        names = self._weight_names()
        weights = [getattr(self, n) for n in names]
        check_parameters(name, names, weights)
        x, lengths, unbatched = self._time_major(input)
        check_input(name, x, "input", weights[0])
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input has {x.shape[-1]} features in its last axis, but the "
                             f"module's input_size is {self.input_size}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name}: input must have at least one time step and one sequence, "
                             f"got shape {tuple(input.shape)}")
        h0, c0 = self._initial_states(hx, x, unbatched)
        plan = self._plan(x, lengths)
        out, h_n, c_n = run_stack(plan, x, h0, c0, weights)
        if isinstance(input, PackedSequence):
            out = _repack(out, lengths, input)
        elif unbatched:
            out, h_n = out.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, ((h_n, c_n) if self.mode == "LSTM" else h_n)


def _repack(out, lengths, like: PackedSequence) -> PackedSequence:
    """A PackedSequence of the padded, time-major `out` laid out exactly as `like` (same batch_sizes
    and sorting), which is what torch.nn returns for a packed input."""
    if like.sorted_indices is not None:
        out = out.index_select(1, like.sorted_indices)
        lengths = lengths[like.sorted_indices.cpu()]
    data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


_SEQUENCE_DOC = """{summary}

    A ``torch.nn.{name}`` subclass: the constructor, parameters (``weight_ih_l{{k}}[_reverse]``,
    ``weight_hh_l{{k}}[_reverse]``, ``bias_ih_l{{k}}[_reverse]``, ``bias_hh_l{{k}}[_reverse]``), their
    initialisation and the state_dict are torch.nn's, so weights load both ways; forward and backward
    run fastrnn's kernels (float32 or float64, CPU or CUDA tensors, no copies in or out).

    Parameters
    ----------
    input_size, hidden_size : int
        Features of the input and of the hidden state H.
    num_layers : int, default 1
        Stacked layers; layer k > 0 reads the outputs of layer k - 1.{extra_param}
    bias : bool, default True
        Whether the layers have b_ih and b_hh.
    batch_first : bool, default False
        Input and output are (N, T, features) instead of (T, N, features); never the states.
    dropout : float, default 0
        Dropout on the input of every layer after the first, in training mode only; the masks come
        from torch's generator, so ``torch.manual_seed`` governs them.
    bidirectional : bool, default False
        Adds a reverse direction; outputs are [forward, reverse] on the feature axis (D = 2).{proj}
    {factory}

    Inputs
    ------
    input : Tensor (T, N, input_size), (N, T, input_size) with batch_first, unbatched (T, input_size),
        or a PackedSequence (sorted or not).
    {hx_doc}

    Outputs
    -------
    output : Tensor (T, N, D * H) ((N, T, D * H) with batch_first, (T, D * H) unbatched), or a
        PackedSequence laid out like the input's.
    {hn_doc}

    Gradients flow to the input, the initial state(s) and every parameter. The forward keeps nothing
    for backward when autograd does not need it (``torch.no_grad()``, ``torch.inference_mode()``, or
    nothing requiring grad), though in training mode it still applies dropout there, as torch.nn
    does; ``eval()`` turns dropout off. Double backward raises an error.

    Examples
    --------
    >>> import torch, fastrnn.torch as frt
    >>> {example}
    """

_STATE_DOCS = {
    "LSTM": ("hx : pair (h_0, c_0) of Tensors (L * D, N, H) ((L * D, H) unbatched), optional\n"
             "        Initial states; zeros when omitted.",
             "(h_n, c_n) : Tensors (L * D, N, H) ((L * D, H) unbatched)\n"
             "        Each sequence's state after its own last step; rows are layer * D + direction."),
    "GRU": ("hx : Tensor (L * D, N, H) ((L * D, H) unbatched), optional\n"
            "        Initial state; zeros when omitted.",
            "h_n : Tensor (L * D, N, H) ((L * D, H) unbatched)\n"
            "        Each sequence's state after its own last step; rows are layer * D + direction."),
}
_STATE_DOCS["RNN"] = _STATE_DOCS["GRU"]

_EXAMPLES = {
    "LSTM": ">>> lstm = frt.LSTM(8, 16, num_layers=2, batch_first=True)\n"
            "    >>> out, (h_n, c_n) = lstm(torch.randn(4, 10, 8))\n"
            "    >>> out.shape, h_n.shape\n"
            "    (torch.Size([4, 10, 16]), torch.Size([2, 4, 16]))\n"
            "    >>> out.sum().backward()",
    "GRU": ">>> gru = frt.GRU(8, 16, bidirectional=True)\n"
           "    >>> out, h_n = gru(torch.randn(10, 4, 8))\n"
           "    >>> out.shape, h_n.shape\n"
           "    (torch.Size([10, 4, 32]), torch.Size([2, 4, 16]))",
    "RNN": ">>> rnn = frt.RNN(8, 16, nonlinearity='relu')\n"
           "    >>> out, h_n = rnn(torch.randn(10, 8))        # unbatched\n"
           "    >>> out.shape, h_n.shape\n"
           "    (torch.Size([10, 16]), torch.Size([1, 16]))",
}


def _doc(name: str, summary: str, extra_param: str = "", proj: str = "") -> str:
    hx_doc, hn_doc = _STATE_DOCS[name]
    return _SEQUENCE_DOC.format(factory=FACTORY_AND_BACKEND, summary=summary, name=name,
                                extra_param=extra_param, proj=proj,
                                hx_doc=hx_doc, hn_doc=hn_doc, example=_EXAMPLES[name][4:])


class LSTM(_FastSequence, nn.LSTM):
    __doc__ = _doc("LSTM", "Multi-layer LSTM (gates i, f, g, o) computed by fastrnn, a drop-in for "
                   "torch.nn.LSTM.",
                   proj="\n    proj_size : int, default 0\n        Must be 0: LSTM projections are "
                   "not supported yet (a ValueError says so).")


class GRU(_FastSequence, nn.GRU):
    __doc__ = _doc("GRU", "Multi-layer GRU (gates r, z, n; b_hn inside the r product) computed by "
                   "fastrnn, a drop-in for torch.nn.GRU.")


class RNN(_FastSequence, nn.RNN):
    __doc__ = _doc("RNN", "Multi-layer Elman RNN, h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu), "
                   "computed by fastrnn, a drop-in for torch.nn.RNN.",
                   extra_param="\n    nonlinearity : {'tanh', 'relu'}, default 'tanh'\n        The "
                   "activation (the fourth positional argument, as in torch.nn.RNN).")
