"""convert(model): every torch.nn recurrent module inside a model switched to fastrnn, in place."""
from __future__ import annotations

from torch import nn

from .cell_modules import GRUCell, LSTMCell, RNNCell
from .modules import GRU, LSTM, RNN, check_no_projection

# Exact torch.nn types only: a user's own subclass may override forward, and a fastrnn module is
# already converted.
_REPLACEMENTS = {nn.LSTM: LSTM, nn.GRU: GRU, nn.RNN: RNN,
                 nn.LSTMCell: LSTMCell, nn.GRUCell: GRUCell, nn.RNNCell: RNNCell}


def convert(module: nn.Module, backend=None) -> nn.Module:
    """Switch every ``torch.nn`` RNN, LSTM, GRU, RNNCell, LSTMCell and GRUCell inside `module` to its
    fastrnn.torch twin, in place, and return `module`.

    Each module keeps its identity, its Parameter objects (so an optimizer built before the call
    still updates them), their values, device and dtype, its hooks and its train/eval mode: only its
    class changes, to the fastrnn.torch subclass of the same torch.nn class. Subclasses of those
    torch.nn classes are left alone (their forward may differ), as are modules already converted.

    Parameters
    ----------
    module : torch.nn.Module
        The model (or a single recurrent module) to convert.
    backend : str, optional
        fastrnn backend for the converted modules ("numba", "numpy", "cupy"); None means the best
        available for the tensors' device at each call.

    Inputs
    ------
    None : convert is a function, not a module; the converted modules take torch.nn's inputs.

    Outputs
    -------
    module : torch.nn.Module
        The same object, converted.

    Raises
    ------
    ValueError
        An nn.LSTM with ``proj_size > 0`` (not supported yet); nothing is converted then.

    Examples
    --------
    >>> import torch, fastrnn.torch as frt
    >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 8))
    >>> model.add_module("rnn", torch.nn.GRU(8, 16, batch_first=True))
    >>> frt.convert(model) is model, type(model.rnn).__module__
    (True, 'fastrnn.torch.modules')
    """
    targets = [m for m in module.modules() if type(m) in _REPLACEMENTS]
    for m in targets:
        check_no_projection(m)
    for m in targets:
        m.__class__ = _REPLACEMENTS[type(m)]
        m._init_fastrnn(backend)
    return module
