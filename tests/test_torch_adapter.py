"""fastrnn.torch against torch.nn: outputs and every gradient (float64, relative error), layouts,
packed sequences, the inference path, convert(), training with torch's tools, and bad input."""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pack_sequence  # noqa: E402

import fastrnn.torch as frt  # noqa: E402
import fastrnn.torch.modules as frt_modules  # noqa: E402
from fastrnn.contract import CellKernels  # noqa: E402
from fastrnn.numerics import TORCH_PARITY  # noqa: E402
from fastrnn.torch._arrays import to_array, to_tensor  # noqa: E402
from torch_support import one_torch_thread  # noqa: E402,F401  (a fixture)
from torch_support import (KINDS, assert_close, cell_pair, flat_state, sequence_pair,  # noqa: E402
                           state_for)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
F64 = TORCH_PARITY["float64"]


def _grads(outputs, inputs, seed=0):
    """Gradients of a random linear function of every output, for the given inputs."""
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs)
    return torch.autograd.grad(loss, inputs)


def _outputs(kind, result):
    out, state = result
    data = out.data if isinstance(out, nn.utils.rnn.PackedSequence) else out
    return [data] + flat_state(kind, state)


def _compare(kind, reference, fast, make_input, hx=None):
    """Run both modules on equal inputs; compare every output and the gradients of the input, the
    states and every parameter to TORCH_PARITY (float64)."""
    results = []
    for module in (reference, fast):
        leaf, model_input = make_input()
        state = None if hx is None else (tuple(h.detach().clone().requires_grad_() for h in hx)
                                         if kind == "lstm" else hx.detach().clone().requires_grad_())
        outputs = _outputs(kind, module(model_input, state))
        inputs = [leaf] + ([] if state is None else flat_state(kind, state)) + list(module.parameters())
        results.append((outputs, _grads(outputs, inputs)))
    worst = 0.0
    for i, (a, b) in enumerate(zip(results[1][0], results[0][0])):
        worst = max(worst, assert_close(a, b, F64, f"output {i}"))
    for i, (a, b) in enumerate(zip(results[1][1], results[0][1])):
        worst = max(worst, assert_close(a, b, F64, f"gradient {i}"))
    return worst


# ------------------------------------------------------------------------------ parity with torch.nn

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", ["time_major", "batch_first", "unbatched"])
def test_layouts_and_hx_match_torch(kind, layout):
    torch.manual_seed(1)
    reference, fast = sequence_pair(kind, 3, 5, 2, bidirectional=True, dtype=torch.float64,
                                    batch_first=layout == "batch_first")
    shape = {"time_major": (4, 3, 3), "batch_first": (3, 4, 3), "unbatched": (4, 3)}[layout]
    x = torch.randn(*shape, dtype=torch.float64)
    hx = state_for(kind, (4, 5) if layout == "unbatched" else (4, 3, 5))

    def make_input():
        leaf = x.clone().requires_grad_()
        return leaf, leaf

    _compare(kind, reference, fast, make_input, hx)
    _compare(kind, reference, fast, make_input)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sorting", ["sorted", "unsorted", "pack_sequence"])
