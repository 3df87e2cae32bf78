"""GRU, gates r, z, n: n = tanh(gx_n + r*(W_hn h + b_hn)), h' = (1-z)*n + z*h."""
import numpy as np

from .activations import dsigmoid_from_output, dtanh_from_output, sigmoid


class _GRUOps:
    def step(self, gx, gh, h, c):
        gx_r, gx_z, gx_n = np.split(gx, 3, axis=1)
        gh_r, gh_z, gh_n = np.split(gh, 3, axis=1)
        r = sigmoid(gx_r + gh_r)
        z = sigmoid(gx_z + gh_z)
        n = np.tanh(gx_n + r * gh_n)
        h_new = (1 - z) * n + z * h
        return h_new, None, (r, z, n, gh_n)

    def step_backward(self, dh, dc, saved, h, c):
        r, z, n, gh_n = saved
        dn_pre = dh * (1 - z) * dtanh_from_output(n)
        dz_pre = dh * (h - n) * dsigmoid_from_output(z)
        dr_pre = dn_pre * gh_n * dsigmoid_from_output(r)
        dgx = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
        dgh = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)
        return dgx, dgh, dh * z, None


GRU_OPS = _GRUOps()
