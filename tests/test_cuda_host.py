"""Host checks of the CUDA backend's arithmetic, no GPU needed.

The bodies of the pointwise step kernels (kernels/pointwise.cuh) are compiled with g++ through
tests/cuda_host_shim.h and driven by the backend's own layer algorithm (fastrnn/gpu/_layer.py) with NumPy
GEMMs in place of cuBLAS.  That runs on the CPU, exactly as written: the cell arithmetic and gate order,
the bias handling, the length masking and reverse-time indexing, the step-ordered buffers, the gather of
x and the scatter of dx, the backward GEMMs and the workspace reuse.  Compared with the NumPy reference
(the spec) forward and backward.

Not covered here (needs a GPU, see tests/test_gpu_cupy.py): CuPy's launch of the kernels, cuBLAS, CUDA
graph capture, the persistent kernel (its threads cooperate) and the device libm's last-ulp differences.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fastrnn.cells import CELLS
from fastrnn.contract import BackwardRequest
from fastrnn.gpu import _layer, _source
from fastrnn.numerics import CUDA_HOST_VS_REFERENCE as TOL
from fastrnn.numerics import relative_error
from fastrnn.reference import KERNELS as REF

from support import forward_request, named, step_request

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) on this machine: host check of the CUDA arithmetic skipped")
    so = tmp_path_factory.mktemp("cuda_host") / "frnn_host.so"
    cmd = [cxx, "-std=c++17", "-O2", "-fno-fast-math", "-ffp-contract=off", "-shared", "-fPIC",
           "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas", f"-I{_source.kernel_dir()}", f"-I{HERE}",
           str(HERE / "cuda_host_kernels.cpp"), "-o", str(so)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"host build of the kernels failed:\n{' '.join(cmd)}\n{res.stderr}"
    return ctypes.CDLL(str(so))


def _ptr(a):
    if a is None:
        return None
    assert a.flags.c_contiguous, "kernel buffers must be C-contiguous"
    return ctypes.c_void_p(a.ctypes.data)


class HostOps:
    """The ops interface of fastrnn.gpu._layer on the CPU: NumPy GEMMs, host-compiled kernel bodies."""

    xp = np

    def __init__(self, lib):
        self.lib = lib
        self.pool = _layer.WorkspacePool()
        self.loops_run = 0

    def gemm(self, a, b, out, trans_a, trans_b):
        out[...] = (a.T if trans_a else a) @ (b.T if trans_b else b)

    def _fn(self, kind, cell, dtype):
        return getattr(self.lib, f"host_{kind}_step_{cell.name}_{'f32' if dtype == np.float32 else 'f64'}")

    def fwd_step(self, cell, N, H, T, s, reverse, lengths, gx, gh, b_ih, b_hh, h_prev, c_prev,
                 h_next, c_next, out, saved):
        fn = self._fn("fwd", cell, gx.dtype)
        fn(ctypes.c_int(N), ctypes.c_int(H), ctypes.c_int(T), ctypes.c_int(s), ctypes.c_int(reverse),
           *map(_ptr, (lengths, gx, gh, b_ih, b_hh, h_prev, c_prev, h_next, c_next, out, saved)))

    def bwd_step(self, cell, N, H, T, s, reverse, lengths, saved, h_prev, h_next, c_prev, c_next,
                 dout, dh_gemm, dh_direct, dc, dgi, dgh):
        fn = self._fn("bwd", cell, h_prev.dtype)
        fn(ctypes.c_int(N), ctypes.c_int(H), ctypes.c_int(T), ctypes.c_int(s), ctypes.c_int(reverse),
           *map(_ptr, (lengths, saved, h_prev, h_next, c_prev, c_next, dout, dh_gemm, dh_direct, dc,
                       dgi, dgh)))

    def workspace(self, key, factory):
        return self.pool.acquire(key, factory)

    def run_loop(self, ws, tag, fn):
        self.loops_run += 1
        fn()


def _case(cell, T, N, I, H, dtype, bias, lengths, rng):
    G = cell.gates
    u = lambda *shape: rng.uniform(-0.8, 0.8, size=shape)  # noqa: E731
    args = dict(x=u(T, N, I), h0=u(N, H), c0=u(N, H) if cell.has_cell_state else None,
                w_ih=u(G * H, I), w_hh=u(G * H, H),
                b_ih=u(G * H) if bias else None, b_hh=u(G * H) if bias else None)
    cast = {k: (None if v is None else v.astype(dtype)) for k, v in args.items()}
    lens = None if lengths is None else np.asarray(lengths, dtype=np.int32)
    return args, cast, lens


def _run_both(ops, cell, T, N, I, H, dtype, bias, lengths, reverse, seed):
    rng = np.random.default_rng(seed)
    args64, args, lens = _case(cell, T, N, I, H, dtype, bias, lengths, rng)
    # the reference runs in float64 on the dtype-rounded inputs
    ref_in = {k: (None if v is None else v.astype(np.float64)) for k, v in args.items()}
    ref = REF[cell.name]
    options = dict(lengths=lens, reverse=reverse, training=True)
    r_fwd = ref.forward(forward_request(cell, ref_in, **options))
    o_fwd = _layer.forward(ops, forward_request(cell, args, **options))
    dout = rng.standard_normal((T, N, H))
    dhn = rng.standard_normal((N, H))
    dcn = rng.standard_normal((N, H)) if cell.has_cell_state else None
    r_grads = ref.backward(BackwardRequest(cell=cell, cache=r_fwd.cache, dout=dout, dh_n=dhn, dc_n=dcn))
    o_grads = _layer.backward(ops, BackwardRequest(
        cell=cell, cache=o_fwd.cache, dout=dout.astype(dtype), dh_n=dhn.astype(dtype),
        dc_n=None if dcn is None else dcn.astype(dtype)))
    ours, theirs = {**named(o_fwd), **named(o_grads)}, {**named(r_fwd), **named(r_grads)}
    return {name: (ours[name], theirs[name]) for name in theirs if name != "cache"}


SHAPES = [  # T, N, I, H, lengths
    (1, 1, 3, 5, None),
    (6, 3, 4, 7, None),
    (7, 4, 5, 33, [7, 3, 1, 5]),
    (5, 2, 6, 4, [2, 5]),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}N{}I{}H{}{}".format(*s[:4], "L" if s[4] else ""))
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_layer_matches_reference(host_lib, cell_name, shape, reverse, dtype):
    cell = CELLS[cell_name]
    T, N, I, H, lengths = shape
    ops = HostOps(host_lib)
    for bias in (True, False):
        res = _run_both(ops, cell, T, N, I, H, np.dtype(dtype).type, bias, lengths, reverse, seed=T * 100 + H)
        report = []
        for name, (ours, ref) in res.items():
            if ref is None:
                assert ours is None, f"{name}: expected None"
                continue
            assert ours.dtype == np.dtype(dtype), f"{name} has dtype {ours.dtype}, expected {dtype}"
            assert ours.shape == ref.shape, f"{name} shape {ours.shape} != {ref.shape}"
            report.append((name, relative_error(ours, ref)))
        worst = max(e for _, e in report)
        msg = ", ".join(f"{n} {e:.1e}" for n, e in report)
        print(f"\n{cell_name} {shape} reverse={reverse} {dtype} bias={bias}: {msg}")
        assert worst <= TOL[dtype], f"{cell_name} vs reference (bias={bias}): {msg}"


def test_padding_is_zero_and_not_computed(host_lib):
    """Outputs past a row's length are exactly 0, and the held state is bit-identical."""
    cell = CELLS["lstm"]
    ops = HostOps(host_lib)
    res = _run_both(ops, cell, 6, 3, 2, 5, np.float64, True, [6, 2, 4], True, seed=3)
    out = res["out"][0]
    assert np.all(out[2:, 1] == 0) and np.all(out[4:, 2] == 0)
    dx = res["dx"][0]
    assert np.all(dx[2:, 1] == 0) and np.all(dx[4:, 2] == 0)


