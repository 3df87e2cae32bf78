"""One process of the DistributedDataParallel test (tests/test_torch_ddp.py): a converted model, gloo
on the loopback interface, this rank's half of the batch; writes the averaged gradients to a file.

    python tests/torch_ddp_worker.py RANK WORLD_SIZE PORT OUT_FILE
"""
from __future__ import annotations

import sys

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn.torch as frt

VOCAB, CLASSES, BATCH, T = 13, 3, 8, 6


class Classifier(nn.Module):
    """Embedding -> bidirectional 2-layer LSTM over packed sequences -> linear on the final states."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 5)
        self.lstm = nn.LSTM(5, 7, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(14, CLASSES)

    def forward(self, tokens, lengths):
        packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True,
                                      enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return self.head(torch.cat([h_n[-2], h_n[-1]], dim=1))


def build():
    """The converted float64 model, the same in every process."""
    torch.manual_seed(0)
    return frt.convert(Classifier().double())


def batch():
    """The whole batch: tokens (BATCH, T), lengths (BATCH,), targets (BATCH,)."""
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (BATCH, T), generator=gen)
    lengths = torch.randint(1, T + 1, (BATCH,), generator=gen)
    targets = torch.randint(0, CLASSES, (BATCH,), generator=gen)
    return tokens, lengths, targets


def gradients(model, tokens, lengths, targets):
    """Gradients of the mean cross-entropy, by parameter name."""
    model.zero_grad()
    nn.functional.cross_entropy(model(tokens, lengths), targets).backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def main(rank: int, world: int, port: int, out_file: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                         rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(build())
        tokens, lengths, targets = batch()
        share = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        grads = gradients(model, tokens[share], lengths[share], targets[share])
        torch.save({name.removeprefix("module."): g for name, g in grads.items()}, out_file)
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
