"""Bad input gets one clear error naming what was expected; each test checks the type and the message.

Run on every backend (inputs on the backend's device), since a backend's module must refuse the same
things; NaN propagation is the backend's arithmetic.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastrnn as fr
from fastrnn import dispatch

from support import CELL_KINDS, make_cell, make_module, to_backend, to_numpy

T, N, I, H = 5, 3, 4, 6


def _module(kind, backend, dtype="float32", **kw):
    return make_module(kind, I, H, backend=backend, dtype=dtype, **kw)


def _x(backend, shape=(T, N, I), dtype="float32"):
    return to_backend(np.random.default_rng(0).standard_normal(shape).astype(dtype), backend)


def _state(backend, shape, dtype="float32"):
    return to_backend(np.zeros(shape, dtype=dtype), backend)


def _hx(kind, backend, shape, dtype="float32"):
    h = _state(backend, shape, dtype)
    return (h, _state(backend, shape, dtype)) if kind == "lstm" else h


# ------------------------------------------------------------------------------------- shapes / ndim

@pytest.mark.parametrize("shape", [(T * N * I,), (1, T, N, I)], ids=["1-D", "4-D"])
def test_wrong_ndim(backend, shape):
    m = _module("lstm", backend)
    with pytest.raises(ValueError, match=r"3-D \(T, N, input_size\).*got %d-D" % len(shape)):
        m(_x(backend, shape))


def test_wrong_ndim_batch_first_names_its_layout(backend):
    m = _module("gru", backend, batch_first=True)
    with pytest.raises(ValueError, match=r"\(N, T, input_size\)"):
        m(_x(backend, (1, N, T, I)))


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_input_size_mismatch(backend, kind):
    m = _module(kind, backend)
    with pytest.raises(ValueError, match=rf"input_size is {I}"):
        m(_x(backend, (T, N, I + 1)))


@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("state_shape", [(1, N + 1, H), (1, N, H + 1), (2, N, H), (N, H)],
                         ids=["batch", "hidden", "layers", "2-D"])
def test_initial_state_shape_mismatch(backend, kind, state_shape):
    m = _module(kind, backend)
    got = ", ".join(map(str, state_shape))
    with pytest.raises(ValueError, match=rf"must have shape \(1, {N}, {H}\), got \({got}\)"):
        m(_x(backend), _hx(kind, backend, state_shape))


def test_lstm_cell_state_shape_mismatch_is_named(backend):
    m = _module("lstm", backend, num_layers=2)
    hx = (_state(backend, (2, N, H)), _state(backend, (2, N, H + 2)))
    with pytest.raises(ValueError, match=r"c_0.*must have shape \(2, %d, %d\)" % (N, H)):
        m(_x(backend), hx)


def test_lstm_hx_must_be_a_pair(backend):
    m = _module("lstm", backend)
    with pytest.raises(TypeError, match=r"pair \(h_0, c_0\)"):
        m(_x(backend), _state(backend, (1, N, H)))


def test_empty_input(backend):
    m = _module("rnn_tanh", backend)
    with pytest.raises(ValueError, match="at least one time step"):
        m(_x(backend, (0, N, I)))


# ------------------------------------------------------------------------------------------- dtypes

@pytest.mark.parametrize("module_dtype,input_dtype", [("float32", "float64"), ("float64", "float32"),
                                                      ("float32", "int64")])
def test_input_dtype_is_never_silently_changed(backend, module_dtype, input_dtype):
    m = _module("lstm", backend, dtype=module_dtype)
    x = to_backend(np.ones((T, N, I), dtype=input_dtype), backend)
    with pytest.raises(TypeError, match=rf"input has dtype {input_dtype}.*computes in {module_dtype}"):
        m(x)


def test_state_dtype_is_never_silently_changed(backend):
    m = _module("gru", backend, dtype="float32")
    with pytest.raises(TypeError, match=r"hx has dtype float64.*float32"):
        m(_x(backend), _state(backend, (1, N, H), "float64"))


def test_dout_dtype_is_never_silently_changed(backend):
    m = _module("rnn_relu", backend, dtype="float64")
    x = _x(backend, dtype="float64")
    m.train()
    m(x)
    with pytest.raises(TypeError, match=r"dout has dtype float32.*float64"):
        m.backward(_state(backend, (T, N, H), "float32"))


@pytest.mark.parametrize("dtype", ["float16", "int32", "complex64"])
def test_module_dtype_must_be_float32_or_float64(backend, dtype):
    with pytest.raises(TypeError, match=r"dtype must be 'float32' or 'float64'"):
        _module("rnn_tanh", backend, dtype=dtype)


# ------------------------------------------------------------------------------------------ lengths

@pytest.mark.parametrize("lengths", [[0, 2, 3], [1, T + 1, 2], [-1, 2, 2]], ids=["zero", "above-T", "neg"])
def test_lengths_out_of_range(backend, lengths):
    m = _module("lstm", backend)
    with pytest.raises(ValueError, match=rf"lengths must each be in 1\.\.{T}"):
        m(_x(backend), lengths=lengths)


@pytest.mark.parametrize("lengths", [[2, 3], [[1, 2, 3]], [1, 2, 3, 4]], ids=["short", "2-D", "long"])
def test_lengths_wrong_shape(backend, lengths):
    m = _module("gru", backend)
    with pytest.raises(ValueError, match=rf"lengths must have shape \({N},\)"):
        m(_x(backend), lengths=lengths)


def test_lengths_must_be_integers(backend):
    m = _module("gru", backend)
    with pytest.raises(TypeError, match="lengths must be whole numbers, got 1.5"):
        m(_x(backend), lengths=[1.5, 2.0, 3.0])


# ----------------------------------------------------------------------------------------- backward

@pytest.mark.parametrize("kind", CELL_KINDS)
def test_backward_without_forward(backend, kind):
    m = _module(kind, backend)
    with pytest.raises(RuntimeError, match="forward pass made in training mode"):
        m.backward(_state(backend, (T, N, H)))


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_backward_after_eval_forward(backend, kind):
    m = _module(kind, backend)
    m.train()
    m(_x(backend))
    m.eval()
    m(_x(backend))
    with pytest.raises(RuntimeError, match="in eval mode the forward keeps nothing"):
        m.backward(_state(backend, (T, N, H)))


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_cell_backward_without_training_step(backend, kind):
    cell = make_cell(kind, I, H, backend=backend, dtype="float32")
    with pytest.raises(RuntimeError, match="training mode"):
        cell.backward(_state(backend, (N, H)))
    cell.eval()
    cell(_x(backend, (N, I)))
    with pytest.raises(RuntimeError, match="training mode"):
        cell.backward(_state(backend, (N, H)))


@pytest.mark.parametrize("dout_shape", [(T, N, H + 1), (N, T, H), (T, N)], ids=["width", "layout", "2-D"])
def test_dout_wrong_shape(backend, dout_shape):
    m = _module("lstm", backend)
    m.train()
    m(_x(backend))
    with pytest.raises(ValueError, match=rf"dout.*must have shape \({T}, {N}, {H}\)"):
        m.backward(_state(backend, dout_shape))


def test_dout_shape_follows_batch_first_and_directions(backend):
    m = _module("gru", backend, batch_first=True, bidirectional=True)
    m.train()
    m(_x(backend, (N, T, I)))
    with pytest.raises(ValueError, match=rf"must have shape \({N}, {T}, {2 * H}\)"):
        m.backward(_state(backend, (T, N, 2 * H)))


def test_dhn_wrong_shape(backend):
    m = _module("lstm", backend, num_layers=2)
    m.train()
    m(_x(backend))
    with pytest.raises(ValueError, match=rf"dc_n.*must have shape \(2, {N}, {H}\)"):
        m.backward(_state(backend, (T, N, H)), (None, _state(backend, (1, N, H))))


# ------------------------------------------------------------------------------------ state dict

def test_load_state_dict_unknown_name(backend):
    m = _module("lstm", backend)
    state = dict(m.state_dict())
    state["weight_ih_l1"] = state["weight_ih_l0"]
    with pytest.raises(KeyError, match=r"unexpected keys \['weight_ih_l1'\]"):
        m.load_state_dict(state)


def test_load_state_dict_missing_name(backend):
    m = _module("gru", backend, bidirectional=True)
    state = dict(m.state_dict())
    del state["bias_hh_l0_reverse"]
    with pytest.raises(KeyError, match=r"missing keys \['bias_hh_l0_reverse'\]"):
        m.load_state_dict(state)


def test_load_state_dict_wrong_shape(backend):
    m = _module("rnn_tanh", backend)
    state = {k: to_numpy(v) for k, v in m.state_dict().items()}
    state["weight_hh_l0"] = np.zeros((H, H + 1), dtype=np.float32)
    with pytest.raises(ValueError, match=rf"weight_hh_l0 must have shape \({H}, {H}\), got \({H}, {H + 1}\)"):
        m.load_state_dict(state)
    assert m.state_dict()["weight_hh_l0"].shape == (H, H)


def test_load_state_dict_refuses_bias_into_biasless_module(backend):
    m = _module("lstm", backend, bias=False)
    full = _module("lstm", backend)
    with pytest.raises(KeyError, match="unexpected keys.*bias_ih_l0"):
        m.load_state_dict(full.state_dict())


# ------------------------------------------------------------------------------------ constructor

@pytest.mark.parametrize("kwargs,pattern", [
    (dict(hidden_size=0), r"hidden_size must be an integer >= 1"),
    (dict(num_layers=0), r"num_layers must be an integer >= 1"),
    (dict(dropout=1.0), r"dropout must be a probability in \[0, 1\)"),
    (dict(input_size=2.5), r"input_size must be an integer"),
])
def test_bad_constructor_arguments(backend, kwargs, pattern):
    args = dict(input_size=I, hidden_size=H) | kwargs
    with pytest.raises(ValueError, match=pattern):
        make_module("gru", args.pop("input_size"), args.pop("hidden_size"), backend=backend,
                    dtype="float32", **args)


def test_bad_nonlinearity():
    with pytest.raises(ValueError, match=r"nonlinearity must be 'tanh' or 'relu', got 'gelu'"):
        fr.RNN(I, H, nonlinearity="gelu")


def test_bad_device():
    with pytest.raises(ValueError, match=r"device must be 'cpu' or 'cuda', got 'tpu'"):
        fr.LSTM(I, H, device="tpu")


# -------------------------------------------------------------------------------------- backends

def test_unknown_backend_lists_what_is_available():
    with pytest.raises(fr.BackendUnavailableError,
                       match=r"unknown backend 'nope'.*registered: .*numpy") as info:
        fr.LSTM(I, H, backend="nope")
    for name in fr.backends():
        assert name in str(info.value)


@pytest.fixture
def missing_backend(temporary_backend):
    """A registered CPU backend whose requirement is not importable."""
    return temporary_backend("needs_missing", "fastrnn.reference", ("fastrnn_no_such_module",))


def test_unavailable_backend_says_why_and_what_is_available(missing_backend):
    with pytest.raises(fr.BackendUnavailableError,
                       match=rf"backend '{missing_backend}' is unavailable: fastrnn_no_such_module "
                             r"is not importable") as info:
        fr.GRU(I, H, backend=missing_backend)
    message = str(info.value)
    for name in fr.backends():
        assert f"{name}" in message and "available" in message


def test_backend_for_another_device():
    cuda = [n for n in dispatch.registered_backends() if dispatch.backend_info(n).device == "cuda"]
    assert cuda, "a CUDA backend is registered"
    with pytest.raises(fr.BackendUnavailableError, match=rf"backend '{cuda[0]}' runs on 'cuda'.*'cpu'"):
        fr.LSTM(I, H, backend=cuda[0], device="cpu")


# --------------------------------------------------------------------------------------------- NaN

@pytest.mark.parametrize("kind", CELL_KINDS)
def test_nan_in_input_propagates(backend, kind):
    """A NaN at (t=1, n=0) reaches every later output of sequence 0 in the forward direction and
    every earlier one in the reverse direction; the other sequences stay finite; backward runs."""
    m = _module(kind, backend, dtype="float64", bidirectional=True)
    x = np.random.default_rng(1).standard_normal((T, N, I))
    x[1, 0, 2] = np.nan
    m.train()
    out, _ = m(to_backend(x, backend))
    out = to_numpy(out)
    assert np.isnan(out[1:, 0, :H]).all(), "NaN did not propagate forward in time"
    assert np.isnan(out[:2, 0, H:]).all(), "NaN did not propagate in the reverse direction"
    assert np.isfinite(out[:, 1:]).all(), "NaN leaked into other sequences"
    dx, _ = m.backward(to_backend(np.ones(out.shape), backend))
    assert to_numpy(dx).shape == x.shape


# --------------------------------------------------------------------------------------------- GPU

@pytest.mark.gpu
def test_numpy_array_into_cuda_module(cuda_backend):
    m = make_module("lstm", I, H, backend=cuda_backend, dtype="float32")
    with pytest.raises(TypeError, match=r"input is a ndarray on the CPU, but the module is on 'cuda'"):
        m(np.zeros((T, N, I), dtype=np.float32))


@pytest.mark.gpu
def test_cupy_array_into_cpu_module(cuda_backend):
    m = fr.GRU(I, H, device="cpu")
    with pytest.raises(TypeError, match=r"input is a CuPy \(GPU\) array, but the module is on 'cpu'"):
        m(to_backend(np.zeros((T, N, I), dtype=np.float32), cuda_backend))


# ------------------------------------------------------------------------------------------- cells

@pytest.mark.parametrize("kind", CELL_KINDS)
def test_cell_input_shape(backend, kind):
    cell = make_cell(kind, I, H, backend=backend, dtype="float32")
    with pytest.raises(ValueError,
                       match=rf"input must have shape \(batch, {I}\) or \({I},\), got \({N}, {I + 1}\)"):
        cell(_x(backend, (N, I + 1)))
    with pytest.raises(ValueError, match=rf"input must have shape \(batch, {I}\)"):
        cell(_x(backend, (1, N, I)))
    # in eval mode with a ready state, through the streaming path's checks too (a 0-d input)
    cell.eval()
    state = _state(backend, (N, H))
    for shape in ((), (1, N, I)):
        with pytest.raises(ValueError, match=rf"input must have shape \(batch, {I}\)"):
            cell(_x(backend, shape), (state, state) if kind == "lstm" else state)


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_cell_state_shape_and_dtype(backend, kind):
    cell = make_cell(kind, I, H, backend=backend, dtype="float32")
    bad = _state(backend, (N + 1, H))
    hx = (bad, _state(backend, (N, H))) if kind == "lstm" else bad
    with pytest.raises(ValueError, match=rf"must have shape \({N}, {H}\), got \({N + 1}, {H}\)"):
        cell(_x(backend, (N, I)), hx)
    with pytest.raises(TypeError, match=r"input has dtype float64.*float32"):
        cell(_x(backend, (N, I), dtype="float64"))
