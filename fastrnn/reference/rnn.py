"""Vanilla RNN (tanh or relu): h' = act(W_ih x + b_ih + W_hh h + b_hh)."""
import numpy as np

from .activations import dtanh_from_output


class _RNNOps:
    def __init__(self, nonlinearity: str):
        self.relu = nonlinearity == "relu"

    def step(self, gx, gh, h, c):
        pre = gx + gh
        h_new = np.maximum(pre, 0) if self.relu else np.tanh(pre)
        return h_new, None, h_new

    def step_backward(self, dh, dc, h_new, h, c):
        dpre = dh * (h_new > 0) if self.relu else dh * dtanh_from_output(h_new)
        return dpre, dpre, 0, None


TANH_OPS = _RNNOps("tanh")
RELU_OPS = _RNNOps("relu")
