"""The model cases' timed calls: the char-LM (fastrnn.torch.models.CharLM) as plain torch.nn, and the same
model after fastrnn.torch.convert, on the same weights and characters.

What is timed is what bench/char_lm_speed.py times: in "training" mode one
fastrnn.torch.models.char_lm_train_step (forward, cross-entropy, backward, gradient clipping, Adam
step), in "inference" mode the eval-mode forward under torch.no_grad(). The check before timing runs
the model in float64 and compares its logits, final state, loss and, for training, every parameter
gradient with the torch.nn model's in float64, within numerics.TORCH_PARITY["float64"] (the
converted model has to compute what torch.nn computes); then the same in the case's dtype, the one
timed, within that dtype's benchmark tolerance (check.py).

This module imports PyTorch; only the workers of the model contestants and the reference load it.
"""
from __future__ import annotations

import numpy as np
import torch

from ..torch import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, convert
from ..torch.models import CharLM, char_lm_loss, char_lm_train_step
from .grid import CHAR_LM_LAYERS, CHAR_LM_VOCAB, Case
from .workloads import Problem, TorchDeviceWorkload, configure_torch_cuda

LEARNING_RATE = 1e-3   # Adam's, as in bench/char_lm_speed.py

FASTRNN_MODULES = (LSTM, GRU, RNN, LSTMCell, GRUCell, RNNCell)

# The hook that turns the torch.nn model into the fastrnn one (a test replaces it with a wrong one).
convert_model = convert


def char_lm_param_shapes(case: Case) -> dict:
    """CharLM's state_dict names -> shapes for a model case (I = embedding, H = hidden size)."""
    V, E, H, G = CHAR_LM_VOCAB, case.I, case.H, case.gates
    shapes = {"embed.weight": (V, E)}
    for k in range(CHAR_LM_LAYERS):
        inputs = E if k == 0 else H
        shapes.update({f"lstm.weight_ih_l{k}": (G * H, inputs), f"lstm.weight_hh_l{k}": (G * H, H),
                       f"lstm.bias_ih_l{k}": (G * H,), f"lstm.bias_hh_l{k}": (G * H,)})
    shapes.update({"head.weight": (V, H), "head.bias": (V,)})
    return shapes


def make_char_lm_problem(case: Case, seed: int = 0) -> Problem:
    """Deterministic weights and characters for a model case, drawn as PyTorch initialises a CharLM
    (embedding N(0, 1); LSTM and read-out U(-1/sqrt(H), 1/sqrt(H))). The weights depend on the seed
    and the sizes but not on T, so the reference check's shorter problem shares them. x holds the
    (T + 1, N) character ids: inputs x[:-1], targets x[1:]."""
    dtype = np.dtype(case.dtype)
    rng = np.random.default_rng([seed, case.N, case.I, case.H, 2])
    bound = 1.0 / np.sqrt(case.H)
    params = {name: (rng.standard_normal(shape) if name == "embed.weight"
                     else rng.uniform(-bound, bound, size=shape)).astype(dtype)
              for name, shape in char_lm_param_shapes(case).items()}
    data = np.random.default_rng([seed, case.T, case.N, case.I, case.H, 3])
    tokens = data.integers(0, CHAR_LM_VOCAB, size=(case.T + 1, case.N), dtype=np.int64)
    empty = np.zeros((0,), dtype=dtype)
    return Problem(case, params, tokens, empty, empty, empty)


class CharLMWorkload(TorchDeviceWorkload):
    """The char-LM on `device`, plain torch.nn (converted=False, the baseline) or converted to fastrnn.

    Threads: set by the worker process (threads.py), like every other contestant's."""

    def __init__(self, case: Case, params: dict, device: str, converted: bool):
        self.case, self.params, self.device, self.converted = case, params, device, converted
        self.tdevice = torch.device(device)
        if device == "cuda":
            configure_torch_cuda()
        self.model = self.build(getattr(torch, case.dtype))

    def build(self, dtype) -> CharLM:
        """A fresh CharLM with the case's weights in `dtype` on the device, converted if asked."""
        model = CharLM(CHAR_LM_VOCAB, self.case.I, self.case.H, CHAR_LM_LAYERS)
        model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                               for k, v in self.params.items()})
        model = model.to(device=self.tdevice, dtype=dtype)
        if not self.converted:
            return model
        model = convert_model(model)
        if not any(isinstance(m, FASTRNN_MODULES) for m in model.modules()):
            raise RuntimeError("fastrnn.torch.convert left no fastrnn module in the char-LM: the "
                               "'converted' contestant would time torch.nn against itself")
        return model

    def tokens(self, problem: Problem) -> tuple:
        ids = torch.from_numpy(np.ascontiguousarray(problem.x)).to(self.tdevice)
        return ids[:-1], ids[1:]

    def prepare(self, problem: Problem):
        model, (inputs, targets) = self.model, self.tokens(problem)
        if self.case.mode == "training":
            model.train()
            optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
            return lambda: char_lm_train_step(model, optimizer, inputs, targets)
        model.eval()

        def call():
            with torch.no_grad():
                return model(inputs)
        return call

    def outputs(self, problem: Problem, dtype: str = "float64") -> dict:
        """The model's logits, final state and loss, and its parameter gradients when training,
        computed in `dtype` (float64 by default) and returned as float64 host arrays."""
        model, (inputs, targets) = self.build(getattr(torch, dtype)), self.tokens(problem)
        training = self.case.mode == "training"
        model.train(training)
        with torch.set_grad_enabled(training):
            logits, (h_n, c_n) = model(inputs)
            loss = char_lm_loss(logits, targets)
        result = {"logits": logits, "h_n": h_n, "c_n": c_n, "loss": loss}
        if training:
            loss.backward()
            result.update({"grad." + name: p.grad for name, p in model.named_parameters()})
        return {k: v.detach().to("cpu", torch.float64).numpy() for k, v in result.items()}


def char_lm_reference_outputs(problem: Problem) -> dict:
    """The check's oracle for a model case: the torch.nn char-LM in float64 on the CPU."""
    return CharLMWorkload(problem.case, problem.params, "cpu", converted=False).outputs(problem)
