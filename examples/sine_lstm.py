"""Train a tiny LSTM to predict the next sample of a noisy sine wave, with fastrnn's own forward and
backward (no autograd framework): an LSTM, a linear read-out, mean squared error, and Adam.

    python examples/sine_lstm.py [--steps 300] [--backend numba]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import fastrnn as fr


def make_batch(rng, batch, length, noise=0.05):
    phase = rng.uniform(0, 2 * np.pi, size=(1, batch, 1))
    freq = rng.uniform(0.1, 0.3, size=(1, batch, 1))
    t = np.arange(length + 1, dtype=np.float64)[:, None, None]
    wave = np.sin(freq * t + phase) + noise * rng.standard_normal((length + 1, batch, 1))
    wave = wave.astype(np.float32)
    return wave[:-1], wave[1:]          # inputs and next-step targets, (T, N, 1) each


class Adam:
    def __init__(self, params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads):
        self.t += 1
        b1, b2 = self.betas
        for k, p in self.params.items():
            g = grads[k]
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            m_hat = self.m[k] / (1 - b1 ** self.t)
            v_hat = self.v[k] / (1 - b2 ** self.t)
            p -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(p.dtype)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--backend", default=None, help="numpy, numba, ... (default: auto)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    lstm = fr.LSTM(1, args.hidden, backend=args.backend, seed=0)
    head_w = (rng.standard_normal((args.hidden, 1)) / np.sqrt(args.hidden)).astype(np.float32)
    head_b = np.zeros(1, dtype=np.float32)
    params = dict(lstm.named_parameters(), head_w=head_w, head_b=head_b)
    opt = Adam(params)
    print(f"training {lstm} on a noisy sine wave")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = make_batch(rng, batch=16, length=50)
        out, _ = lstm(x)
        pred = out @ head_w + head_b
        err = pred - y
        loss = float(np.mean(err ** 2))
        dpred = (2.0 / err.size) * err
        grads = dict(head_w=np.einsum("tnh,tno->ho", out, dpred), head_b=dpred.sum(axis=(0, 1)))
        lstm.backward(dpred @ head_w.T)
        grads.update(lstm.grads)
        opt.step(grads)
        if step == 1 or step % 50 == 0:
            print(f"step {step:4d}  loss {loss:.5f}  ({time.perf_counter() - start:.1f} s)")
    return loss


if __name__ == "__main__":
    main()