def test_packed_sequences_match_torch(kind, sorting):
    """PackedSequence in, PackedSequence out laid out like torch's, outputs and gradients to 1e-10."""
    torch.manual_seed(2)
    reference, fast = sequence_pair(kind, 3, 4, 2, bidirectional=True, dtype=torch.float64)
    lengths = {"sorted": [5, 3, 3, 1], "unsorted": [2, 5, 1, 3], "pack_sequence": [3, 5, 2, 2]}[sorting]
    x = torch.randn(5, 4, 3, dtype=torch.float64)

    def make_input():
        leaf = x.clone().requires_grad_()
        if sorting == "pack_sequence":
            return leaf, pack_sequence([leaf[:n, i] for i, n in enumerate(lengths)],
                                       enforce_sorted=False)
        return leaf, pack_padded_sequence(leaf, torch.tensor(lengths),
                                          enforce_sorted=sorting == "sorted")

    worst = _compare(kind, reference, fast, make_input, state_for(kind, (4, 4, 4)))
    assert worst <= F64
    _, packed = make_input()
    out_ref, _ = reference(packed)
    out_fast, _ = fast(packed)
    assert isinstance(out_fast, nn.utils.rnn.PackedSequence)
    for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        a, b = getattr(out_fast, field), getattr(out_ref, field)
        assert (a is None and b is None) or torch.equal(a, b), field


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_cells_match_torch(kind, batched):
    torch.manual_seed(3)
    reference, fast = cell_pair(kind, 3, 5, dtype=torch.float64)
    x = torch.randn(*((2, 3) if batched else (3,)), dtype=torch.float64)
    hx = state_for(kind, (2, 5) if batched else (5,))
    results = []
    for module in (reference, fast):
        leaf = x.clone().requires_grad_()
        state = (tuple(h.detach().clone().requires_grad_() for h in hx) if kind == "lstm"
                 else hx.detach().clone().requires_grad_())
        out = module(leaf, state)
        outputs = list(out) if kind == "lstm" else [out]
        inputs = [leaf] + flat_state(kind, state) + list(module.parameters())
        results.append((outputs, _grads(outputs, inputs)))
    for a, b in zip(results[1][0] + list(results[1][1]), results[0][0] + list(results[0][1])):
        assert_close(a, b, F64, kind)
    with torch.no_grad():      # the single-step inference kernel
        for a, b in zip(flat_state(kind, fast(x, hx)), flat_state(kind, reference(x, hx))):
            assert_close(a, b, F64, f"{kind} inference step")


def test_float32_matches_torch():
    torch.manual_seed(5)
    reference, fast = sequence_pair("lstm", 6, 8, 2, batch_first=True)
    x = torch.randn(3, 7, 6)
    out_ref, _ = reference(x)
    out_fast, _ = fast(x)
    assert_close(out_fast, out_ref, TORCH_PARITY["float32"], "float32 output")


def test_same_seed_same_initial_weights_as_torch():
    torch.manual_seed(7)
    reference = nn.GRU(4, 6, 2, bidirectional=True)
    torch.manual_seed(7)
    fast = frt.GRU(4, 6, 2, bidirectional=True)
    for (name, a), (name_b, b) in zip(reference.state_dict().items(), fast.state_dict().items()):
        assert name == name_b and torch.equal(a, b), name
    other = frt.GRU(4, 6, 2, bidirectional=True)
    reference.load_state_dict(other.state_dict())          # fastrnn -> torch.nn, strict
    fast.load_state_dict(nn.GRU(4, 6, 2, bidirectional=True).state_dict())   # and back
    assert all(torch.equal(a, b) for a, b in zip(reference.parameters(), other.parameters()))


# ------------------------------------------------------------------- inference path, dropout, memory