def test_workspace_reuse_does_not_corrupt_a_pending_backward(host_lib):
    """Two training forwards of the same shape before either backward (two stacked layers) must hold two
    workspaces; after the caches die, the workspaces are reused by later calls."""
    cell = CELLS["gru"]
    ops = HostOps(host_lib)
    rng = np.random.default_rng(0)
    T, N, I, H = 4, 2, 3, 3
    _, a, _ = _case(cell, T, N, I, H, np.float64, True, None, rng)
    _, b, _ = _case(cell, T, N, I, H, np.float64, True, None, rng)
    fa = _layer.forward(ops, forward_request(cell, a, training=True))
    fb = _layer.forward(ops, forward_request(cell, b, training=True))
    assert fa.cache.lease.ws is not fb.cache.lease.ws
    dout = rng.standard_normal((T, N, H))
    dh = np.zeros((N, H))
    ga = _layer.backward(ops, BackwardRequest(cell=cell, cache=fa.cache, dout=dout, dh_n=dh))
    ra = REF["gru"].forward(forward_request(cell, a, training=True))
    rga = REF["gru"].backward(BackwardRequest(cell=cell, cache=ra.cache, dout=dout, dh_n=dh))
    for ours, theirs in zip(named(ga).values(), named(rga).values()):
        if theirs is not None:
            assert relative_error(ours, theirs) <= TOL["float64"]
    ws_a = fa.cache.lease.ws
    del fa, ga
    again = _layer.forward(ops, forward_request(cell, a, training=True))
    assert again.cache.lease.ws is ws_a, "a released workspace should be reused"


