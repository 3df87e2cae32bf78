"""The timed calls: one case run by a fastrnn backend, by PyTorch, or as its GEMMs alone (the floor), on
the same weights and inputs.

A Problem holds the data of one case (parameters under PyTorch's names, input, output gradient) on
the host; every contestant loads the same Problem, so their numbers are comparable and their outputs
can be checked against the NumPy reference. A Workload is one contestant bound to one case:

    outputs(problem) -> {name: float64 host array}   what is compared with the reference
    prepare(problem) -> fn                           fn() is exactly one timed call
    timer()                                          how to time fn on this device

FAMILIES maps a contestant's family (backends.Contestant.family) to its Workload class; a new kind of
contestant is one class here and one entry there. The char-LM model cases' workload lives in
model_workloads.py (it needs PyTorch, loaded only by the workers that run it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..cells import CELLS
from ..devices import array_module, to_host
from .backends import REFERENCE
from .floor import gemm_floor_call
from .grid import Case
from .timing import CudaEventTimer, HostTimer, Timer


@dataclass
class Problem:
    case: Case
    params: dict            # PyTorch names -> arrays of the case's dtype
    x: np.ndarray           # (T, N, I); for a model case the (T + 1, N) character ids
    dout: np.ndarray        # (T, N, D*H): gradient of `out` for training cases (D directions)
    h0: np.ndarray          # (N, H) initial state of step cases (layers start from zeros)
    c0: np.ndarray          # (N, H)


def param_names(case: Case) -> list[str]:
    suffixes = [""] if case.kind != "layer" else ["_l0", "_l0_reverse"][:case.directions]
    return [k + suffix for suffix in suffixes for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def make_problem(case: Case, seed: int = 0) -> Problem:
    """Deterministic data for `case`: PyTorch's default init U(-1/sqrt(H), 1/sqrt(H)) for the
    weights, U(-1, 1) inputs, standard normal output gradients. The parameters depend on the seed and
    the sizes but not on T, so a shorter problem for the reference check shares the weights. A model
    case's problem is model_workloads.make_char_lm_problem's."""
    if case.kind == "model":
        from .model_workloads import make_char_lm_problem

        return make_char_lm_problem(case, seed)
    dtype = np.dtype(case.dtype)
    rng = np.random.default_rng([seed, case.N, case.I, case.H])
    shapes = CELLS[case.cell].weight_shapes(case.I, case.H)
    bound = 1.0 / np.sqrt(case.H)
    params = {}
    for name in param_names(case):
        kind = name.removesuffix("_reverse").removesuffix("_l0")
        params[name] = rng.uniform(-bound, bound, size=shapes[kind]).astype(dtype)
    h0 = rng.uniform(-0.5, 0.5, size=(case.N, case.H)).astype(dtype)
    c0 = rng.uniform(-0.5, 0.5, size=(case.N, case.H)).astype(dtype)
    data = np.random.default_rng([seed, case.T, case.N, case.I, case.H, 1])
    x = data.uniform(-1.0, 1.0, size=(case.T, case.N, case.I)).astype(dtype)
    dout = data.standard_normal(size=(case.T, case.N, case.directions * case.H)).astype(dtype)
    return Problem(case, params, x, dout, h0, c0)


class Workload:
    device = "cpu"
    checked = True   # whether outputs() is compared with the reference before timing

    def outputs(self, problem: Problem) -> dict:
        raise NotImplementedError

    def prepare(self, problem: Problem) -> Callable[[], object]:
        raise NotImplementedError

    def timer(self) -> Timer:
        return HostTimer()

    def sync(self) -> None:
        """Wait for the device to finish (for host-side timers such as pytest-benchmark's)."""


# -- fastrnn --------------------------------------------------------------------------------------

class FastrnnWorkload(Workload):
    """A fastrnn module on one backend, built through the public API exactly as a user would."""

    def __init__(self, case: Case, params: dict, backend: str, device: str,
                 dtype: Optional[str] = None):
        import fastrnn

        self.case = case
        self.device = device
        self.dtype = np.dtype(dtype or case.dtype)
        cls = getattr(fastrnn, case.module_name)
        kwargs = dict(dtype=self.dtype.name, backend=backend, device=device)
        if case.bidirectional:
            kwargs["bidirectional"] = True
        if case.cell.startswith("rnn_"):
            kwargs["nonlinearity"] = case.cell.removeprefix("rnn_")
        self.module = cls(case.I, case.H, **kwargs)
        self.module.load_state_dict({k: np.asarray(v, dtype=self.dtype) for k, v in params.items()})
        self.module.train(case.mode == "training")
        self.xp = array_module(device)

    def _put(self, a):
        return self.xp.asarray(np.asarray(a, dtype=self.dtype))

    def _host(self, a):
        return np.asarray(to_host(a), dtype=np.float64)

    def timer(self) -> Timer:
        if self.device == "cuda":
            return CudaEventTimer("cupy")
        return HostTimer()

    def sync(self) -> None:
        if self.device == "cuda":
            self.xp.cuda.get_current_stream().synchronize()

    def prepare(self, problem: Problem):
        m, case = self.module, self.case
        x = self._put(problem.x)
        if case.kind == "step":
            xs = [x[t] for t in range(case.T)]
            h0, c0 = self._put(problem.h0), self._put(problem.c0)
            if CELLS[case.cell].has_cell_state:
                def call():
                    state = (h0, c0)
                    for xt in xs:
                        state = m(xt, state)
                    return state
            else:
                def call():
                    h = h0
                    for xt in xs:
                        h = m(xt, h)
                    return h
            return call
        if case.mode == "training":
            dout = self._put(problem.dout)

            def call():
                m(x)
                return m.backward(dout)
            return call
        return lambda: m(x)

    def outputs(self, problem: Problem) -> dict:
        m, case = self.module, self.case
        has_c = CELLS[case.cell].has_cell_state
        if case.kind == "step":
            h, c = self._put(problem.h0), self._put(problem.c0)
            hs = []
            for t in range(case.T):
                if has_c:
                    h, c = m(self._put(problem.x[t]), (h, c))
                else:
                    h = m(self._put(problem.x[t]), h)
                hs.append(self._host(h))
            result = {"out": np.stack(hs), "h_n": hs[-1]}
            if has_c:
                result["c_n"] = self._host(c)
            return result
        out, state = m(self._put(problem.x))
        h_n, c_n = state if has_c else (state, None)
        result = {"out": self._host(out), "h_n": self._host(h_n)}
        if has_c:
            result["c_n"] = self._host(c_n)
        if case.mode == "training":
            dx, dhx = m.backward(self._put(problem.dout))
            dh0, dc0 = dhx if has_c else (dhx, None)
            result["dx"], result["dh0"] = self._host(dx), self._host(dh0)
            if has_c:
                result["dc0"] = self._host(dc0)
            for name, g in m.grads.items():
                result["grad." + name] = self._host(g)
        return result


def reference_outputs(problem: Problem) -> dict:
    """The NumPy reference in float64 on the problem's (possibly float32) data: the oracle. For a model
    case, the torch.nn model in float64 (model_workloads.char_lm_reference_outputs)."""
    if problem.case.kind == "model":
        from .model_workloads import char_lm_reference_outputs

        return char_lm_reference_outputs(problem)
    return FastrnnWorkload(problem.case, problem.params, REFERENCE, "cpu",
                           dtype="float64").outputs(_as_float64(problem))


def _as_float64(problem: Problem) -> Problem:
    f = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    return Problem(problem.case, {k: f(v) for k, v in problem.params.items()}, f(problem.x),
                   f(problem.dout), f(problem.h0), f(problem.c0))


# -- PyTorch --------------------------------------------------------------------------------------

_TORCH_CLASSES = {
    ("layer", "lstm"): "LSTM", ("layer", "gru"): "GRU", ("layer", "rnn_tanh"): "RNN",
    ("layer", "rnn_relu"): "RNN", ("step", "lstm"): "LSTMCell", ("step", "gru"): "GRUCell",
    ("step", "rnn_tanh"): "RNNCell", ("step", "rnn_relu"): "RNNCell",
}


def configure_torch_cuda() -> None:
    """TF32 off in cuDNN and cuBLAS, so PyTorch computes in true fp32 like the CuPy backend."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


class TorchDeviceWorkload(Workload):
    """A workload computed by PyTorch on self.device: CUDA events on a GPU, the host clock on the CPU."""

    device = "cpu"

    def timer(self) -> Timer:
        if self.device == "cuda":
            return CudaEventTimer("torch")
        return HostTimer()

    def sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()


class TorchWorkload(TorchDeviceWorkload):
    """torch.nn.LSTM / GRU / RNN (or the *Cell) with the same weights; autograd for training.

    Training: forward with explicit initial states that require grad (so dh0 is computed, as fastrnn
    computes it) and out.backward(dout), parameter gradients reset to None first so nothing is
    accumulated. Inference: eval mode under torch.inference_mode(). Threads: set by the worker process
    (threads.py), like every other contestant's."""

    def __init__(self, case: Case, params: dict, device: str):
        import torch

        self.torch = torch
        self.case = case
        self.device = device
        self.tdevice = torch.device(device)
        self.tdtype = getattr(torch, case.dtype)
        if device == "cuda":
            configure_torch_cuda()
        cls = getattr(torch.nn, _TORCH_CLASSES[(case.kind, case.cell)])
        kwargs = {"bidirectional": True} if case.bidirectional else {}
        if case.cell.startswith("rnn_"):
            kwargs["nonlinearity"] = case.cell.removeprefix("rnn_")
        # Built in the case's dtype before loading: loaded into float32 parameters, float64 weights
        # would be rounded to float32 first.
        m = cls(case.I, case.H, dtype=self.tdtype, **kwargs)
        m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in params.items()})
        self.module = m.to(device=self.tdevice, dtype=self.tdtype)
        self.module.train(case.mode == "training")

    def _put(self, a, requires_grad=False):
        t = self.torch.from_numpy(np.ascontiguousarray(a)).to(device=self.tdevice, dtype=self.tdtype)
        return t.requires_grad_(requires_grad)

    def _host(self, t):
        return t.detach().to("cpu", self.torch.float64).numpy()

    def _zero_state(self, requires_grad):
        D, N, H = self.case.directions, self.case.N, self.case.H
        z = lambda: self.torch.zeros((D, N, H), device=self.tdevice, dtype=self.tdtype,  # noqa: E731
                                     requires_grad=requires_grad)
        return (z(), z()) if CELLS[self.case.cell].has_cell_state else z()

    def prepare(self, problem: Problem):
        torch, m, case = self.torch, self.module, self.case
        if case.kind == "step":
            xs = [self._put(problem.x[t]) for t in range(case.T)]
            h0, c0 = self._put(problem.h0), self._put(problem.c0)
            has_c = CELLS[case.cell].has_cell_state

            def call():
                with torch.inference_mode():
                    state = (h0, c0) if has_c else h0
                    for xt in xs:
                        state = m(xt, state)
                return state
            return call
        if case.mode == "training":
            x = self._put(problem.x, requires_grad=True)
            dout = self._put(problem.dout)

            def call():
                m.zero_grad(set_to_none=True)
                x.grad = None
                out, _ = m(x, self._zero_state(True))
                out.backward(dout)
            return call
        x = self._put(problem.x)

        def call():
            with torch.inference_mode():
                return m(x)
        return call

    def outputs(self, problem: Problem) -> dict:
        torch, m, case = self.torch, self.module, self.case
        has_c = CELLS[case.cell].has_cell_state
        if case.kind == "step":
            with torch.inference_mode():
                h, c = self._put(problem.h0), self._put(problem.c0)
                hs = []
                for t in range(case.T):
                    xt = self._put(problem.x[t])
                    if has_c:
                        h, c = m(xt, (h, c))
                    else:
                        h = m(xt, h)
                    hs.append(self._host(h))
            result = {"out": np.stack(hs), "h_n": hs[-1]}
            if has_c:
                result["c_n"] = self._host(c)
            return result
        training = case.mode == "training"
        x = self._put(problem.x, requires_grad=training)
        hx = self._zero_state(training)
        m.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(training):
            out, state = m(x, hx)
        h_n, c_n = state if has_c else (state, None)
        result = {"out": self._host(out), "h_n": self._host(h_n)}
        if has_c:
            result["c_n"] = self._host(c_n)
        if training:
            out.backward(self._put(problem.dout))
            h0, c0 = hx if has_c else (hx, None)
            result["dx"], result["dh0"] = self._host(x.grad), self._host(h0.grad)
            if has_c:
                result["dc0"] = self._host(c0.grad)
            for name, p in m.named_parameters():
                result["grad." + name] = self._host(p.grad)
        return result


