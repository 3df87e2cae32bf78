"""GPU tests of the "cupy" backend (marker `gpu`; skipped, with the reason, where it cannot run).

Layer level, against the NumPy reference run in float64 on the same dtype-rounded inputs: forward and
every gradient, for every cell, both dtypes, lengths, reverse, bias/no bias, through each execution path
the backend has (launch by launch, CUDA graph capture and replay, the persistent inference kernel).
Module level, against torch.nn on cuDNN when torch has CUDA.  The generic registry-generated suite runs
the backend through the public modules on top of this.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastrnn.cells import CELLS
from fastrnn.contract import BackwardRequest
from fastrnn.numerics import TORCH_PARITY, relative_error, vs_reference
from fastrnn.reference import KERNELS as REF

from support import forward_request, named, step_request

pytestmark = pytest.mark.gpu

FORWARD_KEYS = ("out", "h_n", "c_n")


@pytest.fixture(scope="module")
def cp():
    import fastrnn.gpu as gpu
    reason = gpu.unavailable_reason()
    if reason is not None:
        pytest.skip(f"backend 'cupy' unavailable: {reason}")
    import cupy
    return cupy


@pytest.fixture
def paths(monkeypatch):
    """Select one execution path of the backend through its environment switches."""
    def select(graphs: bool, persistent: bool):
        monkeypatch.setenv("FASTRNN_CUDA_GRAPHS", "1" if graphs else "0")
        monkeypatch.setenv("FASTRNN_CUDA_PERSISTENT", "1" if persistent else "0")
    return select


def _inputs(cell, T, N, I, H, dtype, bias, seed):
    rng = np.random.default_rng(seed)
    G = cell.gates
    u = lambda *s: rng.uniform(-0.8, 0.8, size=s).astype(dtype)  # noqa: E731
    return dict(x=u(T, N, I), h0=u(N, H), c0=u(N, H) if cell.has_cell_state else None,
                w_ih=u(G * H, I), w_hh=u(G * H, H), b_ih=u(G * H) if bias else None,
                b_hh=u(G * H) if bias else None), rng


def _to(cp, d):
    return {k: (None if v is None else cp.asarray(v)) for k, v in d.items()}


def _ref64(d):
    return {k: (None if v is None else v.astype(np.float64)) for k, v in d.items()}


def _call(kern, cell, a, lengths, reverse, training):
    return kern.forward(forward_request(cell, a, lengths=lengths, reverse=reverse, training=training))


def _backward(kern, cell, cache, dout, dhn, dcn):
    return kern.backward(BackwardRequest(cell=cell, cache=cache, dout=dout, dh_n=dhn, dc_n=dcn))


def _check(name, ours, ref, dtype, where):
    if ref is None:
        assert ours is None, f"{name} should be None ({where})"
        return
    assert ours.dtype == np.dtype(dtype), f"{name}: dtype {ours.dtype} ({where})"
    err = relative_error(ours, ref)
    tol = vs_reference("cupy", dtype)
    assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e} ({where})"


def _check_all(names, ours, ref, dtype, where):
    """_check for each of `names`, fields of the contract results `ours` and `ref`."""
    ours, ref = named(ours), named(ref)
    for name in names:
        _check(name, ours[name], ref[name], dtype, where)


SHAPES = [  # T, N, I, H, lengths
    (1, 1, 3, 5, None),
    (9, 4, 6, 33, None),
    (9, 4, 6, 33, [9, 4, 1, 6]),
    (5, 16, 8, 64, None),
    (12, 3, 7, 130, [12, 12, 5]),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}N{}I{}H{}{}".format(*s[:4], "L" if s[4] else ""))
@pytest.mark.parametrize("cell_name", list(CELLS))
@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "graphs"])
def test_training_parity_with_reference(cp, paths, graphs, cell_name, shape, reverse, dtype):
    """Forward + backward three times on one shape with fresh values each time: with graphs on, the
    first run is eager, the second captures, the third replays, and each must see its own inputs."""
    import fastrnn.gpu as gpu
    paths(graphs, persistent=False)
    cell = CELLS[cell_name]
    T, N, I, H, lengths = shape
    lens_np = None if lengths is None else np.asarray(lengths, np.int32)
    for rep in range(3):
        for bias in (True, False):
            a, rng = _inputs(cell, T, N, I, H, dtype, bias, seed=rep * 7 + H)
            r = _ref64(a)
            ref = _call(REF[cell_name], cell, r, lens_np, reverse, True)
            ours = _call(gpu.KERNELS[cell_name], cell, _to(cp, a),
                         None if lens_np is None else cp.asarray(lens_np), reverse, True)
            where = f"{cell_name} {shape} reverse={reverse} bias={bias} graphs={graphs} run {rep}"
            _check_all(FORWARD_KEYS, ours, ref, dtype, where)
            dout = rng.standard_normal((T, N, H))
            dhn = rng.standard_normal((N, H))
            dcn = rng.standard_normal((N, H)) if cell.has_cell_state else None
            rg = _backward(REF[cell_name], cell, ref.cache, dout, dhn, dcn)
            og = _backward(gpu.KERNELS[cell_name], cell, ours.cache, cp.asarray(dout.astype(dtype)),
                           cp.asarray(dhn.astype(dtype)),
                           None if dcn is None else cp.asarray(dcn.astype(dtype)))
            _check_all(named(rg), og, rg, dtype, where)
    if graphs:   # a failed capture falls back to eager with only a warning: that must not pass here
        from fastrnn.gpu import _cupy_ops
        assert _cupy_ops.ops().graphs_failed is None, _cupy_ops.ops().graphs_failed


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell_name", list(CELLS))
@pytest.mark.parametrize("N,H,lengths", [(1, 64, None), (4, 257, [7, 2, 11, 5]), (8, 1024, None),
                                         (2, 2100, [11, 6])])
@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "steps"])
def test_inference_parity_with_reference(cp, paths, persistent, N, H, lengths, cell_name, reverse, dtype):
    """Inference, including the persistent kernel (W_hh slice on chip for small H; streamed from L2 where
    it does not fit: H = 2100, and H = 1024 in float64 on a 132-SM H100), against the reference."""
    import fastrnn.gpu as gpu
    paths(graphs=True, persistent=persistent)
    cell = CELLS[cell_name]
    T, I = 11, 16
    lens_np = None if lengths is None else np.asarray(lengths, np.int32)
    if persistent:   # the persistent kernel must really run for these shapes, not fall back silently
        from fastrnn.gpu import _cupy_ops
        ops = _cupy_ops.ops()
        plan = ops.persistent_plan(cell, dtype, N, H)
        assert plan is not None and ops._persistent_kernel(cell, dtype, *plan) is not None
    for rep in range(3):
        a, _ = _inputs(cell, T, N, I, H, dtype, True, seed=rep)
        a["w_hh"] *= np.asarray(3.0 / np.sqrt(H), dtype=dtype)   # keep the gates off saturation at large H
        ref = _call(REF[cell_name], cell, _ref64(a), lens_np, reverse, False)
        ours = _call(gpu.KERNELS[cell_name], cell, _to(cp, a),
                     None if lens_np is None else cp.asarray(lens_np), reverse, False)
        assert ours.cache is None
        where = f"{cell_name} N={N} H={H} reverse={reverse} persistent={persistent} run {rep}"
        _check_all(FORWARD_KEYS, ours, ref, dtype, where)


def test_persistent_kernel_is_used_for_small_batches(cp, paths):
    from fastrnn.gpu import _cupy_ops
    paths(graphs=True, persistent=True)
    ops = _cupy_ops.ops()
    for cell in CELLS.values():
        for dtype in ("float32", "float64"):
            for N in (1, 4):
                assert ops.persistent_plan(cell, dtype, N, 1024) is not None, (cell.name, dtype, N)
    assert ops.persistent_plan(CELLS["lstm"], "float32", 64, 1024) is None


@pytest.mark.parametrize("cell_name", list(CELLS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_matches_reference(cp, cell_name, dtype):
    import fastrnn.gpu as gpu
    cell = CELLS[cell_name]
    a, _ = _inputs(cell, 1, 5, 6, 40, dtype, True, seed=4)
    ref = _call(REF[cell_name], cell, _ref64(a), None, False, False)
    step = gpu.KERNELS[cell_name].step(step_request(cell, _to(cp, a)))
    _check("h1", step.h, ref.h_n, dtype, cell_name)
    _check("c1", step.c, ref.c_n, dtype, cell_name)


def test_pending_caches_of_the_same_shape_do_not_share_buffers(cp, paths):
    """Two training forwards of the same shape (stacked layers, both directions) before any backward."""
    import fastrnn.gpu as gpu
    paths(graphs=True, persistent=False)
    cell = CELLS["lstm"]
    dtype = "float64"
    runs = []
    for seed in range(3):
        a, rng = _inputs(cell, 6, 3, 4, 20, dtype, True, seed=seed)
        ours = _call(gpu.KERNELS["lstm"], cell, _to(cp, a), None, False, True)
        ref = _call(REF["lstm"], cell, _ref64(a), None, False, True)
        runs.append((ours, ref, rng))
    for ours, ref, rng in reversed(runs):
        dout, dhn, dcn = (rng.standard_normal(s) for s in ((6, 3, 20), (3, 20), (3, 20)))
        og = _backward(gpu.KERNELS["lstm"], cell, ours.cache, cp.asarray(dout), cp.asarray(dhn),
                       cp.asarray(dcn))
        rg = _backward(REF["lstm"], cell, ref.cache, dout, dhn, dcn)
        _check_all(named(rg), og, rg, dtype, "pending caches")


@pytest.mark.parametrize("mode", ["steps", "graphs", "persistent", "training"])
def test_results_survive_later_calls(cp, paths, mode):
    """A caller keeps out, h_n, c_n (and gradients) of call 1 while calls 2 and 3 of the same shape
    replay into the same workspace: what it kept must not change."""
    import fastrnn.gpu as gpu
    paths(graphs=mode != "steps", persistent=mode == "persistent")
    cell = CELLS["lstm"]
    T, N, I, H, dtype = 6, 2, 5, 24, "float64"
    training = mode == "training"
    kept = []
    for seed in range(4):
        a, rng = _inputs(cell, T, N, I, H, dtype, True, seed=seed)
        ours = _call(gpu.KERNELS["lstm"], cell, _to(cp, a), None, False, training)
        results = [ours.out, ours.h_n, ours.c_n]
        if training:
            dout, dhn, dcn = (rng.standard_normal(s) for s in ((T, N, H), (N, H), (N, H)))
            grads = _backward(gpu.KERNELS["lstm"], cell, ours.cache, cp.asarray(dout), cp.asarray(dhn),
                              cp.asarray(dcn))
            results += list(named(grads).values())
        kept.append((results, [r.get() for r in results]))
        del ours
    for i, (results, snapshot) in enumerate(kept):
        for r, snap in zip(results, snapshot):
            assert np.array_equal(r.get(), snap), f"a result of call {i} changed under later calls ({mode})"


def test_calls_from_two_streams(cp, paths):
    """Same shape from two non-blocking streams in turn: the pooled workspace (and its graph) passes
    from one stream to the other without a race."""
    import fastrnn.gpu as gpu
    paths(graphs=True, persistent=False)
    cell = CELLS["gru"]
    T, N, I, H, dtype = 40, 16, 32, 256, "float32"
    streams = [cp.cuda.Stream(non_blocking=True) for _ in range(2)]
    pending = []
    for rep in range(6):
        a, _ = _inputs(cell, T, N, I, H, dtype, True, seed=rep)
        with streams[rep % 2]:
            ours = _call(gpu.KERNELS["gru"], cell, _to(cp, a), None, False, False)
        pending.append((a, ours))
    for s in streams:
        s.synchronize()
    for a, ours in pending:
        ref = _call(REF["gru"], cell, _ref64(a), None, False, False)
        _check_all(("out", "h_n"), ours, ref, dtype, "two streams")


# ---- PyTorch on cuDNN ---------------------------------------------------------------------------------

def _torch_cuda():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here (CPU build or no GPU): cuDNN parity skipped")
    return torch


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_parity_with_torch_cudnn(cp, kind, dtype, bidirectional):
    torch = _torch_cuda()
    import fastrnn as fr
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    T, N, I, H, L = 7, 5, 6, 48, 2
    tdtype = getattr(torch, dtype)
    if kind.startswith("rnn_"):
        tm = torch.nn.RNN(I, H, L, nonlinearity=kind[4:], bidirectional=bidirectional)
        fm = fr.RNN(I, H, L, nonlinearity=kind[4:], bidirectional=bidirectional, dtype=dtype,
                    backend="cupy", device="cuda")
    else:
        tm = getattr(torch.nn, kind.upper())(I, H, L, bidirectional=bidirectional)
        fm = getattr(fr, kind.upper())(I, H, L, bidirectional=bidirectional, dtype=dtype,
                                        backend="cupy", device="cuda")
    tm = tm.to(device="cuda", dtype=tdtype)
    fm.load_state_dict({k: v.detach().cpu().numpy() for k, v in tm.state_dict().items()})
    fm.train()
    rng = np.random.default_rng(0)
    D = 2 if bidirectional else 1
    x = rng.standard_normal((T, N, I)).astype(dtype)
    dout = rng.standard_normal((T, N, D * H)).astype(dtype)
    tx = torch.tensor(x, device="cuda", requires_grad=True)
    tout, _ = tm(tx)
    tout.backward(torch.tensor(dout, device="cuda"))
    out, _ = fm(cp.asarray(x))
    dx, _ = fm.backward(cp.asarray(dout))
    tol = TORCH_PARITY[dtype]
    assert relative_error(out, tout.detach().cpu().numpy()) <= tol
    assert relative_error(dx, tx.grad.cpu().numpy()) <= tol
    for name, p in tm.named_parameters():
        err = relative_error(fm.grads[name], p.grad.cpu().numpy())
        assert err <= tol, f"{kind} {name}: {err:.2e}"
