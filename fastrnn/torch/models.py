"""Small reference models built from torch.nn parts, shared by the examples and the benchmarks so that
what is timed is what the examples train."""
from __future__ import annotations

import torch
from torch import nn

from .convert import convert


class CharLM(nn.Module):
    """Character-level language model: embedding, a stacked LSTM, a linear read-out to the vocabulary.

    Built from plain ``torch.nn`` modules; ``char_lm(..., fast=True)`` converts its LSTM to fastrnn.

    Parameters
    ----------
    vocab_size : int
        Number of distinct characters V.
    embedding : int, default 64
        Embedding width E.
    hidden : int, default 256
        LSTM hidden size H.
    num_layers : int, default 2
        Stacked LSTM layers.
    dropout : float, default 0
        Dropout between the LSTM layers (training mode only).

    Inputs
    ------
    tokens : LongTensor (T, N)
        Character indices, time-major.
    state : pair (h, c) of Tensors (num_layers, N, H), optional
        The LSTM state to start from (zeros when omitted).

    Outputs
    -------
    logits : Tensor (T, N, V)
        Scores of the next character at every position.
    state : pair (h, c) of Tensors (num_layers, N, H)
        The LSTM state after the last step, to continue from.

    Examples
    --------
    >>> import torch
    >>> from fastrnn.torch.models import char_lm
    >>> model = char_lm(30, embedding=8, hidden=16)
    >>> logits, state = model(torch.randint(0, 30, (12, 4)))
    >>> logits.shape
    torch.Size([12, 4, 30])
    """

    def __init__(self, vocab_size: int, embedding: int = 64, hidden: int = 256, num_layers: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding)
        self.lstm = nn.LSTM(embedding, hidden, num_layers, dropout=dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, tokens, state=None):
        out, state = self.lstm(self.embed(tokens), state)
        return self.head(out), state


def char_lm(vocab_size: int, *, embedding: int = 64, hidden: int = 256, num_layers: int = 2,
            dropout: float = 0.0, fast: bool = True, dtype=torch.float32) -> CharLM:
    """A CharLM, converted to fastrnn when `fast` (else the torch.nn original).

    Parameters
    ----------
    vocab_size, embedding, hidden, num_layers, dropout
        As for CharLM.
    fast : bool, default True
        Convert the LSTM to fastrnn.torch.LSTM with fastrnn.torch.convert.
    dtype : torch.dtype, default torch.float32
        Parameter dtype.

    Inputs
    ------
    None : a builder; the model returned takes CharLM's inputs.

    Outputs
    -------
    model : CharLM

    Examples
    --------
    >>> from fastrnn.torch.models import char_lm
    >>> type(char_lm(30).lstm).__module__, type(char_lm(30, fast=False).lstm).__module__
    ('fastrnn.torch.modules', 'torch.nn.modules.rnn')
    """
    model = CharLM(vocab_size, embedding, hidden, num_layers, dropout).to(dtype)
    return convert(model) if fast else model


def char_lm_loss(logits, targets):
    """Mean cross-entropy per character of a CharLM's logits (T, N, V) against targets (T, N).

    Parameters
    ----------
    logits : Tensor (T, N, V)
        The model's scores.
    targets : LongTensor (T, N)
        The characters that follow the inputs.

    Inputs
    ------
    None : a function; see Parameters.

    Outputs
    -------
    loss : Tensor ()
        The mean cross-entropy, differentiable.

    Examples
    --------
    >>> import torch
    >>> from fastrnn.torch.models import char_lm_loss
    >>> float(char_lm_loss(torch.zeros(2, 1, 4), torch.zeros(2, 1, dtype=torch.long)))  # log(4)
    1.3862943649291992
    """
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def char_lm_train_step(model: CharLM, optimizer, inputs, targets, clip: float = 1.0) -> float:
    """One training step of a CharLM on a batch: cross-entropy of the next character, backward,
    gradient clipping, optimizer step. Returns the loss.

    Parameters
    ----------
    model : CharLM
    optimizer : torch.optim.Optimizer
        Over the model's parameters.
    inputs, targets : LongTensor (T, N)
        Characters and the characters that follow them.
    clip : float, default 1
        Maximum gradient norm (torch.nn.utils.clip_grad_norm_).

    Inputs
    ------
    None : a function; see Parameters.

    Outputs
    -------
    loss : float
        Mean cross-entropy per character, before the step.

    Examples
    --------
    >>> import torch
    >>> from fastrnn.torch.models import char_lm, char_lm_train_step
    >>> model = char_lm(20, embedding=8, hidden=16)
    >>> opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    >>> tokens = torch.randint(0, 20, (11, 3))
    >>> loss = char_lm_train_step(model, opt, tokens[:-1], tokens[1:])
    """
    optimizer.zero_grad()
    logits, _ = model(inputs)
    loss = char_lm_loss(logits, targets)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.item()


@torch.no_grad()
def char_lm_sample(model: CharLM, start: torch.Tensor, length: int, temperature: float = 0.8,
                   generator=None) -> list:
    """Characters drawn one at a time from the model, continuing from `start`.

    Parameters
    ----------
    model : CharLM
    start : LongTensor (T0,)
        The prompt's character indices (at least one).
    length : int
        How many characters to draw.
    temperature : float, default 0.8
        Softmax temperature; lower is more conservative.
    generator : torch.Generator, optional
        Random source of the draws.

    Inputs
    ------
    None : a function; see Parameters.

    Outputs
    -------
    indices : list of int
        The `length` drawn character indices.

    Examples
    --------
    >>> import torch
    >>> from fastrnn.torch.models import char_lm, char_lm_sample
    >>> len(char_lm_sample(char_lm(20, embedding=8, hidden=16), torch.tensor([1, 2]), 5))
    5
    """
    was_training = model.training
    model.eval()
    logits, state = model(start[:, None])
    drawn = []
    for _ in range(length):
        probs = torch.softmax(logits[-1, 0] / temperature, dim=-1)
        index = int(torch.multinomial(probs, 1, generator=generator))
        drawn.append(index)
        logits, state = model(torch.tensor([[index]]), state)
    model.train(was_training)
    return drawn
