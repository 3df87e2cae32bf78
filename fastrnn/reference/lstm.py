"""LSTM, gates i, f, g, o: c' = f*c + i*g, h' = o*tanh(c')."""
import numpy as np

from .activations import dsigmoid_from_output, dtanh_from_output, sigmoid


class _LSTMOps:
    def step(self, gx, gh, h, c):
        pre = gx + gh
        i, f, g, o = np.split(pre, 4, axis=1)
        i, f, o = sigmoid(i), sigmoid(f), sigmoid(o)
        g = np.tanh(g)
        c_new = f * c + i * g
        tanh_c = np.tanh(c_new)
        h_new = o * tanh_c
        return h_new, c_new, (i, f, g, o, tanh_c)

    def step_backward(self, dh, dc, saved, h, c):
        i, f, g, o, tanh_c = saved
        do = dh * tanh_c
        dc_total = dc + dh * o * dtanh_from_output(tanh_c)
        di = dc_total * g
        df = dc_total * c
        dg = dc_total * i
        dpre = np.concatenate([di * dsigmoid_from_output(i), df * dsigmoid_from_output(f),
                               dg * dtanh_from_output(g), do * dsigmoid_from_output(o)], axis=1)
        return dpre, dpre, 0, dc_total * f


LSTM_OPS = _LSTMOps()