def test_step_matches_one_step_forward(host_lib):
    ops = HostOps(host_lib)
    rng = np.random.default_rng(1)
    for name, cell in CELLS.items():
        _, a, _ = _case(cell, 1, 3, 4, 6, np.float64, True, None, rng)
        step = _layer.step(ops, step_request(cell, a))
        whole = REF[name].forward(forward_request(cell, a))
        assert relative_error(step.h, whole.h_n) < 1e-14, name
        if cell.has_cell_state:
            assert relative_error(step.c, whole.c_n) < 1e-14


def test_nan_propagates(host_lib):
    ops = HostOps(host_lib)
    for name, cell in CELLS.items():
        rng = np.random.default_rng(2)
        _, a, _ = _case(cell, 3, 2, 3, 4, np.float32, True, None, rng)
        a["x"][1, 0, 0] = np.nan
        result = _layer.forward(ops, forward_request(cell, a))
        assert np.isnan(result.out[1, 0]).any() and np.isnan(result.h_n[0]).any(), name
        assert not np.isnan(result.out[:, 1]).any(), name


def _blas_gemm(op_a, op_b, m, n, k, a_flat, lda, b_flat, ldb, c_flat, ldc):
    """Column-major BLAS gemm (C = op(A) @ op(B), C m x n) on flat buffers, as cuBLAS reads them."""
    from numpy.lib.stride_tricks import as_strided

    def view(flat, rows, cols, ld):
        return as_strided(flat, shape=(rows, cols), strides=(flat.itemsize, ld * flat.itemsize))

    A = view(a_flat, k, m, lda).T if op_a else view(a_flat, m, k, lda)
    B = view(b_flat, n, k, ldb).T if op_b else view(b_flat, k, n, ldb)
    C = view(c_flat, m, n, ldc)
    C[...] = A @ B


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_arguments_for_cublas(trans_a, trans_b):
    """The row-major -> column-major argument mapping handed to cuBLAS, run through a BLAS emulator."""
    pytest.importorskip("cupy", reason="fastrnn.gpu._cupy_ops imports cupy")
    from fastrnn.gpu._cupy_ops import gemm_arguments
    rng = np.random.default_rng(0)
    M, N, K = 5, 7, 3
    a = rng.standard_normal((K, M) if trans_a else (M, K))
    b = rng.standard_normal((N, K) if trans_b else (K, N))
    out = np.zeros((M, N))
    op1, op2, m, n, k, ld1, ld2, ldc = gemm_arguments(a.shape, b.shape, out.shape, trans_a, trans_b)
    flat_out = out.reshape(-1)
    _blas_gemm(op1, op2, m, n, k, b.reshape(-1), ld1, a.reshape(-1), ld2, flat_out, ldc)
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
    assert np.allclose(out, expected, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError):
        gemm_arguments(a.shape, b.shape, (M + 1, N), trans_a, trans_b)


