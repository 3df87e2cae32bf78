"""An existing PyTorch model switched to fastrnn with one call: fastrnn.torch.convert(model) switches every
torch.nn RNN/LSTM/GRU (and cell) inside it to fastrnn, in place, keeping its weights.

    python examples/convert_model.py [--seq-len 100] [--batch 32] [--hidden 256] [--repeats 10]

The model is a small acoustic-style tagger (a 2-layer GRU over feature frames, a linear read-out per
frame). Its inference and training step are timed before and after the conversion, and the outputs
compared. Both run in this one process, one after the other: thread pools left spinning by one library
can slow the other, so treat the ratio as indicative (bench/char_lm_speed.py times each side in its
own process).
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

import fastrnn.torch as frt
from fastrnn.benchmarking.timing import median_ms


class FrameTagger(nn.Module):
    """Feature frames (T, N, features) -> per-frame class scores (T, N, classes)."""

    def __init__(self, features=40, hidden=256, classes=32):
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=2)
        self.head = nn.Linear(hidden, classes)

    def forward(self, frames):
        out, _ = self.gru(frames)
        return self.head(out)


def time_model(model, frames, labels, repeats):
    """(inference ms, training-step ms), medians."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def infer():
        with torch.no_grad():
            model(frames)

    def train_step():
        optimizer.zero_grad()
        scores = model(frames)
        nn.functional.cross_entropy(scores.reshape(-1, scores.shape[-1]), labels.reshape(-1)).backward()
        optimizer.step()

    return median_ms(infer, repeats), median_ms(train_step, repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = FrameTagger(hidden=args.hidden)
    frames = torch.randn(args.seq_len, args.batch, 40)
    labels = torch.randint(0, 32, (args.seq_len, args.batch))
    before = time_model(model, frames, labels, args.repeats)
    with torch.no_grad():
        torch_out = model(frames)

    frt.convert(model)                      # the one call

    with torch.no_grad():
        fastrnn_out = model(frames)
    after = time_model(model, frames, labels, args.repeats)
    err = ((fastrnn_out - torch_out).abs().max() / torch_out.abs().max()).item()
    print(f"model: {model.gru}  (T={args.seq_len}, N={args.batch}); float32")
    print(f"{'':14s}{'torch.nn':>12s}{'converted':>12s}{'speedup':>10s}")
    for name, b, a in zip(("inference", "training step"), before, after):
        print(f"{name:14s}{b:10.2f}ms{a:10.2f}ms{b / a:9.2f}x")
    print(f"outputs before and after the conversion differ by {err:.1e} (relative, float32)")
    return before, after, err


if __name__ == "__main__":
    main()
