"""fastrnn.torch: PyTorch modules whose forward and backward run fastrnn's kernels.

``LSTM``, ``GRU``, ``RNN``, ``LSTMCell``, ``GRUCell`` and ``RNNCell`` are subclasses of their torch.nn
twins (same constructor, parameters and state_dict) with gradients through ``torch.autograd``;
``convert(model)`` switches every torch.nn recurrent module of an existing model in place. This is the
only part of fastrnn that imports torch (install it with the ``fastrnn[torch]`` extra).

    import fastrnn.torch as frt
    model = frt.convert(model)          # or: lstm = frt.LSTM(64, 256, num_layers=2)
"""
from .cell_modules import GRUCell, LSTMCell, RNNCell
from .convert import convert
from .modules import GRU, LSTM, RNN

__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "convert"]
