"""Multi-layer, multi-direction forward and backward on top of one backend's per-layer kernels.

Knows PyTorch's stacking rules (directions concatenated [forward, reverse] on the feature axis, that
concatenation feeding the next layer, dropout between layers when the caller asks for it, state rows
indexed layer * D + direction) and nothing about how a backend computes a layer.

Arrays here are time-major: x (T, N, I), states (L*D, N, H). `weights[layer][direction]` is the tuple
(w_ih, w_hh, b_ih, b_hh) with b_* None when the module has no bias.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from .cells import CellSpec
from .contract import BackwardRequest, CellKernels, ForwardRequest, LayerWeights, normalise_lengths


@dataclass
class StackTape:
    """What a training forward keeps for backward."""

    caches: list          # [layer][direction] -> the backend's cache
    dropout_masks: list   # [layer] -> mask applied to that layer's input (None for layer 0 / no dropout)


def stack_forward(kern: CellKernels, cell: CellSpec, weights, x, h0, c0, lengths, keep_tape: bool,
                  dropout: float, dropout_mask_fn, xp, private_out: bool = False):
    """Run every layer and direction; returns out (T, N, D*H), h_n, c_n (L*D, N, H), tape or None.

    Dropout and the tape are independent: keep_tape asks every layer for what backward needs (the
    kernels run with training=True) and returns it as a StackTape, else the tape is None and the
    kernels keep nothing; dropout > 0 multiplies the input of every layer after the first by
    dropout_mask_fn(shape), an inverted-dropout mask (already scaled by 1/(1-p)) of x's dtype. A
    module in eval mode passes dropout=0; one in training mode under torch.no_grad() passes its
    dropout with keep_tape=False.

    A layer's cache may hold that layer's out (ForwardResult.out_in_cache): the next layer only
    reads it, but the caller gets the last one. private_out=True (the caller's user may change out
    before backward) then returns a copy; the torch adapter, whose saved output refuses an in-place
    change as torch does, passes False.
    """
    num_layers, num_dirs = len(weights), len(weights[0])
    lengths = normalise_lengths(lengths, x)   # once for every layer and direction
    h_n, c_n = [], []
    caches, masks = [], []
    layer_input = x
    for layer in range(num_layers):
        mask = None
        if layer > 0 and dropout > 0:
            mask = dropout_mask_fn(layer_input.shape)
            layer_input = layer_input * mask
        masks.append(mask)
        outs, layer_caches = [], []
        requests = []
        for direction in range(num_dirs):
            row = layer * num_dirs + direction
            w_ih, w_hh, b_ih, b_hh = weights[layer][direction]
            requests.append(ForwardRequest(
                cell=cell, x=layer_input, h0=h0[row], c0=None if c0 is None else c0[row],
                weights=LayerWeights(w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh),
                lengths=lengths, reverse=direction == 1, training=keep_tape))
        out_in_cache = False
        for result in _per_direction(kern.forward, kern.forward_pair, requests):
            out_in_cache = out_in_cache or result.out_in_cache
            outs.append(result.out)
            layer_caches.append(result.cache)
            h_n.append(result.h_n)
            c_n.append(result.c_n)
        caches.append(layer_caches)
        layer_input = outs[0] if num_dirs == 1 else xp.concatenate(outs, axis=2)
    if private_out and out_in_cache and num_dirs == 1:   # (two directions: concatenate copied)
        layer_input = layer_input.copy()
    tape = StackTape(caches, masks) if keep_tape else None
    c_stack = xp.stack(c_n) if cell.has_cell_state else None
    return layer_input, xp.stack(h_n), c_stack, tape


def _per_direction(run, run_pair, requests: list) -> Sequence:
    """run(request) for each direction's request, or run_pair on both directions in one call where
    the backend has it and takes them (it may run them side by side)."""
    if len(requests) == 2 and run_pair is not None:
        both = run_pair(*requests)
        if both is not None:
            return both
    return [run(request) for request in requests]


def stack_backward(kern: CellKernels, cell: CellSpec, tape: StackTape, dout, dh_n, dc_n, xp):
    """BPTT through every layer; returns dx (T, N, I), dh0, dc0 (L*D, N, H) and
    grads[layer][direction] = (dw_ih, dw_hh, db_ih, db_hh)."""
    num_layers, num_dirs = len(tape.caches), len(tape.caches[0])
    hidden = dh_n.shape[-1]
    dh0: list[Any] = [None] * (num_layers * num_dirs)
    dc0: list[Optional[Any]] = [None] * (num_layers * num_dirs)
    grads = [[None] * num_dirs for _ in range(num_layers)]
    d_layer_out = dout
    for layer in range(num_layers - 1, -1, -1):
        dx = None
        requests = []
        for direction in range(num_dirs):
            row = layer * num_dirs + direction
            if num_dirs == 1:
                d_out_dir = d_layer_out
            else:
                d_out_dir = xp.ascontiguousarray(
                    d_layer_out[:, :, direction * hidden:(direction + 1) * hidden])
            requests.append(BackwardRequest(
                cell=cell, cache=tape.caches[layer][direction], dout=d_out_dir, dh_n=dh_n[row],
                dc_n=None if dc_n is None else dc_n[row]))
        for direction, result in enumerate(_per_direction(kern.backward, kern.backward_pair,
                                                          requests)):
            row = layer * num_dirs + direction
            dx = result.dx if dx is None else dx + result.dx
            dh0[row], dc0[row] = result.dh0, result.dc0
            grads[layer][direction] = result.weight_grads
        mask = tape.dropout_masks[layer]
        d_layer_out = dx if mask is None else dx * mask
    dc_stack = xp.stack(dc0) if cell.has_cell_state else None
    return d_layer_out, xp.stack(dh0), dc_stack, grads
