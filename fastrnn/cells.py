"""One description per recurrent cell: gate count, gate order, state layout, parameter names.

Everything else (the reference, the kernels, the modules, the tests) reads these descriptions instead of
hard-coding gate counts, so the four cells stay consistent.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CellSpec:
    """What a backend needs to know about a cell.

    name: registry key ("rnn_tanh", "rnn_relu", "lstm", "gru").
    gates: G, the number of H-sized gate blocks in weight_ih / weight_hh (PyTorch's layout, rows stacked).
    gate_names: the blocks of the G*H axis, in PyTorch's order.
    has_cell_state: True for the LSTM, whose state is the pair (h, c).
    """

    name: str
    gates: int
    gate_names: tuple[str, ...]
    has_cell_state: bool

    def weight_shapes(self, input_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
        """Shapes of (weight_ih, weight_hh, bias_ih, bias_hh) for one layer and one direction."""
        gh = self.gates * hidden_size
        return {
            "weight_ih": (gh, input_size),
            "weight_hh": (gh, hidden_size),
            "bias_ih": (gh,),
            "bias_hh": (gh,),
        }


RNN_TANH = CellSpec("rnn_tanh", 1, ("h",), False)
RNN_RELU = CellSpec("rnn_relu", 1, ("h",), False)
LSTM = CellSpec("lstm", 4, ("i", "f", "g", "o"), True)
GRU = CellSpec("gru", 3, ("r", "z", "n"), False)

CELLS: dict[str, CellSpec] = {c.name: c for c in (RNN_TANH, RNN_RELU, LSTM, GRU)}

NONLINEARITIES = ("tanh", "relu")


def rnn_cell(nonlinearity: str) -> CellSpec:
    """The vanilla-RNN cell spec for PyTorch's `nonlinearity` argument."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return RNN_TANH if nonlinearity == "tanh" else RNN_RELU
