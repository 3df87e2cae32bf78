"""fastrnn.torch and torch's OpenMP workers: before a converted layer's kernels run on two or more
threads, the workers torch's last parallel op left spinning are let go
(threads.release_idle_openmp_threads), so that they do not share the cores with fastrnn's thread
team; torch starts new ones at its next parallel op, with its thread count unchanged."""
from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

import fastrnn.torch as frt  # noqa: E402
import fastrnn.torch._stack as stack  # noqa: E402
from fastrnn import threads  # noqa: E402

LIBGOMP = any(os.path.basename(p).startswith("libgomp") for p in threads._loaded_libraries())


def _threads_now() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.fixture
def two_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _parallel_torch_op():
    a = torch.ones(512, 512)
    return (a @ a)[0, 0].item()


@pytest.mark.skipif(not LIBGOMP or not os.path.isdir("/proc/self/task"),
                    reason="torch here does not run on GNU OpenMP (libgomp), or no /proc")
def test_idle_openmp_workers_are_let_go_and_come_back(two_torch_threads):
    assert _parallel_torch_op() == 512.0
    with_workers = _threads_now()
    threads.release_idle_openmp_threads()
    assert _threads_now() == with_workers - 1, "torch's one idle worker must have been let go"
    assert _parallel_torch_op() == 512.0                   # torch works on, with a new worker
    assert _threads_now() == with_workers
    assert torch.get_num_threads() == 2
    threads.release_idle_openmp_threads()
    threads.release_idle_openmp_threads()                  # with no idle pool: nothing to do


@pytest.mark.parametrize("T, frees", [(3, False), (200, True)])
def test_converted_layers_free_the_cores_for_long_calls_only(monkeypatch, T, frees):
    """Forward and backward of a layer of at least FREE_CORES_FROM_FLOPS let the workers go first;
    shorter calls, where starting new workers would cost more than the spinning, do not."""
    monkeypatch.setattr(threads, "get_num_threads", lambda: 2)
    calls = []
    monkeypatch.setattr(threads, "release_idle_openmp_threads", lambda: calls.append(1))
    lstm = frt.LSTM(64, 128)
    x = torch.randn(T, 8, 64, requires_grad=True)
    out, _ = lstm(x)
    assert len(calls) == (1 if frees else 0)
    out.sum().backward()
    assert len(calls) == (2 if frees else 0)
    assert (2.0 * T * 8 * 4 * 128 * (64 + 128) >= stack.FREE_CORES_FROM_FLOPS) == frees


def test_one_thread_leaves_torch_alone(monkeypatch):
    monkeypatch.setattr(threads, "get_num_threads", lambda: 1)
    calls = []
    monkeypatch.setattr(threads, "release_idle_openmp_threads", lambda: calls.append(1))
    frt.GRU(64, 128)(torch.randn(200, 8, 64))
    assert not calls
