"""A many-to-one bidirectional GRU classifier over variable-length sequences, in PyTorch with
fastrnn.torch.GRU: synthetic "reviews" whose label says whether they hold more positive than negative
words; the sequences are packed, so the padding is never computed.

    python examples/sentiment.py [--steps 200]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn.torch as frt

VOCAB = 24
POSITIVE = range(0, 4)      # word ids that count for the review
NEGATIVE = range(4, 8)      # and against it; the rest are neutral


def make_reviews(count, min_len, max_len, generator):
    """tokens (count, max_len) padded with 0, lengths (count,), labels (count,): 1 when the review has
    more positive than negative words; reviews with a tie are redrawn."""
    tokens = torch.zeros(count, max_len, dtype=torch.long)
    lengths = torch.randint(min_len, max_len + 1, (count,), generator=generator)
    labels = torch.zeros(count, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        while True:
            words = torch.randint(0, VOCAB, (n,), generator=generator)
            pos = sum(int(w) in POSITIVE for w in words)
            neg = sum(int(w) in NEGATIVE for w in words)
            if pos != neg:
                break
        tokens[i, :n] = words
        labels[i] = int(pos > neg)
    return tokens, lengths, labels


class ReviewClassifier(nn.Module):
    """Embedding -> bidirectional GRU over the packed reviews -> linear on both final states."""

    def __init__(self, embedding=16, hidden=32):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, embedding)
        self.gru = frt.GRU(embedding, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 2)

    def forward(self, tokens, lengths):
        packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True,
                                      enforce_sorted=False)
        _, h_n = self.gru(packed)               # (2, N, hidden): forward and reverse final states
        return self.head(torch.cat([h_n[0], h_n[1]], dim=1))


def accuracy(model, tokens, lengths, labels):
    with torch.no_grad():
        return (model(tokens, lengths).argmax(dim=1) == labels).float().mean().item()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--min-len", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = ReviewClassifier(hidden=args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    test = make_reviews(256, args.min_len, args.max_len, generator)
    print(f"accuracy before training: {accuracy(model, *test):.3f}")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        tokens, lengths, labels = make_reviews(args.batch, args.min_len, args.max_len, generator)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(tokens, lengths), labels)
        loss.backward()
        optimizer.step()
        if step == 1 or step % 50 == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss.item():.4f}  ({time.perf_counter() - start:.1f} s)")
    final = accuracy(model, *test)
    print(f"accuracy on 256 held-out reviews: {final:.3f}")
    return final


if __name__ == "__main__":
    main()