def _kernel_params(kernel: str) -> list[str]:
    import re
    text = (_source.kernel_dir() / _source.POINTWISE).read_text()
    m = re.search(r"__global__\s+void\s+" + kernel + r"\s*\(([^)]*)\)", text)
    assert m, f"{kernel} not found in {_source.POINTWISE}"
    return [re.split(r"[\s*]+", p.strip())[-1] for p in m.group(1).split(",")]


@pytest.mark.parametrize("kind", ["fwd", "bwd"])
def test_cupy_launch_arguments_follow_the_kernel_signature(kind):
    """CupyOps passes each buffer in the position of the kernel parameter of the same name (the host
    tests above drive the kernel bodies through HostOps, not through CupyOps)."""
    pytest.importorskip("cupy", reason="fastrnn.gpu._cupy_ops imports cupy")
    from fastrnn.gpu import _cupy_ops
    params = _kernel_params(f"{kind}_step")
    ints = {"N": 3, "H": 5, "T_": 7, "s": 2, "reverse": 1}
    bufs = {p: np.zeros(1, dtype=np.int32 if p == "lengths" else np.float32)
            for p in params if p not in ints}
    recorded = []
    ops = object.__new__(_cupy_ops.CupyOps)
    ops.function = lambda unit, name: (lambda grid, block, args: recorded.append(args))
    kwargs = {("T" if k == "T_" else k): v for k, v in {**ints, **bufs}.items()}
    getattr(ops, f"{kind}_step")(CELLS["gru"], **kwargs)
    (args,) = recorded
    _assert_arguments_in_order(params, args, ints, bufs)


def test_results_never_alias_the_workspace(host_lib):
    """Everything handed to the caller is its own array: a later call of the same shape (which reuses
    the pooled workspace, and on a GPU replays a graph into it) must leave earlier results untouched."""
    cell = CELLS["lstm"]
    ops = HostOps(host_lib)
    rng = np.random.default_rng(5)
    T, N, I, H = 4, 3, 2, 5
    for training in (False, True):
        _, a, _ = _case(cell, T, N, I, H, np.float64, True, None, rng)
        _, b, _ = _case(cell, T, N, I, H, np.float64, True, None, rng)
        first = _layer.forward(ops, forward_request(cell, a, training=training))
        results = [first.out, first.h_n, first.c_n]
        kept = [r.copy() for r in results]
        grads = kept_grads = None
        if training:
            dout, dh, dc = (rng.standard_normal(shape) for shape in ((T, N, H), (N, H), (N, H)))
            grads = list(named(_layer.backward(ops, BackwardRequest(
                cell=cell, cache=first.cache, dout=dout, dh_n=dh, dc_n=dc))).values())
            kept_grads = [g.copy() for g in grads]
        del first   # with it dies the cache: its workspace goes back to the pool
        second = _layer.forward(ops, forward_request(cell, b, training=training))
        if training:
            _layer.backward(ops, BackwardRequest(cell=cell, cache=second.cache,
                                                 dout=rng.standard_normal((T, N, H)),
                                                 dh_n=np.zeros((N, H)), dc_n=np.zeros((N, H))))
            for g, k in zip(grads, kept_grads):
                assert np.array_equal(g, k), "a gradient changed under a later backward"
        for r, k in zip(results, kept):
            assert np.array_equal(r, k), f"a result of a training={training} forward changed later"


