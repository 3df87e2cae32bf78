"""The GPU side of the ops interface of fastrnn.gpu._layer: CuPy RawModules built from kernels/*.cu,
cuBLAS GEMMs called directly (no temporaries, so they can be captured in a CUDA graph), CUDA graphs of
the step loops, and the persistent small-batch inference kernel.

Imported only when the backend runs: it imports CuPy at the top.
"""
from __future__ import annotations

import math
import os
import threading
import warnings

import cupy
import numpy as np

from . import _layer, _source

_NULL = np.uintp(0)
_BLOCK = 256


def _env_on(name: str, default: bool = True) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value not in ("0", "false", "no", "off")


def _arg(a):
    """A kernel argument for a buffer: the array (CuPy passes its data pointer) or a null pointer."""
    if a is None:
        return _NULL
    if not a.flags.c_contiguous:
        raise ValueError("internal error: a CUDA kernel buffer is not C-contiguous")
    return a


def gemm_arguments(a_shape, b_shape, out_shape, trans_a, trans_b):
    """cuBLAS (column-major) arguments computing the row-major out = op(a) @ op(b).

    A row-major matrix read column-major is its transpose, so out^T = op(b)^T @ op(a)^T is asked for:
    b comes first, each operand keeps its own transpose flag, and every leading dimension is the row
    length of the row-major array.  Returns (op_first, op_second, m, n, k, ld_first, ld_second, ldc),
    where first = b and second = a, and op is True for a transpose.
    """
    M, N = out_shape
    K = a_shape[0] if trans_a else a_shape[1]
    if (a_shape[1] if trans_a else a_shape[0]) != M or (b_shape[0] if trans_b else b_shape[1]) != N \
            or (b_shape[1] if trans_b else b_shape[0]) != K:
        raise ValueError(f"internal error: gemm shapes {a_shape}{'^T' if trans_a else ''} @ "
                         f"{b_shape}{'^T' if trans_b else ''} -> {out_shape}")
    return trans_b, trans_a, N, M, K, b_shape[1], a_shape[1], N


def persistent_arguments(N, H, T, reverse, lengths, gx, w_hh, b_ih, b_hh, hbuf, c, out, barrier,
                         smem):
    """The argument tuple of kernels/persistent.cu's persistent_fwd, in its parameter order."""
    return (np.int32(N), np.int32(H), np.int32(T), np.int32(int(reverse)), _arg(lengths), _arg(gx),
            _arg(w_hh), _arg(b_ih), _arg(b_hh), _arg(hbuf), _arg(c), _arg(out), _arg(barrier),
            np.int32(smem))


