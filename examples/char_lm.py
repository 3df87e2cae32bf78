"""Train a character-level LSTM language model on the first chapter of Jane Austen's "Pride and
Prejudice" (1813, public domain; examples/data/) with PyTorch, its LSTM run by fastrnn, then print a
sample of generated text.

    python examples/char_lm.py [--steps 300] [--torch]

The model is fastrnn.torch.models.CharLM: torch.nn.Embedding, torch.nn.LSTM (converted to fastrnn with
fastrnn.torch.convert) and torch.nn.Linear, trained with torch.optim.Adam. --torch keeps torch.nn's
LSTM, for comparison.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from fastrnn.benchmarking.progress import Progress
from fastrnn.torch.models import char_lm, char_lm_sample, char_lm_train_step

TEXT = Path(__file__).resolve().parent / "data" / "pride_and_prejudice_ch1.txt"


def load_text(path=TEXT):
    """(encoded text as a LongTensor, the vocabulary as a string)."""
    text = Path(path).read_text(encoding="utf-8")
    vocab = "".join(sorted(set(text)))
    index = {ch: i for i, ch in enumerate(vocab)}
    return torch.tensor([index[ch] for ch in text]), vocab


def random_batch(encoded, seq_len, batch, generator):
    """inputs and next-character targets, (seq_len, batch) each, from random windows of the text."""
    starts = torch.randint(0, len(encoded) - seq_len - 1, (batch,), generator=generator)
    windows = torch.stack([encoded[s:s + seq_len + 1] for s in starts.tolist()], dim=1)
    return windows[:-1], windows[1:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--sample", type=int, default=300, help="characters to generate at the end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch", action="store_true", help="keep torch.nn's LSTM (no fastrnn)")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    encoded, vocab = load_text()
    model = char_lm(len(vocab), embedding=args.embedding, hidden=args.hidden,
                    num_layers=args.layers, fast=not args.torch)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    which = "torch.nn" if args.torch else "fastrnn"
    print(f"{len(encoded)} characters, vocabulary of {len(vocab)}; LSTM by {which}: {model.lstm}")

    losses = []
    start = time.perf_counter()

    def time_left() -> float:   # the mean step so far, times the steps still to run
        done = len(losses)
        return (time.perf_counter() - start) / done * (args.steps - done) if done else 0.0

    progress = Progress(time_left)
    for step in range(1, args.steps + 1):
        inputs, targets = random_batch(encoded, args.seq_len, args.batch, generator)
        losses.append(char_lm_train_step(model, optimizer, inputs, targets))
        progress.show(f"step {step}/{args.steps} loss {losses[-1]:.3f}", step=True)
    progress.close()
    elapsed = time.perf_counter() - start
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in {args.steps} steps, "
          f"{1000 * elapsed / args.steps:.1f} ms a step")

    prompt = "It is a truth"
    drawn = char_lm_sample(model, torch.tensor([vocab.index(ch) for ch in prompt]), args.sample,
                           generator=generator)
    sample = prompt + "".join(vocab[i] for i in drawn)
    print("sample:\n" + sample)
    return losses, sample


if __name__ == "__main__":
    main()