def test_no_grad_and_inference_mode_build_no_graph_and_agree():
    torch.manual_seed(8)
    _, fast = sequence_pair("lstm", 3, 4, 2, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out_train, _ = fast(x)
    assert out_train.grad_fn is not None
    fast.eval()
    with torch.no_grad():
        out_nograd, (h_n, _) = fast(x)
    with torch.inference_mode():
        out_inf, _ = fast(x)
    assert out_nograd.grad_fn is None and h_n.grad_fn is None
    assert torch.equal(out_nograd, out_train.detach()) and torch.equal(out_inf, out_nograd)


def test_dropout_follows_torch_seed_and_train_mode():
    fast = frt.LSTM(3, 4, num_layers=3, dropout=0.5, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.manual_seed(11)
    first, _ = fast(x)
    torch.manual_seed(11)
    again, _ = fast(x)
    with torch.no_grad():       # training mode: dropout applies under no_grad too, as in torch.nn
        torch.manual_seed(11)
        nograd, _ = fast(x)
    other, _ = fast(x)
    fast.eval()
    plain, _ = fast(x)
    assert torch.equal(first, again) and torch.equal(first.detach(), nograd)
    assert not torch.equal(first, other) and not torch.equal(first, plain)
    torch.manual_seed(11)
    fast.train()
    loss, _ = fast(x)
    loss.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in fast.parameters())


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dropout_one_drops_everything_as_in_torch(kind):
    torch.manual_seed(4)
    reference, fast = sequence_pair(kind, 3, 4, 2, dropout=1.0, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    outputs = [m(x)[0] for m in (reference, fast)]
    assert torch.isfinite(outputs[1]).all(), "dropout=1 gave non-finite outputs"
    assert_close(outputs[1], outputs[0], F64, "output")
    for name, p_ref in reference.named_parameters():
        (g_ref,) = torch.autograd.grad(outputs[0].sum(), p_ref, retain_graph=True)
        (g_fast,) = torch.autograd.grad(outputs[1].sum(), getattr(fast, name), retain_graph=True)
        assert torch.isfinite(g_fast).all(), f"{name}: non-finite gradient"
        assert_close(g_fast, g_ref, F64, f"{name} gradient")


def _spy_on_layer_forwards(monkeypatch, requests=None):
    """[(request.training, cache kept)] of every layer forward the sequence modules run from now on;
    the requests themselves are appended to `requests` when given."""
    seen = []
    real = frt_modules.kernels_for

    def spying(cell, device, backend):
        kern = real(cell, device, backend)

        def forward(request):
            result = kern.forward(request)
            seen.append((request.training, result.cache is not None))
            if requests is not None:
                requests.append(request)
            return result
        return CellKernels(forward=forward, backward=kern.backward, step=kern.step)

    monkeypatch.setattr(frt_modules, "kernels_for", spying)
    return seen


@pytest.mark.parametrize("without_autograd", ["no_grad", "inference_mode", "nothing_requires_grad"])
def test_dropout_without_autograd_applies_masks_but_keeps_no_tape(monkeypatch, without_autograd):
    torch.manual_seed(3)
    fast = frt.LSTM(3, 4, num_layers=2, dropout=0.3, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        plain, _ = fast.eval()(x)
    fast.train()
    if without_autograd == "nothing_requires_grad":
        fast.requires_grad_(False)
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode,
               "nothing_requires_grad": contextlib.nullcontext}[without_autograd]
    seen = _spy_on_layer_forwards(monkeypatch)
    runs = []
    for _ in range(2):
        torch.manual_seed(21)
        with context():
            runs.append(fast(x)[0].clone())
    assert seen == [(False, False)] * 4, "a forward without autograd kept a tape"
    assert torch.equal(runs[0], runs[1]), "the same seed gave different dropout masks"
    assert not torch.equal(runs[0], plain), "training mode without autograd applied no dropout"
    if without_autograd != "nothing_requires_grad":
        torch.manual_seed(21)
        out, _ = fast(x)            # autograd on: the tape is kept, the masks are the same
        assert seen[4:] == [(True, True)] * 2
        assert torch.equal(out.detach(), runs[0])


def test_cpu_tensors_cross_without_copies():
    t = torch.zeros(3, 4, dtype=torch.float64)
    a = to_array(t)
    a[1, 2] = 5.0
    assert t[1, 2] == 5.0
    back = to_tensor(a)
    assert back.data_ptr() == t.data_ptr()


@pytest.mark.parametrize("requires_grad", [False, True], ids=["inference", "training"])
def test_kernels_read_the_tensors_memory_without_copies(monkeypatch, requires_grad):
    fast = frt.LSTM(3, 4, dtype=torch.float64).requires_grad_(requires_grad)
    x = torch.randn(5, 2, 3, dtype=torch.float64)              # time-major and contiguous
    h0, c0 = torch.randn(1, 2, 4, dtype=torch.float64), torch.randn(1, 2, 4, dtype=torch.float64)
    requests = []
    _spy_on_layer_forwards(monkeypatch, requests)
    fast(x, (h0, c0))
    (request,) = requests
    pairs = [(request.x, x), (request.h0, h0), (request.c0, c0),
             (request.weights.w_ih, fast.weight_ih_l0), (request.weights.w_hh, fast.weight_hh_l0),
             (request.weights.b_ih, fast.bias_ih_l0), (request.weights.b_hh, fast.bias_hh_l0)]
    for array, tensor in pairs:
        assert np.shares_memory(array, tensor.detach().numpy()), "a tensor was copied on its way in"


def test_in_place_change_before_backward_is_caught():
    _, fast = sequence_pair("gru", 3, 4, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    out, _ = fast(x * 1.0)
    with torch.no_grad():
        fast.weight_hh_l0.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.parametrize("kind, dtype, options", [
    ("lstm", torch.float32, {}), ("lstm", torch.float64, {}), ("gru", torch.float32, {}),
    ("rnn_tanh", torch.float32, {}), ("lstm", torch.float32, {"bidirectional": True}),
    ("lstm", torch.float32, {"mkldnn": False})], ids=str)
def test_out_changed_in_place_before_backward_as_in_torch(team, monkeypatch, kind, dtype, options):
    """On the team a training forward's tape holds the stack's out (no copy) where torch.nn's own
    module refuses a backward after its output changed in place (its one-directional LSTM on
    oneDNN: CPU, float32), and both raise; elsewhere (another cell or dtype, two directions,
    torch.backends.mkldnn off) torch lets out change, and fastrnn's gradients then equal torch's."""
    options = dict(options)
    if not options.pop("mkldnn", True):
        monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    reference, fast = sequence_pair(kind, 5, 64, num_layers=2, dtype=dtype, **options)
    x = torch.randn(6, 3, 5, dtype=dtype)
    results = []
    for module in (reference, fast):
        leaf = x.clone().requires_grad_()
        runs = team.runs
        out, _ = module(leaf)
        if module is fast:
            assert team.runs > runs, "the forward must run on the team"
        out.mul_(3.0)
        try:
            results.append(_grads([out], [leaf] + list(module.parameters())))
        except RuntimeError as error:
            assert "modified by an inplace operation" in str(error)
            results.append(None)
    if results[0] is None or results[1] is None:
        assert results == [None, None], "fastrnn and torch must refuse the same backward"
        assert (kind, dtype, options) == ("lstm", torch.float32, {})
        return
    bound = TORCH_PARITY["float32" if dtype == torch.float32 else "float64"]
    for i, (got, want) in enumerate(zip(results[1], results[0])):
        assert_close(got, want, bound, f"gradient {i}")


def test_double_backward_raises_a_clear_error():
    _, fast = sequence_pair("lstm", 3, 4, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    out, _ = fast(x)
    with pytest.raises(RuntimeError, match=r"fastrnn.torch.LSTM has no double backward"):
        torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)


def test_retain_graph_backward_twice_gives_the_same_gradients():
    _, fast = sequence_pair("rnn_tanh", 3, 4, 2, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    out, _ = fast(x)
    (g1,) = torch.autograd.grad(out.sum(), x, retain_graph=True)
    (g2,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(g1, g2)


# ------------------------------------------------------------------------------------------ errors

def test_proj_size_is_refused_by_name():
    with pytest.raises(ValueError, match="proj_size > 0"):
        frt.LSTM(4, 8, proj_size=2)
    model = nn.Sequential(nn.LSTM(4, 8, proj_size=2))
    with pytest.raises(ValueError, match="proj_size=2"):
        frt.convert(model)
    assert type(model[0]) is nn.LSTM


@pytest.mark.parametrize("call, message", [
    (lambda m: m(torch.randn(4, 2, 3)), r"input has dtype torch.float32.*torch.float64"),
    (lambda m: m(torch.randn(4, 2, 5, dtype=torch.float64)), r"5 features.*input_size is 3"),
    (lambda m: m(torch.randn(2, 4, 2, 3, dtype=torch.float64)), r"3-D \(T, N, input_size\)"),
    (lambda m: m(torch.randn(4, 2, 3, dtype=torch.float64), torch.zeros(1, 2, 4, dtype=torch.float64)),
     r"pair \(h, c\)"),
    (lambda m: m(torch.randn(4, 2, 3, dtype=torch.float64),
                 (torch.zeros(1, 3, 4, dtype=torch.float64), torch.zeros(1, 2, 4, dtype=torch.float64))),
     r"hx\[0\] \(h_0\).*must have shape \(1, 2, 4\)"),
    (lambda m: m(np.zeros((4, 2, 3))), r"torch.Tensor or a PackedSequence"),
])
def test_bad_input_gets_one_clear_error(call, message):
    module = frt.LSTM(3, 4, dtype=torch.float64)
    with pytest.raises((TypeError, ValueError), match=message):
        call(module)


def test_unsupported_dtype_is_named():
    module = frt.GRUCell(3, 4).half()
    with pytest.raises(TypeError, match=r"float32 or float64.*torch.float16"):
        module(torch.randn(2, 3).half())


@pytest.mark.parametrize("make, name, dtype", [
    (lambda: frt.LSTM(3, 4, num_layers=2), "weight_hh_l1", torch.float64),
    (lambda: frt.GRU(3, 4), "bias_hh_l0", torch.bfloat16),
    (lambda: frt.GRUCell(3, 4), "bias_ih", torch.float16),
    (lambda: frt.RNNCell(3, 4), "weight_hh", torch.float64),
])
def test_parameters_of_mixed_dtypes_are_refused_by_name(make, name, dtype):
    module = make()
    getattr(module, name).data = getattr(module, name).data.to(dtype)
    x = torch.randn(2, 3) if isinstance(module, nn.RNNCellBase) else torch.randn(4, 2, 3)
    with pytest.raises(TypeError, match=rf"parameter {name} has dtype {dtype}.*float32 or float64"):
        module(x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_input_dtype_mismatch_is_a_value_error_as_in_torch(dtype):
    x = torch.randn(4, 2, 3).to(dtype)        # float32 modules
    with pytest.raises(ValueError):
        nn.GRU(3, 4)(x)
    with pytest.raises(ValueError, match=rf"input has dtype {dtype}.*parameters have dtype torch.float32"):
        frt.GRU(3, 4)(x)
    with pytest.raises(TypeError):      # what fastrnn.torch raised before: still caught
        frt.GRU(3, 4)(x)
    if dtype == torch.bfloat16:
        with pytest.raises(ValueError, match=r"float32 or float64 only"):
            frt.GRUCell(3, 4)(x[0])


def test_frozen_parameters_get_no_gradient_and_the_others_match_torch():
    torch.manual_seed(16)
    reference, fast = sequence_pair("lstm", 3, 4, 2, dtype=torch.float64)
    for module in (reference, fast):
        module.weight_ih_l0.requires_grad_(False)
        module.bias_hh_l1.requires_grad_(False)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for module in (reference, fast):
        out, _ = module(x)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    assert fast.weight_ih_l0.grad is None and fast.bias_hh_l1.grad is None
    for (name, p_ref), p_fast in zip(reference.named_parameters(), fast.parameters()):
        if p_ref.requires_grad:
            assert_close(p_fast.grad, p_ref.grad, F64, f"{name} gradient")


# ------------------------------------------------------------------------- convert() and training

class _Tagger(nn.Module):
    """A small model with every kind of recurrent module torch.nn has."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.lstm = nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(12, 5)
        self.rnn = nn.RNN(5, 5, nonlinearity="relu")
        self.cells = nn.ModuleList([nn.LSTMCell(5, 3), nn.GRUCell(5, 3), nn.RNNCell(5, 3)])
        self.head = nn.Linear(9, 3)

    def forward(self, tokens):
        x, _ = self.lstm(self.embed(tokens))
        x, _ = self.gru(x.transpose(0, 1))
        x, _ = self.rnn(x)
        last = x[-1]
        h_lstm, _ = self.cells[0](last)
        h = torch.cat([h_lstm, self.cells[1](last), self.cells[2](last)], dim=1)
        return self.head(h)


def _train(model, steps, data, targets):
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(data), targets)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


def test_converted_model_trains_like_the_original_over_20_adam_steps():
    torch.manual_seed(12)
    original = _Tagger().double()
    converted = frt.convert(copy.deepcopy(original))
    data = torch.randint(0, 11, (6, 7))
    targets = torch.randint(0, 3, (6,))
    expected = _train(original, 20, data, targets)
    actual = _train(converted, 20, data, targets)
    rel = max(abs(a - b) / abs(b) for a, b in zip(actual, expected))
    assert rel <= 1e-9, f"losses differ by {rel:.2e} relative"
    assert expected[-1] < expected[0]
    for (name, a), (_, b) in zip(converted.state_dict().items(), original.state_dict().items()):
        assert_close(a, b, 1e-9, name)


def test_convert_is_in_place_and_keeps_parameters():
    torch.manual_seed(13)
    model = _Tagger()
    before = {name: p for name, p in model.named_parameters()}
    values = copy.deepcopy(model.state_dict())
    assert frt.convert(model) is model
    assert type(model.lstm) is frt.LSTM and type(model.gru) is frt.GRU and type(model.rnn) is frt.RNN
    assert [type(c) for c in model.cells] == [frt.LSTMCell, frt.GRUCell, frt.RNNCell]
    assert model.rnn.nonlinearity == "relu" and model.lstm.batch_first
    for name, p in model.named_parameters():
        assert p is before[name] and torch.equal(p, values[name]), name
    assert frt.convert(model) is model and type(model.lstm) is frt.LSTM


def test_converted_model_state_dict_save_load_to_and_double():
    torch.manual_seed(14)
    model = frt.convert(_Tagger())
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    plain = _Tagger()
    plain.load_state_dict(torch.load(buffer))
    tokens = torch.randint(0, 11, (2, 5))
    assert torch.allclose(plain(tokens), model(tokens), rtol=1e-5, atol=1e-6)
    model.double()
    assert model.lstm.weight_ih_l0.dtype == torch.float64
    plain.double()
    assert_close(model(tokens), plain(tokens), F64, "after .double()")
    model.to(torch.float32).to("cpu")
    assert model(tokens).dtype == torch.float32


# ------------------------------------------------------------------------------------------- docs

def _public_names():
    from fastrnn.torch import models
    return [getattr(frt, n) for n in frt.__all__] + [models.CharLM, models.char_lm,
                                                     models.char_lm_train_step, models.char_lm_sample]


@pytest.mark.parametrize("obj", _public_names(), ids=lambda o: o.__name__)
def test_public_names_have_numpydoc_sections_and_working_examples(obj):
    import doctest
    doc = obj.__doc__ or ""
    for section in ("Parameters\n", "Inputs\n", "Outputs\n", "Examples\n"):
        assert section in doc, f"{obj.__name__} docstring lacks {section.strip()}"
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    module = __import__(obj.__module__, fromlist=["_"])
    for test in finder.find(obj, obj.__name__, module=module, globs={}):
        runner.run(test)
    assert runner.tries > 0, f"{obj.__name__}: no docstring example ran"
    assert runner.failures == 0, f"{obj.__name__}: {runner.failures} docstring example(s) failed"


def test_non_contiguous_parameters_and_gradients_are_handled():
    torch.manual_seed(15)
    reference, fast = sequence_pair("gru", 3, 4, dtype=torch.float64)
    with torch.no_grad():
        transposed = fast.weight_hh_l0.detach().t().contiguous().t()   # same values, strided
    fast.weight_hh_l0 = nn.Parameter(transposed)
    assert not fast.weight_hh_l0.is_contiguous()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    outputs = [m(x)[0] for m in (reference, fast)]
    grads = [torch.autograd.grad(o.sum(), m.weight_hh_l0)[0]      # sum(): a stride-0 gradient
             for o, m in zip(outputs, (reference, fast))]
    assert_close(outputs[1], outputs[0], F64, "output")
    assert_close(grads[1], grads[0], F64, "weight_hh_l0 gradient")
