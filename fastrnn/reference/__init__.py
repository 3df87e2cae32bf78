"""The NumPy reference backend ("numpy"): the numerical spec every other backend is checked against.

Plain, readable NumPy; correctness over speed. Its backward is verified against central finite
differences in tests/test_reference_fd.py.
"""
from functools import partial

from ..contract import CellKernels
from .gru import GRU_OPS
from .lstm import LSTM_OPS
from .rnn import RELU_OPS, TANH_OPS
from .sequence import sequence_backward, sequence_forward

_OPS = {"rnn_tanh": TANH_OPS, "rnn_relu": RELU_OPS, "lstm": LSTM_OPS, "gru": GRU_OPS}

KERNELS = {
    name: CellKernels(forward=partial(sequence_forward, ops), backward=partial(sequence_backward, ops))
    for name, ops in _OPS.items()
}
