"""PyTorch parity: torch.nn.RNN / LSTM / GRU and the three cells, their state_dict loaded into fastrnn,
outputs, final states and every gradient compared per tensor with relative error max|a-b| / max|b|
against issue 2's bar (fastrnn.numerics.TORCH_PARITY), on every available CPU backend of the registry.

Variable lengths are compared with torch's packed sequences (pack_padded_sequence with
enforce_sorted=False, pad_packed_sequence): outputs are zero past each sequence's end and h_n is each
sequence's state at its own last step.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastrnn.numerics import TORCH_PARITY

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from support import (CELL_KINDS, DTYPES, Case, assert_all_close, check_dtypes, make_cell,  # noqa: E402
                     make_module, random_inputs, run_module, to_numpy)

CASES = [
    Case(T=5, N=3, I=7, H=5),
    Case(T=1, N=1, I=3, H=4),
    Case(T=4, N=2, I=5, H=33, num_layers=2, bidirectional=True),
    Case(T=6, N=3, I=4, H=7, num_layers=3, batch_first=True),
    Case(T=5, N=4, I=3, H=6, bias=False, with_hx=False),
    Case(T=6, N=4, I=5, H=9, num_layers=2, bidirectional=True, lengths=(6, 2, 1, 4)),
    Case(T=5, N=3, I=4, H=5, num_layers=3, bidirectional=True, batch_first=True, bias=False,
         lengths=(3, 5, 1)),
    Case(T=4, N=1, I=2, H=3, bidirectional=True, lengths=(2,)),
]

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@pytest.fixture(autouse=True, scope="module")
def torch_single_thread():
    """The shapes here are tiny; with its default thread pool torch's OpenMP threads and NumPy's
    OpenBLAS threads busy-wait against each other on a 2-core machine, which made this file ~50x
    slower. The thread count is not part of what is compared: the bar is a relative error."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def torch_module(kind: str, case: Case, dtype: str):
    kwargs = dict(num_layers=case.num_layers, bias=case.bias, batch_first=case.batch_first,
                  bidirectional=case.bidirectional, dtype=TORCH_DTYPES[dtype])
    if kind.startswith("rnn_"):
        return torch.nn.RNN(case.I, case.H, nonlinearity=kind[4:], **kwargs)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](case.I, case.H, **kwargs)


def torch_cell(kind: str, I: int, H: int, bias: bool, dtype: str):
    if kind.startswith("rnn_"):
        return torch.nn.RNNCell(I, H, bias=bias, nonlinearity=kind[4:], dtype=TORCH_DTYPES[dtype])
    cls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[kind]
    return cls(I, H, bias=bias, dtype=TORCH_DTYPES[dtype])


def tensor(a, dtype, grad=False):
    return None if a is None else torch.tensor(np.asarray(a).astype(dtype), requires_grad=grad)


def numpy_state(t_module) -> dict:
    return {k: v.detach().numpy() for k, v in t_module.state_dict().items()}


