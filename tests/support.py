"""Shared helpers of the core test suite: building modules for a backend, moving arrays to the
backend's array module, random cases, backend-contract requests from named arrays, running forward +
backward, and comparing with fastrnn.numerics.relative_error, recorded (the worst values reached are
printed at the end of the session by conftest.py).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional

import numpy as np

import fastrnn as fr
from fastrnn import devices, dispatch
from fastrnn.contract import ForwardRequest, LayerWeights, StepRequest
from fastrnn.numerics import relative_error

CELL_KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
DTYPES = ("float32", "float64")
FORWARD_KEYS = ("out", "h_n", "c_n")


# ---------------------------------------------------------------------------------------------- arrays

def device_of(backend: str) -> str:
    """The device of a registered backend; "cpu" for "auto" and None (the modules' default)."""
    if backend in (None, "auto"):
        return "cpu"
    return dispatch.backend_info(backend).device


def array_module(backend: str):
    """numpy for CPU backends, cupy for CUDA ones (imported only when a CUDA backend runs)."""
    return devices.array_module(device_of(backend))


def to_backend(a, backend: str):
    """Put a NumPy array on the backend's device (None stays None)."""
    if a is None:
        return None
    return array_module(backend).asarray(a)


def to_numpy(a) -> Optional[np.ndarray]:
    return None if a is None else devices.to_host(a)


# ------------------------------------------------------------------------------ the backend contract

def forward_request(cell, arrays: dict, **options) -> ForwardRequest:
    """A ForwardRequest for `cell` from a dict holding x, h0, c0, w_ih, w_hh, b_ih, b_hh (other keys
    are ignored); `options` are the request's lengths, reverse and training."""
    return ForwardRequest(cell=cell, x=arrays["x"], h0=arrays["h0"], c0=arrays["c0"],
                          weights=weights_of(arrays), **options)


def step_request(cell, arrays: dict) -> StepRequest:
    """A StepRequest for the first time step of the arrays of forward_request."""
    return StepRequest(cell=cell, x=arrays["x"][0], h=arrays["h0"], c=arrays["c0"],
                       weights=weights_of(arrays))


def weights_of(arrays: dict) -> LayerWeights:
    return LayerWeights(w_ih=arrays["w_ih"], w_hh=arrays["w_hh"], b_ih=arrays["b_ih"],
                        b_hh=arrays["b_hh"])


def named(result) -> dict:
    """A contract result (ForwardResult, BackwardResult, StepResult) as {field name: value}, its
    arrays, cache and Nones (a flag such as ForwardResult.out_in_cache left out); unlike
    dataclasses.asdict, the arrays are not copied."""
    return {f.name: getattr(result, f.name) for f in fields(result)
            if not isinstance(getattr(result, f.name), bool)}


# --------------------------------------------------------------------------------------------- modules

_FAMILIES = {"rnn": (fr.RNN, fr.RNNCell), "lstm": (fr.LSTM, fr.LSTMCell), "gru": (fr.GRU, fr.GRUCell)}


def _build(kind: str, cell: bool, input_size: int, hidden_size: int, backend: str, dtype: str,
           kwargs: dict):
    kwargs.setdefault("device", device_of(backend))
    family = "rnn" if kind.startswith("rnn_") else kind
    if family == "rnn":
        kwargs["nonlinearity"] = kind[4:]
    cls = _FAMILIES[family][1 if cell else 0]
    return cls(input_size, hidden_size, dtype=dtype, backend=backend, **kwargs)


def make_module(kind: str, input_size: int, hidden_size: int, *, backend: str, dtype: str, **kwargs):
    """fr.RNN / fr.LSTM / fr.GRU for a cell kind ("rnn_tanh", "rnn_relu", "lstm", "gru")."""
    return _build(kind, False, input_size, hidden_size, backend, dtype, kwargs)


def make_cell(kind: str, input_size: int, hidden_size: int, *, backend: str, dtype: str, **kwargs):
    """fr.RNNCell / fr.LSTMCell / fr.GRUCell for a cell kind."""
    return _build(kind, True, input_size, hidden_size, backend, dtype, kwargs)


def random_params(module, rng: np.random.Generator, scale: float = 0.6) -> dict[str, np.ndarray]:
    """float64 parameters with the module's names and shapes, larger than the default init so that
    the nonlinearities are exercised away from their linear region."""
    return {k: rng.uniform(-scale, scale, size=np.shape(v)) for k, v in module.state_dict().items()}


def load(module, params64: dict[str, np.ndarray], dtype: str) -> None:
    module.load_state_dict({k: v.astype(dtype) for k, v in params64.items()})


# ----------------------------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    """One module configuration and input shape."""

    T: int = 4
    N: int = 3
    I: int = 5
    H: int = 6
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True
    lengths: Optional[tuple[int, ...]] = None
    with_hx: bool = True
    dropout: float = 0.0

    @property
    def D(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def id(self) -> str:
        parts = [f"T{self.T}N{self.N}I{self.I}H{self.H}", f"L{self.num_layers}"]
        if self.bidirectional:
            parts.append("bi")
        if self.batch_first:
            parts.append("bf")
        if not self.bias:
            parts.append("nobias")
        if self.lengths is not None:
            parts.append("len" + "-".join(map(str, self.lengths)))
        if not self.with_hx:
            parts.append("nohx")
        if self.dropout:
            parts.append(f"drop{self.dropout}")
        return "_".join(parts)

    def module_kwargs(self) -> dict:
        return dict(num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                    dropout=self.dropout, bidirectional=self.bidirectional)

    def with_(self, **changes) -> "Case":
        return replace(self, **changes)


def random_inputs(kind: str, case: Case, rng: np.random.Generator) -> dict:
    """float64 inputs and upstream gradients for one forward + backward of `case`."""
    seq = (case.N, case.T) if case.batch_first else (case.T, case.N)
    state = (case.num_layers * case.D, case.N, case.H)
    lstm = kind == "lstm"
    data = {
        "x": rng.standard_normal(seq + (case.I,)),
        "h0": rng.standard_normal(state) * 0.5 if case.with_hx else None,
        "c0": rng.standard_normal(state) * 0.5 if case.with_hx and lstm else None,
        "dout": rng.standard_normal(seq + (case.D * case.H,)),
        "dh_n": rng.standard_normal(state),
        "dc_n": rng.standard_normal(state) if lstm else None,
        "lengths": None if case.lengths is None else np.array(case.lengths, dtype=np.int64),
    }
    return data


def as_dtype(a, dtype):
    return None if a is None else np.asarray(a).astype(dtype)


def run_module(module, kind: str, data: dict, backend: str, dtype: str, *, backward: bool = True) -> dict:
    """Forward (+ backward) of a module; every result as a NumPy array, keyed by what it is.

    Keys: out, h_n, c_n (LSTM), and with backward: dx, dh0, dc0 (when hx was given), grad.<param>.
    """
    lstm = kind == "lstm"
    cast = lambda a: to_backend(as_dtype(a, dtype), backend)  # noqa: E731
    x = cast(data["x"])
    hx = None
    if data["h0"] is not None:
        hx = (cast(data["h0"]), cast(data["c0"])) if lstm else cast(data["h0"])
    lengths = data["lengths"]
    if lengths is not None and device_of(backend) == "cuda":
        lengths = lengths.tolist()
    out, state = module(x, hx, lengths=lengths)
    res = {"out": to_numpy(out)}
    if lstm:
        res["h_n"], res["c_n"] = to_numpy(state[0]), to_numpy(state[1])
    else:
        res["h_n"] = to_numpy(state)
    if not backward:
        return res
    dhn = (cast(data["dh_n"]), cast(data["dc_n"])) if lstm else cast(data["dh_n"])
    dx, dhx = module.backward(cast(data["dout"]), dhn)
    res["dx"] = to_numpy(dx)
    if hx is not None:
        if lstm:
            res["dh0"], res["dc0"] = to_numpy(dhx[0]), to_numpy(dhx[1])
        else:
            res["dh0"] = to_numpy(dhx)
    for k, g in module.grads.items():
        res["grad." + k] = to_numpy(g)
    return res


# ------------------------------------------------------------------------------------------ comparison

# (suite, backend, dtype, "forward" | "gradient") -> (worst relative error, where)
WORST: dict[tuple[str, str, str, str], tuple[float, str]] = {}


def record(suite: str, backend: str, dtype: str, key: str, err: float, where: str) -> None:
    part = "forward" if key in FORWARD_KEYS else "gradient"
    slot = (suite, backend, dtype, part)
    if slot not in WORST or err > WORST[slot][0]:
        WORST[slot] = (err, f"{where} [{key}]")


def assert_all_close(actual: dict, expected: dict, tol: float, *, suite: str, backend: str, dtype: str,
                     where: str) -> None:
    """Every key of `expected` within `tol` relative error; the errors are recorded first, so the
    summary shows the worst values reached even when a comparison fails."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    assert not missing and not extra, f"results differ in keys: missing {missing}, unexpected {extra}"
    errors = {}
    for key, b in expected.items():
        a = actual[key]
        if b is None or a is None:
            assert a is None and b is None, f"{key}: one side is None"
            continue
        errors[key] = relative_error(a, b)
        if tol > 0:   # exact comparisons are exact by construction: nothing to report
            record(suite, backend, dtype, key, errors[key], where)
    bad = {k: f"{e:.3g}" for k, e in errors.items() if not e <= tol}
    assert not bad, f"relative error above {tol:g}: {bad}"


def check_dtypes(results: dict, dtype: str) -> None:
    """Outputs and gradients come back in the module's dtype: never a silent change of precision."""
    wrong = {k: str(v.dtype) for k, v in results.items() if v is not None and v.dtype != np.dtype(dtype)}
    assert not wrong, f"expected every result in {dtype}, got {wrong}"


# ------------------------------------------------------------------------------------ measured choices

def count_calls(monkeypatch, owner, name: str) -> list:
    """Wrap owner.name (for this test) so that each call's positional arguments are appended to
    the returned list; the real function still runs."""
    calls = []
    real = getattr(owner, name)

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


def measure_afresh(monkeypatch, team_choice, cache_dir) -> None:
    """fastrnn.cpu.team_choice measuring (FASTRNN_TEAM=auto) into an empty cache in cache_dir, as in
    a new process, without the settling time before each team probe."""
    monkeypatch.setenv("FASTRNN_TEAM", "auto")
    monkeypatch.setenv("FASTRNN_CACHE_DIR", str(cache_dir))
    monkeypatch.setattr(team_choice, "_loaded_for", None)
    monkeypatch.setattr(team_choice, "_costs", {})
    monkeypatch.setattr(team_choice, "SETTLE_S", 0.0)
