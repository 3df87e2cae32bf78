"""torch.autograd.gradcheck (float64 finite differences) of every fastrnn.torch module and cell:
1-3 layers, one or two directions, with and without bias; gradients for the input, the initial
state(s) and every parameter, all computed by fastrnn's kernels."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch.func import functional_call  # noqa: E402

from torch_support import one_torch_thread  # noqa: E402,F401  (a fixture)
from torch_support import KINDS, cell_pair, flat_state, sequence_pair, state_for  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T, N, I, H = 3, 2, 3, 2


def _check(module, kind, inputs):
    """gradcheck of module(x, hx) with respect to x, the state(s) and every parameter."""
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in module.named_parameters()]
    n_in = len(inputs)

    def run(*tensors):
        x, state = tensors[0], tensors[1:n_in]
        hx = tuple(state) if kind == "lstm" else state[0]
        result = functional_call(module, dict(zip(names, tensors[n_in:])), (x, hx))
        return result if isinstance(result, torch.Tensor) else _flatten(result)

    assert torch.autograd.gradcheck(run, tuple(inputs) + tuple(params), eps=1e-6, atol=1e-8,
                                    rtol=1e-6)


def _flatten(result):
    flat = []
    for part in result:
        flat.extend(_flatten(part) if isinstance(part, tuple) else [part])
    return tuple(flat)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_sequence_module_gradcheck(kind, num_layers, bidirectional, bias):
    torch.manual_seed(num_layers * 10 + bidirectional)
    _, fast = sequence_pair(kind, I, H, num_layers, bias=bias, bidirectional=bidirectional,
                            dtype=torch.float64)
    rows = num_layers * (2 if bidirectional else 1)
    x = torch.randn(T, N, I, dtype=torch.float64, requires_grad=True)
    hx = state_for(kind, (rows, N, H))
    _check(fast, kind, [x] + flat_state(kind, hx))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_gradcheck(kind, bias):
    torch.manual_seed(3)
    _, fast = cell_pair(kind, I, H, bias=bias, dtype=torch.float64)
    x = torch.randn(N, I, dtype=torch.float64, requires_grad=True)
    hx = state_for(kind, (N, H))
    _check(fast, kind, [x] + flat_state(kind, hx))


def test_gradcheck_with_lengths_and_batch_first():
    """Variable lengths through a PackedSequence (unsorted), two layers, both directions."""
    from torch.nn.utils.rnn import pack_padded_sequence
    torch.manual_seed(4)
    _, fast = sequence_pair("gru", I, H, 2, bidirectional=True, batch_first=True,
                            dtype=torch.float64)
    names = [name for name, _ in fast.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in fast.named_parameters()]
    x = torch.randn(3, 4, I, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([2, 4, 1])

    def run(x, *weights):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, h_n = functional_call(fast, dict(zip(names, weights)), (packed,))
        return out.data, h_n

    assert torch.autograd.gradcheck(run, (x, *params), eps=1e-6, atol=1e-8, rtol=1e-6)