# -- the GEMM floor --------------------------------------------------------------------------------

class GemmFloorWorkload(Workload):
    """The case's matrix products alone, with the device's BLAS (floor.py); nothing to check."""

    checked = False

    def __init__(self, case: Case, params: dict, device: str):
        self.case, self.device = case, device

    def prepare(self, problem: Problem):
        fn, self._timer = gemm_floor_call(self.case, self.device)
        return fn

    def timer(self) -> Timer:
        return self._timer


def char_lm_workload(case: Case, params: dict, device: str, converted: bool) -> Workload:
    from .model_workloads import CharLMWorkload

    return CharLMWorkload(case, params, device, converted)


FAMILIES = {
    "fastrnn": lambda case, params, c: FastrnnWorkload(case, params, c.name, c.device),
    "torch": lambda case, params, c: TorchWorkload(case, params, c.device),
    "gemm-floor": lambda case, params, c: GemmFloorWorkload(case, params, c.device),
    "torch-model": lambda case, params, c: char_lm_workload(case, params, c.device, False),
    "fastrnn-torch-model": lambda case, params, c: char_lm_workload(case, params, c.device, True),
}


def make_workload(case: Case, params: dict, contestant) -> Workload:
    """The Workload of `contestant` (a backends.Contestant) on `case` with these parameters."""
    return FAMILIES[contestant.family](case, params, contestant)