def run_torch(t_module, kind: str, case: Case, data: dict, dtype: str) -> dict:
    """Forward + backward of the torch module; results keyed like support.run_module's."""
    lstm = kind == "lstm"
    x = tensor(data["x"], dtype, grad=True)
    h0 = tensor(data["h0"], dtype, grad=True)
    c0 = tensor(data["c0"], dtype, grad=True)
    hx = None if h0 is None else ((h0, c0) if lstm else h0)
    if data["lengths"] is None:
        out, state = t_module(x, hx)
    else:
        packed = pack_padded_sequence(x, torch.tensor(data["lengths"]), batch_first=case.batch_first,
                                      enforce_sorted=False)
        packed_out, state = t_module(packed, hx)
        out, _ = pad_packed_sequence(packed_out, batch_first=case.batch_first, total_length=case.T)
    h_n, c_n = state if lstm else (state, None)
    outputs = [out, h_n] + ([c_n] if lstm else [])
    upstream = [tensor(data["dout"], dtype), tensor(data["dh_n"], dtype)]
    upstream += [tensor(data["dc_n"], dtype)] if lstm else []
    torch.autograd.backward(outputs, upstream)
    res = {"out": out, "h_n": h_n, "dx": x.grad}
    if lstm:
        res["c_n"] = c_n
    if h0 is not None:
        res["dh0"] = h0.grad
        if lstm:
            res["dc0"] = c0.grad
    for name, p in t_module.named_parameters():
        res["grad." + name] = p.grad
    return {k: v.detach().numpy() for k, v in res.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_module_matches_torch(cpu_backend, kind, case, dtype):
    torch.manual_seed(CASES.index(case))
    t_module = torch_module(kind, case, dtype)
    data = random_inputs(kind, case, np.random.default_rng(CASES.index(case)))
    expected = run_torch(t_module, kind, case, data, dtype)

    m = make_module(kind, case.I, case.H, backend=cpu_backend, dtype=dtype, **case.module_kwargs())
    m.load_state_dict(numpy_state(t_module))
    m.train()
    actual = run_module(m, kind, data, cpu_backend, dtype)
    check_dtypes(actual, dtype)
    assert_all_close(actual, expected, TORCH_PARITY[dtype], suite="torch modules", backend=cpu_backend,
                     dtype=dtype, where=f"{kind} {case.id}")
    if case.lengths is not None:
        out_tm = actual["out"].transpose(1, 0, 2) if case.batch_first else actual["out"]
        for n, length in enumerate(case.lengths):
            assert not np.any(out_tm[length:, n]), f"output of sequence {n} is not zero past its end"


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_state_dict_names_and_shapes_are_torchs(kind):
    case = Case(I=3, H=5, num_layers=3, bidirectional=True)
    for bias in (True, False):
        t_module = torch_module(kind, case.with_(bias=bias), "float32")
        m = make_module(kind, 3, 5, backend="numpy", dtype="float32", num_layers=3, bidirectional=True,
                        bias=bias)
        expected = [(k, tuple(v.shape)) for k, v in t_module.state_dict().items()]
        assert [(k, tuple(v.shape)) for k, v in m.state_dict().items()] == expected
        cell = make_cell(kind, 3, 5, backend="numpy", dtype="float32", bias=bias)
        t_cell = torch_cell(kind, 3, 5, bias, "float32")
        expected = [(k, tuple(v.shape)) for k, v in t_cell.state_dict().items()]
        assert [(k, tuple(v.shape)) for k, v in cell.state_dict().items()] == expected


CELL_CASES = [  # (N, I, H, bias, with_hx)
    (3, 5, 7, True, True),
    (1, 2, 33, False, True),
    (4, 6, 3, True, False),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell_case", CELL_CASES, ids=lambda c: "N{}I{}H{}{}{}".format(
    c[0], c[1], c[2], "" if c[3] else "_nobias", "" if c[4] else "_nohx"))
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_cell_matches_torch(cpu_backend, kind, cell_case, dtype):
    N, I, H, bias, with_hx = cell_case
    lstm = kind == "lstm"
    rng = np.random.default_rng(N * 100 + H)
    torch.manual_seed(H)
    t_cell = torch_cell(kind, I, H, bias, dtype)
    x = rng.standard_normal((N, I))
    h = rng.standard_normal((N, H)) if with_hx else None
    c = rng.standard_normal((N, H)) if with_hx and lstm else None
    dh, dc = rng.standard_normal((N, H)), rng.standard_normal((N, H))

    xt, ht, ct = tensor(x, dtype, True), tensor(h, dtype, True), tensor(c, dtype, True)
    hx_t = None if ht is None else ((ht, ct) if lstm else ht)
    result = t_cell(xt, hx_t)
    outs = list(result) if lstm else [result]
    torch.autograd.backward(outs, [tensor(dh, dtype)] + ([tensor(dc, dtype)] if lstm else []))
    expected = {"h_n": outs[0], "dx": xt.grad}
    if lstm:
        expected["c_n"] = outs[1]
    if with_hx:
        expected["dh0"] = ht.grad
        if lstm:
            expected["dc0"] = ct.grad
    expected.update({"grad." + k: p.grad for k, p in t_cell.named_parameters()})
    expected = {k: v.detach().numpy() for k, v in expected.items()}

    cell = make_cell(kind, I, H, backend=cpu_backend, dtype=dtype, bias=bias)
    cell.load_state_dict(numpy_state(t_cell))
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    hx = None if h is None else ((cast(h), cast(c)) if lstm else cast(h))
    where = f"{kind} cell N{N}I{I}H{H}"

    cell.eval()
    step = cell(cast(x), hx)
    inference = {"h_n": step[0], "c_n": step[1]} if lstm else {"h_n": step}
    forward_expected = {k: expected[k] for k in inference}
    assert_all_close(inference, forward_expected, TORCH_PARITY[dtype], suite="torch cells",
                     backend=cpu_backend, dtype=dtype, where=where + " eval")

    cell.train()
    step = cell(cast(x), hx)
    actual = {"h_n": step[0], "c_n": step[1]} if lstm else {"h_n": step}
    dx, dhx = cell.backward(cast(dh), cast(dc) if lstm else None)
    actual["dx"] = dx
    if with_hx:
        actual.update({"dh0": dhx[0], "dc0": dhx[1]} if lstm else {"dh0": dhx})
    actual.update({"grad." + k: g for k, g in cell.grads.items()})
    actual = {k: to_numpy(v) for k, v in actual.items()}
    check_dtypes(actual, dtype)
    assert_all_close(actual, expected, TORCH_PARITY[dtype], suite="torch cells", backend=cpu_backend,
                     dtype=dtype, where=where)


