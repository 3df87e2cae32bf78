"""The two directions of a bidirectional layer side by side, each on a core of its own.

One after the other, each direction's loop splits its hidden units over the thread team (team.py)
and the members meet at a barrier every step. Side by side, the team's first member runs the forward
direction's whole call and the second the reverse direction's, each as a team of one
(team.as_one_member): the same loops (team_loops.py, team_backward.py) with the whole of W_hh packed
in the member's own core and no barrier at all, the input projection and the whole-sequence
gradient GEMMs single-threaded in each member. That wins where the barriers and the thin split
GEMMs cost more than the cores lose by each holding all of W_hh (`fastrnn bench --bidirectional`
on 2 Zen 2 cores, side by side against one after the other: LSTM inference (100,4,128) 1.9-2.0
against 3.1 ms, (100,32,256) 45 against 55 ms, training 130-132 against 158 ms); which of the two a
shape runs is measured on this machine on first use (team_choice.side_by_side).

A training forward that ran side by side leaves each direction's cache with a team layout of one
member; its backward then runs side by side too (backward_pair), or, when the team is busy, one
direction after the other on the calling thread. Batches with rows shorter than the sequence train
one direction after the other (the team loops train full-length batches only).
"""
from __future__ import annotations

from typing import Callable, Optional

from .. import threads
from ..contract import BackwardRequest, ForwardRequest
from . import team, team_choice

MEMBERS = 2     # one a direction
runs = 0        # calls that ran side by side in this process (the tests check that they did)


def run_side_by_side(run: Callable, requests) -> Optional[list]:
    """[run(requests[0]), run(requests[1])] on the team's first two members, each alone; None when
    another call holds the team. run is a cell module's forward or backward."""
    results = [None, None]

    def member_work(member: int, members: int) -> None:
        results[member] = team.as_one_member(lambda: run(requests[member]))

    if not team.try_run(MEMBERS, member_work, ()):
        return None
    global runs
    runs += 1
    return results


def forward_pair(forward: Callable, cell: int, use_relu: bool, first: ForwardRequest,
                 second: ForwardRequest) -> Optional[list]:
    """Both directions' forward(request) side by side where that applies and was measured to win;
    else None (the caller runs them one after the other)."""
    T, N, I = first.x.shape
    if threads.get_num_threads() < MEMBERS or team.unavailable_reason() is not None or team.alone():
        return None
    if first.training and first.lengths is not None and int(first.lengths.min()) < T:
        return None
    H = first.weights.w_hh.shape[1]
    if not team_choice.side_by_side(cell, use_relu, first.training, T, N, I, H, first.x.dtype):
        return None
    return run_side_by_side(forward, (first, second))


def backward_pair(backward: Callable, first: BackwardRequest,
                  second: BackwardRequest) -> Optional[list]:
    """Both directions' backward(request) side by side after a forward that ran so (each cache a
    team layout of one member); else None."""
    layouts = [request.cache.team for request in (first, second)]
    if any(layout is None or layout.members != 1 for layout in layouts) or team.alone():
        return None
    return run_side_by_side(backward, (first, second))
