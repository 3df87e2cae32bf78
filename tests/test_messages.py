"""The exact text of the errors and warnings that used to mislead (issue 13): each one says what was
passed and suggests only something the library accepts.

Messages are built by the modules, not the backends, so one CPU backend (the reference) is enough.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastrnn as fr
from fastrnn import dispatch

T, N, I, H = 4, 3, 2, 5


def _lstm(dtype="float32", **kw):
    return fr.LSTM(I, H, dtype=dtype, backend="numpy", seed=0, **kw)


def _message(fn, exc=Exception) -> str:
    with pytest.raises(exc) as info:
        fn()
    return str(info.value)


# --------------------------------------------------------------------------------- module dtype

@pytest.mark.parametrize("dtype", ["nope", 3, [1, 2], None], ids=["name", "int", "list", "None"])
def test_invalid_module_dtype_is_refused(dtype):
    assert _message(lambda: _lstm(dtype=dtype), TypeError) == \
        f"dtype must be 'float32' or 'float64', got {dtype!r}"


@pytest.mark.parametrize("dtype", ["float32", "f8", np.float32, np.dtype("float64")])
def test_valid_module_dtype_spellings(dtype):
    assert _lstm(dtype=dtype).dtype in (np.dtype("float32"), np.dtype("float64"))


# --------------------------------------------------------------------------------- input dtype

@pytest.mark.parametrize("value", [
    np.ones((T, N, I), dtype=np.int64), np.ones((T, N, I), dtype=np.float16),
    np.ones((T, N, I), dtype=np.complex64), np.ones((T, N, I), dtype=bool),
    np.ones((T, N, I), dtype=object), np.full((T, N, I), "a"), np.ones((T, N, I), dtype=">f4"),
], ids=["int64", "float16", "complex64", "bool", "object", "str", "big-endian"])
def test_input_of_a_dtype_no_module_takes_suggests_only_astype(value):
    assert _message(lambda: _lstm()(value), TypeError) == (
        f"input has dtype {value.dtype}, but the module computes in float32; convert it with "
        ".astype('float32') (modules compute in float32 or float64 only, and never change precision "
        "silently)")


def test_input_of_the_other_precision_suggests_either_side():
    x = np.ones((T, N, I), dtype=np.float64)
    assert _message(lambda: _lstm()(x), TypeError) == (
        "input has dtype float64, but the module computes in float32; convert it with "
        ".astype('float32') or build the module with dtype='float64' (fastrnn never changes precision "
        "silently)")


def test_none_as_input_says_none():
    assert _message(lambda: _lstm()(None), TypeError) == "input is None, expected a float32 array"


def test_none_as_dout_says_none():
    m = _lstm()
    m(np.ones((T, N, I), dtype=np.float32))
    assert _message(lambda: m.backward(None), TypeError) == "dout is None, expected a float32 array"


def test_a_list_is_named_as_a_list():
    x = np.ones((T, N, I)).tolist()
    assert _message(lambda: _lstm()(x), TypeError) == (
        "input is a Python list, which NumPy reads as float64, but the module computes in float32; "
        "convert it with np.asarray(..., dtype='float32')")


def test_a_python_number_is_named_as_one():
    assert _message(lambda: _lstm()(1.0), TypeError) == (
        "input is a Python float, which NumPy reads as float64, but the module computes in float32; "
        "convert it with np.asarray(..., dtype='float32')")


def test_a_list_of_the_module_dtype_is_accepted():
    x = np.ones((T, N, I))
    out, _ = _lstm(dtype="float64")(x.tolist())
    np.testing.assert_array_equal(out, _lstm(dtype="float64")(x)[0])


# --------------------------------------------------------------------------------------- lengths

def test_fractional_lengths_name_the_value():
    x = np.ones((T, N, I), dtype=np.float32)
    assert _message(lambda: _lstm()(x, lengths=[2.5, 3.0, 1.0]), TypeError) == \
        "lengths must be whole numbers, got 2.5"


def test_integral_float_lengths_are_the_integers():
    x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)
    out_f, _ = _lstm()(x, lengths=[2.0, 3.0, 1.0])
    out_i, _ = _lstm()(x, lengths=[2, 3, 1])
    np.testing.assert_array_equal(out_f, out_i)


def test_lengths_of_a_non_numeric_dtype():
    x = np.ones((T, N, I), dtype=np.float32)
    assert _message(lambda: _lstm()(x, lengths=["2", "3", "1"]), TypeError) == \
        "lengths must be whole numbers (integers, or floats with integral values), got dtype <U1"


@pytest.mark.parametrize("lengths,shown", [
    (np.array([2**64 - 1, 2, 1], dtype=np.uint64), "1 to 18446744073709551615"),
    (np.array([1e20, 2.0, 1.0]), "1.0 to 1e+20"),
], ids=["uint64-max", "1e20"])
def test_out_of_range_lengths_quote_the_values_given(lengths, shown):
    x = np.ones((T, N, I), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the old int64 cast warned "invalid value encountered"
        message = _message(lambda: _lstm()(x, lengths=lengths), ValueError)
    assert message == f"lengths must each be in 1..{T} (the sequence length T), got values from {shown}"


# ------------------------------------------------------------------------------ load_state_dict

def test_load_state_dict_of_pairs_asks_for_a_mapping():
    m = _lstm()
    pairs = list(m.state_dict().items())
    assert _message(lambda: m.load_state_dict(pairs), TypeError) == (
        "load_state_dict expects a mapping of parameter names to arrays (like the OrderedDict "
        "state_dict() returns), got a list")


# ---------------------------------------------------------------------------------- constructor

def test_dropout_with_one_layer_warns_like_pytorch():
    with pytest.warns(UserWarning) as record:
        _lstm(dropout=0.5)
    assert [str(w.message) for w in record] == [
        "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
        "num_layers greater than 1, but got dropout=0.5 and num_layers=1"]


@pytest.mark.parametrize("kwargs", [dict(dropout=0.5, num_layers=2), dict(dropout=0.0)])
def test_dropout_that_applies_does_not_warn(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _lstm(**kwargs)


@pytest.mark.parametrize("cls", [fr.RNN, fr.LSTM, fr.GRU, fr.RNNCell, fr.LSTMCell, fr.GRUCell],
                         ids=lambda c: c.__name__)
def test_unknown_keyword_names_the_class(cls):
    assert _message(lambda: cls(I, H, hiden_size=3), TypeError) == \
        f"{cls.__name__}.__init__() got an unexpected keyword argument 'hiden_size'"


def test_unknown_backend_from_the_environment_says_so(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "bogus")
    assert _message(lambda: fr.LSTM(I, H), fr.BackendUnavailableError) == (
        "unknown backend 'bogus' (from the FASTRNN_BACKEND environment variable); registered: "
        f"{', '.join(dispatch.registered_backends())}; available here: {', '.join(fr.backends())}")


def test_unknown_backend_argument_does_not_blame_the_environment():
    assert _message(lambda: fr.LSTM(I, H, backend="bogus"), fr.BackendUnavailableError) == (
        f"unknown backend 'bogus'; registered: {', '.join(dispatch.registered_backends())}; "
        f"available here: {', '.join(fr.backends())}")