class CupyOps:
    """One per device."""

    xp = cupy

    def __init__(self, device_id: int):
        self.device_id = device_id
        self.pool = _layer.WorkspacePool()
        self._modules = {}
        self._functions = {}
        self._capture_stream = None
        self._capture_lock = threading.Lock()   # one capture at a time: they share the capture stream
        self._occupancy = {}      # (kernel name, smem bytes) -> resident blocks per SM
        self._dynamic_smem = {}   # kernel name -> the dynamic shared memory it has opted in to
        self.graphs_failed = None   # the reason, once capture has failed on this device
        attr = cupy.cuda.runtime.deviceGetAttribute
        self.num_sms = int(attr(cupy.cuda.runtime.cudaDevAttrMultiProcessorCount, device_id))
        self.smem_optin = int(attr(cupy.cuda.runtime.cudaDevAttrMaxSharedMemoryPerBlockOptin, device_id))
        self.cooperative = bool(attr(cupy.cuda.runtime.cudaDevAttrCooperativeLaunch, device_id))

    # ---- kernels -----------------------------------------------------------------------------------

    def _module(self, unit: str):
        mod = self._modules.get(unit)
        if mod is None:
            mod = cupy.RawModule(code=_source.expand(unit), options=_source.OPTIONS,
                                 name_expressions=_source.name_expressions(unit),
                                 enable_cooperative_groups=(unit == _source.PERSISTENT))
            self._modules[unit] = mod
        return mod

    def function(self, unit: str, name: str):
        fn = self._functions.get(name)
        if fn is None:
            fn = self._module(unit).get_function(name)
            self._functions[name] = fn
        return fn

    def fwd_step(self, cell, N, H, T, s, reverse, lengths, gx, gh, b_ih, b_hh, h_prev, c_prev,
                 h_next, c_next, out, saved):
        fn = self.function(_source.POINTWISE, _source.fwd_step_name(cell.name, gx.dtype.name))
        fn(((N * H + _BLOCK - 1) // _BLOCK,), (_BLOCK,),
           (np.int32(N), np.int32(H), np.int32(T), np.int32(s), np.int32(reverse), _arg(lengths),
            _arg(gx), _arg(gh), _arg(b_ih), _arg(b_hh), _arg(h_prev), _arg(c_prev), _arg(h_next),
            _arg(c_next), _arg(out), _arg(saved)))

    def bwd_step(self, cell, N, H, T, s, reverse, lengths, saved, h_prev, h_next, c_prev, c_next,
                 dout, dh_gemm, dh_direct, dc, dgi, dgh):
        fn = self.function(_source.POINTWISE, _source.bwd_step_name(cell.name, h_prev.dtype.name))
        fn(((N * H + _BLOCK - 1) // _BLOCK,), (_BLOCK,),
           (np.int32(N), np.int32(H), np.int32(T), np.int32(s), np.int32(reverse), _arg(lengths),
            _arg(saved), _arg(h_prev), _arg(h_next), _arg(c_prev), _arg(c_next), _arg(dout),
            _arg(dh_gemm), _arg(dh_direct), _arg(dc), _arg(dgi), _arg(dgh)))

    # ---- cuBLAS ------------------------------------------------------------------------------------

    def gemm(self, a, b, out, trans_a, trans_b):
        """out[...] = op(a) @ op(b), row-major, straight to cuBLAS: no allocation, no synchronisation,
        TF32 only if the user enabled it for CuPy's handle (CUPY_TF32)."""
        from cupy.cuda import cublas, device
        for arr in (a, b, out):
            if not arr.flags.c_contiguous:
                raise ValueError("internal error: a GEMM operand is not C-contiguous")
            # cuBLAS reads raw pointers: a mixed or unsupported dtype would be garbage, not a cast
            if arr.dtype != out.dtype or arr.dtype not in (np.float32, np.float64):
                raise TypeError(f"internal error: GEMM operands {a.dtype}, {b.dtype} -> {out.dtype}")
        op1, op2, m, n, k, ld1, ld2, ldc = gemm_arguments(a.shape, b.shape, out.shape, trans_a, trans_b)
        if a.dtype == np.float32:
            func, one, zero = cublas.sgemm, np.ones(1, np.float32), np.zeros(1, np.float32)
        else:
            func, one, zero = cublas.dgemm, np.ones(1, np.float64), np.zeros(1, np.float64)
        handle = device.get_cublas_handle()
        old_stream = cublas.getStream(handle)
        old_mode = cublas.getPointerMode(handle)
        cublas.setStream(handle, cupy.cuda.get_current_stream().ptr)
        cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
        try:
            func(handle, cublas.CUBLAS_OP_T if op1 else cublas.CUBLAS_OP_N,
                 cublas.CUBLAS_OP_T if op2 else cublas.CUBLAS_OP_N, m, n, k, one.ctypes.data,
                 b.data.ptr, ld1, a.data.ptr, ld2, zero.ctypes.data, out.data.ptr, ldc)
        finally:
            cublas.setPointerMode(handle, old_mode)
            cublas.setStream(handle, old_stream)

    # ---- workspaces and CUDA graphs ----------------------------------------------------------------

    def workspace(self, key, factory):
        lease = self.pool.acquire(key, factory)
        self.claim(lease.ws)
        return lease

    def claim(self, ws):
        """Order the current stream after the last work queued on `ws` from another stream.

        A workspace goes back to the pool as soon as its results are queued for copying out, so the
        next call of the same shape may be issued from a different stream while that work is still
        pending; without this wait it could overwrite the buffers under it."""
        stream = cupy.cuda.get_current_stream()
        last = getattr(ws, "stream", None)
        if last is not None and last.ptr != stream.ptr:
            stream.wait_event(last.record())
        ws.stream = stream

    def run_loop(self, ws, tag, fn):
        """Run a step loop; with graphs on, replay a CUDA graph of it captured on this workspace.

        The first run on a workspace is eager (it loads the kernels and costs no capture for a shape
        seen once); the second captures.  The loop reads and writes only workspace buffers, so the
        graph's baked-in addresses stay valid as long as the workspace lives; inputs were copied in
        on the current stream before, outputs are copied out after."""
        if not _env_on("FASTRNN_CUDA_GRAPHS") or self.graphs_failed or ws.T < 2:
            fn()
            return
        graph = ws.graphs.get(tag)
        if graph is None:
            ws.graphs[tag] = "eager once"
            fn()
            return
        if isinstance(graph, str):
            graph = self._capture(fn)
            if graph is None:
                fn()
                return
            ws.graphs[tag] = graph
        graph.launch(stream=cupy.cuda.get_current_stream())

    def _capture(self, fn):
        try:
            with self._capture_lock:
                if self._capture_stream is None:
                    self._capture_stream = cupy.cuda.Stream(non_blocking=True)
                stream = self._capture_stream
                with stream:
                    stream.begin_capture()
                    try:
                        fn()
                    finally:
                        graph = stream.end_capture()
            return graph
        except Exception as exc:
            self.graphs_failed = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"fastrnn: CUDA graph capture of the step loop failed ({self.graphs_failed}); "
                          "running the steps launch by launch from now on", RuntimeWarning, stacklevel=4)
            return None

    # ---- persistent small-batch inference ----------------------------------------------------------

    def persistent_plan(self, cell, dtype, N, H):
        """(grid, shared-memory bytes) for the persistent kernel, or None when it does not apply."""
        if not _env_on("FASTRNN_CUDA_PERSISTENT") or not self.cooperative or N > _source.PERSIST_MAX_N:
            return None
        item = np.dtype(dtype).itemsize
        G = cell.gates
        grid = min(self.num_sms, H)
        J = math.ceil(H / grid)
        grid = math.ceil(H / J)       # no block without a unit
        base = (N * H + G * J * N) * item
        with_w = base + G * J * H * item
        smem = with_w if with_w <= self.smem_optin else base
        if smem > self.smem_optin:
            return None
        return grid, smem

    def _persistent_kernel(self, cell, dtype, grid, smem):
        """The kernel, ready for `smem` bytes of dynamic shared memory, or None when `grid` blocks of
        it cannot all be resident at once.  CuPy's cooperative launch would otherwise shrink the grid
        (the kernel then traps: its shared memory was sized for this grid) or refuse to launch."""
        name = _source.persistent_name(cell.name, np.dtype(dtype).name)
        fn = self.function(_source.PERSISTENT, name)
        if smem > self._dynamic_smem.get(name, 48 * 1024):
            # above 48 KB a kernel must opt in (cudaFuncSetAttribute); the attribute is a maximum,
            # so it only ever grows
            fn.max_dynamic_shared_size_bytes = smem
            self._dynamic_smem[name] = smem
        per_sm = self._occupancy.get((name, smem))
        if per_sm is None:
            per_sm = cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
                fn.kernel.ptr, _source.PERSIST_THREADS, smem)
            self._occupancy[(name, smem)] = per_sm
        return fn if per_sm * self.num_sms >= grid else None

    def persistent_forward(self, cell, x_step, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse):
        T, N, I = x_step.shape
        H = w_hh.shape[1]
        plan = self.persistent_plan(cell, x_step.dtype, N, H)
        if plan is None:
            return None
        grid, smem = plan
        fn = self._persistent_kernel(cell, x_step.dtype, grid, smem)
        if fn is None:
            return None
        G = cell.gates
        gx = cupy.empty((T, N, G * H), dtype=x_step.dtype)
        self.gemm(x_step.reshape(T * N, I), w_ih, gx.reshape(T * N, G * H), False, True)
        hbuf = cupy.empty((2, N, H), dtype=x_step.dtype)
        hbuf[0] = h0
        c = cupy.array(c0, dtype=x_step.dtype, copy=True) if cell.has_cell_state else None
        out = cupy.zeros((T, N, H), dtype=x_step.dtype) if lengths is not None else \
            cupy.empty((T, N, H), dtype=x_step.dtype)
        barrier = cupy.zeros(2, dtype=cupy.uint32)
        fn((grid,), (_source.PERSIST_THREADS,),
           persistent_arguments(N, H, T, reverse, lengths, gx, w_hh, b_ih, b_hh, hbuf, c, out, barrier,
                                smem),
           shared_mem=smem)
        return out, hbuf[T % 2].copy(), c


_lock = threading.Lock()
_per_device: dict[int, CupyOps] = {}


def ops() -> CupyOps:
    device_id = cupy.cuda.runtime.getDevice()
    found = _per_device.get(device_id)
    if found is None:
        with _lock:
            found = _per_device.setdefault(device_id, CupyOps(device_id))
    return found