def _signature(unit: str, kernel: str) -> list[str]:
    import re
    text = (_source.kernel_dir() / unit).read_text()
    m = re.search(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?" + kernel
                  + r"\s*\(([^)]*)\)", text)
    assert m, f"{kernel} not found in {unit}"
    return [re.split(r"[\s*]+", p.strip())[-1] for p in m.group(1).split(",")]


def test_persistent_launch_arguments_follow_the_kernel_signature():
    pytest.importorskip("cupy", reason="fastrnn.gpu._cupy_ops imports cupy")
    from fastrnn.gpu._cupy_ops import persistent_arguments
    params = _signature(_source.PERSISTENT, "persistent_fwd")
    ints = {"N": 3, "H": 5, "T_": 7, "reverse": 1, "smem_bytes": 4096}
    bufs = {p: np.zeros(1, dtype=np.float32) for p in params if p not in ints}
    python_name = {"T_": "T", "smem_bytes": "smem"}
    kwargs = {python_name.get(k, k): v for k, v in {**ints, **bufs}.items()}
    args = persistent_arguments(**kwargs)
    _assert_arguments_in_order(params, args, ints, bufs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_persistent_plan_fits_what_the_kernel_needs(cell_name, dtype):
    """The plan's grid covers every hidden unit with no empty block, and its shared memory holds what
    kernels/persistent.cu requires for the J that kernel derives from that grid (it traps otherwise)."""
    pytest.importorskip("cupy", reason="fastrnn.gpu._cupy_ops imports cupy")
    from fastrnn.gpu import _cupy_ops
    cell = CELLS[cell_name]
    item = np.dtype(dtype).itemsize
    for sms, optin in ((132, 232448), (108, 166912), (7, 49152)):
        ops = object.__new__(_cupy_ops.CupyOps)
        ops.num_sms, ops.smem_optin, ops.cooperative = sms, optin, True
        for N in (1, 2, 3, _source.PERSIST_MAX_N, _source.PERSIST_MAX_N + 1):
            for H in (1, 5, 33, 64, 257, 1024, 2100, 4096, 9000):
                plan = ops.persistent_plan(cell, dtype, N, H)
                if N > _source.PERSIST_MAX_N:
                    assert plan is None
                    continue
                if plan is None:   # only when even the state and the dot products do not fit
                    J = -(-H // min(sms, H))
                    assert (N * H + cell.gates * J * N) * item > optin, (N, H, sms)
                    continue
                grid, smem = plan
                J = -(-H // grid)                     # as the kernel computes it
                assert grid <= sms and (grid - 1) * J < H <= grid * J, (N, H, grid, J)
                assert (N * H + cell.gates * J * N) * item <= smem <= optin, (N, H, grid, smem)


def test_expanded_source_line_markers_point_at_the_right_lines():
    """NVRTC messages name file:line through the #line markers that expand() inserts."""
    import re
    d = _source.kernel_dir()
    for unit in _source.UNITS:
        lines = _source.expand(unit, d).split("\n")
        current, number = None, 0
        checked = 0
        for line in lines:
            m = re.match(r'#line (\d+) "([^"]+)"$', line)
            if m:
                number, current = int(m.group(1)), m.group(2)
                original = (d / current).read_text().split("\n")
                continue
            if line.strip() and not re.match(r"\s*#\s*pragma\s+once", original[number - 1]):
                assert line == original[number - 1], f"{unit}: {current}:{number} is {original[number - 1]!r}"
                checked += 1
            number += 1
        assert checked > 100


def _assert_arguments_in_order(params, args, ints, bufs):
    """Each kernel parameter (by name, in signature order) gets the scalar or buffer of that name."""
    assert len(args) == len(params)
    for name, arg in zip(params, args):
        if name in ints:
            assert isinstance(arg, np.int32) and arg == ints[name], name
        else:
            assert arg is bufs[name], f"parameter {name} does not get the buffer of that name"
