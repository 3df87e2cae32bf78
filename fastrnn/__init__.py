"""fastrnn: fused RNN, LSTM and GRU kernels (forward and backpropagation through time) for the CPU
(Numba) and NVIDIA GPUs (CUDA through CuPy), with PyTorch-compatible weights and semantics.

    import fastrnn as fr
    lstm = fr.LSTM(input_size=32, hidden_size=64)
    out, (h_n, c_n) = lstm(x)                 # x: (T, N, 32) float32 NumPy array
    dx, (dh0, dc0) = lstm.backward(dout)      # gradients; lstm.grads holds the parameters'
"""
from ._docstrings import fill_module_docs
from .dispatch import BackendUnavailableError, backends
from .layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .threads import get_num_threads, set_num_threads

fill_module_docs()

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "backends",
           "BackendUnavailableError", "set_num_threads", "get_num_threads", "__version__"]
