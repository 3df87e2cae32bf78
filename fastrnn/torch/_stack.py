"""The recurrent stack as a ``torch.autograd.Function`` over fastrnn's layer-stack functions.

Forward and backward are ``fastrnn.functional.stack_forward`` / ``stack_backward`` on NumPy or CuPy views
of the tensors (see _arrays.py): no copies on the way in or out. Everything here is time-major:
x (T, N, I), states (L*D, N, H), out (T, N, D*H); the modules do the layout work with torch ops, which
autograd differentiates itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from .. import threads
from ..cells import CellSpec
from ..dispatch import CellKernels
from ..functional import stack_backward, stack_forward
from ._arrays import array_module, on_torch_stream, to_array, to_tensor

WEIGHT_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@dataclass(frozen=True)
class StackPlan:
    """What one call of the stack needs besides tensors.

    weights_per_direction is 4 with bias, 2 without (the flat weight list holds, for each layer and
    then each direction, weight_ih, weight_hh[, bias_ih, bias_hh]). dropout is the probability applied
    to the input of every layer after the first (0 outside training mode). lengths is None or an (N,)
    int32 array on the tensors' device, each in 1..T.
    """

    kern: CellKernels
    cell: CellSpec
    num_layers: int
    num_directions: int
    has_bias: bool
    dropout: float
    lengths: Any
    device: str
    device_index: Optional[int]
    name: str

    def nest(self, flat):
        """weights[layer][direction] = (w_ih, w_hh, b_ih, b_hh) from the flat list (b_* None without
        bias), the layout stack_forward takes."""
        per = 4 if self.has_bias else 2
        nested, i = [], 0
        for _ in range(self.num_layers):
            dirs = []
            for _ in range(self.num_directions):
                group = tuple(flat[i:i + per])
                dirs.append(group if self.has_bias else group + (None, None))
                i += per
            nested.append(dirs)
        return nested

    def flatten_grads(self, grads):
        per = 4 if self.has_bias else 2
        return [g for layer in grads for direction in layer for g in direction[:per]]


def dropout_mask_maker(probability: float, like: torch.Tensor):
    """stack_forward's dropout_mask_fn drawing from torch's generator (torch.manual_seed governs it):
    an inverted-dropout mask, 0 or 1/(1-p), with `like`'s dtype and device; all zeros for p = 1, as
    torch.nn.functional.dropout gives (1/(1-p) would make it NaN)."""
    keep = 1.0 - probability

    def make(shape):
        mask = torch.empty(tuple(shape), dtype=like.dtype, device=like.device)
        if keep == 0.0:
            return to_array(mask.zero_())
        return to_array(mask.bernoulli_(keep).div_(keep))

    return make


# GEMM FLOPs of a forward from which torch's spinning OpenMP workers are let go before it runs
# (about 0.5 ms of work on two cores): letting them go and torch starting new ones at its next
# parallel op costs ~0.1 ms, a loss on shorter calls.
FREE_CORES_FROM_FLOPS = 5e7


def _worth_freeing_cores(plan: StackPlan, x, weights) -> bool:
    """Whether a call of this size on the CPU, on more than one thread, should first let torch's idle
    OpenMP workers go (threads.release_idle_openmp_threads): they spin for milliseconds after each of
    torch's parallel ops, sharing the cores with fastrnn's thread team meanwhile. The forward's GEMM
    FLOPs are 2 * T * N * (the elements of every weight matrix)."""
    if plan.device != "cpu" or threads.get_num_threads() < 2:
        return False
    matrices = sum(w.numel() for w in weights if w.dim() == 2)
    return 2.0 * x.shape[0] * x.shape[1] * matrices >= FREE_CORES_FROM_FLOPS


def tape_may_hold_out(plan: StackPlan, x) -> bool:
    """Whether a training forward's tape may keep the stack's out itself (ForwardResult
    .out_in_cache, no copy), torch then refusing a backward after out was changed in place: only
    where torch.nn's own module refuses it too. Its one-directional LSTM on the CPU in float32 runs
    on oneDNN (unless torch.backends.mkldnn is off), which saves its output; its GRU and RNN, its
    LSTM in float64 or bidirectional, let out be changed before backward, so there fastrnn returns
    a copy of it (functional.stack_forward's private_out)."""
    return (plan.cell.name == "lstm" and plan.device == "cpu" and x.dtype == torch.float32
            and plan.num_directions == 1 and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled)


def _forward_arrays(plan: StackPlan, x, h0, c0, weights, keep_tape: bool,
                    private_out: bool = False):
    if _worth_freeing_cores(plan, x, weights):
        threads.release_idle_openmp_threads()
    xp = array_module(plan.device)
    mask_fn = dropout_mask_maker(plan.dropout, x) if plan.dropout > 0 else None
    with on_torch_stream(plan.device, plan.device_index):
        return stack_forward(plan.kern, plan.cell, plan.nest([to_array(w) for w in weights]),
                             to_array(x), to_array(h0), to_array(c0), plan.lengths, keep_tape,
                             plan.dropout, mask_fn, xp, private_out=private_out)


class RecurrentStack(torch.autograd.Function):
    """out, h_n[, c_n] of the whole stack; gradients for x, h0, c0 and every weight."""

    @staticmethod
    def forward(ctx, plan: StackPlan, x, h0, c0, *weights):
        holds_out = tape_may_hold_out(plan, x)
        out, h_n, c_n, tape = _forward_arrays(plan, x, h0, c0, weights, keep_tape=True,
                                              private_out=not holds_out)
        ctx.plan, ctx.tape = plan, tape
        outputs = (to_tensor(out), to_tensor(h_n))
        # The tape holds views of x, of the weights and, where holds_out, of out: saving them lets
        # torch's version counters refuse a backward after any of them was changed in place.
        ctx.save_for_backward(*weights, x, *((outputs[0],) if holds_out else ()))
        ctx.weight_count = len(weights)
        return outputs if c_n is None else outputs + (to_tensor(c_n),)

    @staticmethod
    def backward(ctx, dout, dh_n, dc_n=None):
        plan = ctx.plan
        if torch.is_grad_enabled():
            raise RuntimeError(
                f"fastrnn.torch.{plan.name} has no double backward: its gradients come from fastrnn's "
                "kernels, which are not themselves differentiable, so a backward with create_graph=True "
                "(a gradient penalty, gradgradcheck) is refused. Use torch.nn."
                f"{plan.name} for the part of the model that needs higher-order gradients.")
        saved = ctx.saved_tensors   # reading them checks the version counters
        xp = array_module(plan.device)
        grads_in = [to_array(g) for g in (dout, dh_n, dc_n)]
        if _worth_freeing_cores(plan, dout, saved[:ctx.weight_count]):
            threads.release_idle_openmp_threads()
        with on_torch_stream(plan.device, plan.device_index):
            dx, dh0, dc0, grads = stack_backward(plan.kern, plan.cell, ctx.tape, *grads_in, xp)
        weight_grads = [to_tensor(g) for g in plan.flatten_grads(grads)]
        return (None, to_tensor(dx), to_tensor(dh0), to_tensor(dc0), *weight_grads)


def run_stack(plan: StackPlan, x, h0, c0, weights):
    """(out, h_n, c_n) of the stack: through RecurrentStack when autograd needs it, else the inference
    forward, which keeps nothing for backward (the kernels run with training=False) but still applies
    plan.dropout, as torch.nn does for a module in training mode under torch.no_grad()."""
    if needs_autograd((x, h0, c0) + tuple(weights)):
        results = RecurrentStack.apply(plan, x, h0, c0, *weights)
        return results if len(results) == 3 else (results[0], results[1], None)
    out, h_n, c_n, _ = _forward_arrays(plan, x, h0, c0, weights, keep_tape=False)
    return to_tensor(out), to_tensor(h_n), to_tensor(c_n)


def needs_autograd(tensors) -> bool:
    """Whether a backward can follow a forward over `tensors`: grad mode is on (so not under
    torch.no_grad() or torch.inference_mode()) and one of them requires grad."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
