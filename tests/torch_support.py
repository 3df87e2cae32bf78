"""Helpers of the fastrnn.torch tests: the torch.nn and fastrnn.torch modules of one cell kind, and
torch's thread count pinned to one (tiny shapes; torch's OpenMP pool and NumPy's OpenBLAS pool
busy-wait against each other on two cores, and the thread count is not what these tests compare)."""
from __future__ import annotations

import pytest
import torch

import fastrnn.torch as frt
from fastrnn.numerics import relative_error

KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
_SEQUENCE = {"lstm": (torch.nn.LSTM, frt.LSTM), "gru": (torch.nn.GRU, frt.GRU),
             "rnn": (torch.nn.RNN, frt.RNN)}
_CELL = {"lstm": (torch.nn.LSTMCell, frt.LSTMCell), "gru": (torch.nn.GRUCell, frt.GRUCell),
         "rnn": (torch.nn.RNNCell, frt.RNNCell)}


def _family_kwargs(kind: str, kwargs: dict):
    if kind.startswith("rnn_"):
        return "rnn", dict(kwargs, nonlinearity=kind[4:])
    return kind, kwargs


def _pair(table, kind: str, args, kwargs):
    family, kwargs = _family_kwargs(kind, kwargs)
    torch_cls, fast_cls = table[family]
    reference = torch_cls(*args, **kwargs)
    fast = fast_cls(*args, **kwargs)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def sequence_pair(kind: str, *args, **kwargs):
    """(torch.nn module, fastrnn.torch module) of one kind with the same weights."""
    return _pair(_SEQUENCE, kind, args, kwargs)


def cell_pair(kind: str, *args, **kwargs):
    """(torch.nn cell, fastrnn.torch cell) of one kind with the same weights."""
    return _pair(_CELL, kind, args, kwargs)


def state_for(kind: str, shape, dtype=torch.float64, requires_grad=True):
    """hx for a cell kind: a tensor, or a pair for the LSTM."""
    def make():
        return torch.randn(*shape, dtype=dtype, requires_grad=requires_grad)
    return (make(), make()) if kind == "lstm" else make()


def flat_state(kind: str, hx):
    return list(hx) if kind == "lstm" else [hx]


def assert_close(actual, expected, bound: float, what: str):
    err = relative_error(actual.detach().numpy(), expected.detach().numpy())
    assert err <= bound, f"{what}: relative error {err:.3e} > {bound:.0e}"
    return err


@pytest.fixture(scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
