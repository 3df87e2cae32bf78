"""The GEMM floor: the time of a case's matrix products alone, on the same machine, with the same
library every backend of that device calls (NumPy's BLAS on the CPU, cuBLAS through CuPy on the GPU).

A fused kernel still has to do these products, so their time is a physical floor for the whole call:
the report gives each contestant's share of it (floor time / contestant time; 100% means nothing but
the GEMMs is left). The per-step products are timed as the per-step calls they are, because their
small size (N x H by H x G*H) is exactly what makes recurrences slower than one big GEMM.
"""
from __future__ import annotations

from ..devices import array_module
from .grid import Case
from .timing import Budget, CudaEventTimer, HostTimer, Stats, measure

PEAK_SIZE = {"cpu": 2048, "cuda": 8192}


def gemm_plan(case: Case) -> list[tuple[int, int, int, int]]:
    """(count, M, K, N) for each product A(M, K) @ B(K, N) of one timed call.

    Forward: the hoisted input projection (T*N, I) @ (I, G*H) once, then (N, H) @ (H, G*H) per step
    (a step case, driven one step at a time, projects its input every step). Training adds the
    backward: (N, G*H) @ (G*H, H) per step for dh, and after the loop (T*N, G*H) @ (G*H, I) for dx,
    (G*H, T*N) @ (T*N, I) for dW_ih and (G*H, T*N) @ (T*N, H) for dW_hh. A bidirectional case
    runs every product once a direction."""
    T, N, I, H, GH = case.T, case.N, case.I, case.H, case.gates * case.H
    if case.kind == "step":
        return [(T, N, I, GH), (T, N, H, GH)]
    plan = [(1, T * N, I, GH), (T, N, H, GH)]
    if case.mode == "training":
        plan += [(T, N, GH, H), (1, T * N, GH, I), (1, GH, T * N, I), (1, GH, T * N, H)]
    return [(count * case.directions, M, K, N_) for count, M, K, N_ in plan]


def plan_flops(plan) -> float:
    return float(sum(2.0 * count * M * K * N for count, M, K, N in plan))


def _timer(device: str):
    return CudaEventTimer("cupy") if device == "cuda" else HostTimer()


def gemm_floor_call(case: Case, device: str):
    """(fn, timer): fn runs all of case's GEMMs back to back into preallocated outputs."""
    xp = array_module(device)
    rng = xp.random.default_rng(0) if hasattr(xp.random, "default_rng") else xp.random
    operands = []
    for count, M, K, N in gemm_plan(case):
        a = rng.random((M, K)).astype(case.dtype)
        b = rng.random((K, N)).astype(case.dtype)
        operands.append((count, a, b, xp.empty((M, N), dtype=case.dtype)))

    def run():
        for count, a, b, out in operands:
            for _ in range(count):
                xp.matmul(a, b, out=out)

    return run, _timer(device)


def peak_gemm(device: str, dtype: str, budget: Budget) -> dict:
    """The device's GEMM rate on one large square product, from its fastest sample (a peak, which
    noise can only lower): {"device", "dtype", "n", "gflops", "time"}. Runs in the GEMM floor's
    worker process."""
    n = PEAK_SIZE[device]
    xp = array_module(device)
    a = xp.ones((n, n), dtype=dtype)
    b = xp.ones((n, n), dtype=dtype)
    out = xp.empty((n, n), dtype=dtype)
    fn, timer = (lambda: xp.matmul(a, b, out=out)), _timer(device)
    timer(fn, 1)
    stats = Stats.from_samples(measure(fn, timer, budget)[0])
    return {"device": device, "dtype": dtype, "n": n, "gflops": 2.0 * n ** 3 / stats.min / 1e9,
            "time": stats.to_dict()}