@pytest.mark.parametrize("batch_first", [False, True], ids=["", "bf"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_unbatched_input_matches_torch(cpu_backend, kind, batch_first):
    """(T, I) input and (L*D, H) states, as torch accepts them (batch_first does not apply)."""
    dtype, lstm = "float64", kind == "lstm"
    case = Case(T=4, N=1, I=3, H=5, num_layers=2, bidirectional=True, batch_first=batch_first)
    torch.manual_seed(5)
    t_module = torch_module(kind, case, dtype)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((case.T, case.I))
    h0 = rng.standard_normal((4, case.H))
    c0 = rng.standard_normal((4, case.H))
    xt, h0t, c0t = tensor(x, dtype, True), tensor(h0, dtype, True), tensor(c0, dtype, True)
    out_t, state_t = t_module(xt, (h0t, c0t) if lstm else h0t)
    hn_t = state_t[0] if lstm else state_t
    dout = rng.standard_normal(out_t.shape)
    torch.autograd.backward([out_t], [tensor(dout, dtype)])
    expected = {"out": out_t, "h_n": hn_t, "dx": xt.grad, "dh0": h0t.grad}
    expected = {k: v.detach().numpy() for k, v in expected.items()}

    m = make_module(kind, case.I, case.H, backend=cpu_backend, dtype=dtype, **case.module_kwargs())
    m.load_state_dict(numpy_state(t_module))
    out, state = m(x, (h0, c0) if lstm else h0)
    dx, dhx = m.backward(dout, None)
    actual = {"out": out, "h_n": state[0] if lstm else state, "dx": dx, "dh0": dhx[0] if lstm else dhx}
    assert_all_close(actual, expected, TORCH_PARITY[dtype], suite="torch modules",
                     backend=cpu_backend, dtype=dtype,
                     where=f"{kind} unbatched" + (" batch_first" if batch_first else ""))


def test_load_state_dict_takes_torch_tensors(cpu_backend):
    """load_state_dict takes anything np.asarray takes, torch's own state_dict included."""
    t_module = torch.nn.GRU(3, 5, num_layers=2, bidirectional=True)
    m = make_module("gru", 3, 5, backend=cpu_backend, dtype="float32", num_layers=2, bidirectional=True)
    m.load_state_dict(t_module.state_dict())
    loaded = m.state_dict()
    for k, v in t_module.state_dict().items():
        np.testing.assert_array_equal(to_numpy(loaded[k]), v.numpy(), err_msg=k)


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_unbatched_cell_matches_torch(cpu_backend, kind):
    """(I,) input and (H,) states, as torch's cells accept them."""
    dtype, lstm = "float64", kind == "lstm"
    torch.manual_seed(6)
    t_cell = torch_cell(kind, 4, 6, True, dtype)
    rng = np.random.default_rng(6)
    x, h, c, dh = (rng.standard_normal(n) for n in (4, 6, 6, 6))
    xt, ht, ct = tensor(x, dtype, True), tensor(h, dtype, True), tensor(c, dtype, True)
    result = t_cell(xt, (ht, ct) if lstm else ht)
    h1_t = result[0] if lstm else result
    torch.autograd.backward([h1_t], [tensor(dh, dtype)])
    expected = {"h_n": h1_t, "dx": xt.grad, "dh0": ht.grad}
    expected = {k: v.detach().numpy() for k, v in expected.items()}

    cell = make_cell(kind, 4, 6, backend=cpu_backend, dtype=dtype)
    cell.load_state_dict(numpy_state(t_cell))
    step = cell(x, (h, c) if lstm else h)
    dx, dhx = cell.backward(dh)
    actual = {"h_n": step[0] if lstm else step, "dx": dx, "dh0": dhx[0] if lstm else dhx}
    assert_all_close(actual, expected, TORCH_PARITY[dtype], suite="torch cells", backend=cpu_backend,
                     dtype=dtype, where=f"{kind} unbatched cell")
