"""The public modules: RNN, LSTM, GRU and RNNCell, LSTMCell, GRUCell.

PyTorch's parameter names, shapes, initialisation and semantics, with NumPy (device="cpu") or CuPy
(device="cuda") arrays in and out, and an explicit `backward` instead of autograd. The modules own
parameters, validation, layout (batch_first, unbatched input) and train/eval; the arithmetic is the
backend's, reached through the dispatch registry.

The six modules' docstrings share their Parameters, Inputs, Outputs and Attributes sections: the
``%(sequence_sections)s`` or ``%(cell_sections)s`` line in each is filled in from fastrnn/_docstrings.py
when fastrnn is imported, so help() and the docs show the whole text.

Thread safety: a training-mode forward keeps its tape (what backward needs) per thread, and `grads`
is per thread too, so one module may be trained from several threads: each thread's backward goes
back through that thread's own last forward. Eval-mode forwards and cell steps keep nothing and are
safe from many threads at once. The tape owns private copies of the parameters and of the input
(where the module would otherwise read the caller's array), and the out a training forward returns
is the caller's own (a copy where the kernels' tape holds theirs: the CPU thread team keeps out as
the states its steps started from), so changing any of them between forward and backward does not
change the gradients: backward returns those of the forward that was run.
Updating parameters in place while another thread runs a forward is not synchronised: a training
forward copies the parameters as it starts and may copy a mix of old and new values, and an
eval-mode forward or cell step reads the live arrays throughout and may use old values for some
steps and new ones for others; nothing fails, but the result matches neither set of parameters, so
hold a lock around such updates.
"""
from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import dispatch
from .cells import GRU as GRU_SPEC
from .cells import LSTM as LSTM_SPEC
from .cells import CellSpec, rnn_cell
from .contract import BackwardRequest, ForwardRequest, LayerWeights, StepRequest
from .devices import array_module, check_device, to_host
from .functional import stack_backward, stack_forward
from .validation import FLOAT_DTYPES, as_module_array, check_lengths, check_shape


def _check_dtype(dtype) -> np.dtype:
    # None is refused rather than read as NumPy's float64: torch reads it as float32.
    try:
        dt = None if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):
        dt = None
    # `is None` first: np.dtype('float64') == None is True, so `None in FLOAT_DTYPES` would pass.
    if dt is None or dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def _refuse_unknown(module, unknown: dict) -> None:
    """Python's own error for an unexpected keyword, but naming the class the caller built
    (LSTM, GRUCell, ...) rather than the private base whose __init__ received it."""
    if unknown:
        raise TypeError(f"{type(module).__name__}.__init__() got an unexpected keyword argument "
                        f"{next(iter(unknown))!r}")


def _check_size(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class _Tape:
    """What one training forward leaves for its backward, the same for the sequence modules and the
    cells. Every array it reaches is private to it (see _Module._tape_inputs)."""

    record: object        # a functional.StackTape (sequence modules) or the backend's cache (cells)
    input_shape: tuple    # the time-major input the kernels saw: (T, N, input_size)
    unbatched: bool       # the caller's arrays had no batch axis
    batch_first: bool = False


class _ThreadState(threading.local):
    """One thread's tape and gradients: threading.local runs __init__ once in every thread that
    touches it, so a backward can only ever see the forward made in its own thread."""

    def __init__(self):
        self.tape: Optional[_Tape] = None
        self.grads: dict = {}


class _Module:
    """Parameters, devices, state_dict and train/eval shared by the sequence modules and the cells."""

    def __init__(self, cell: CellSpec, *, dtype, backend, device, seed):
        self.cell = cell
        self.dtype = _check_dtype(dtype)
        self.device = check_device(device)
        self._requested_backend = backend
        # The backend first: without CuPy, resolve() raises the documented BackendUnavailableError
        # (as .to("cuda") does) before array_module() could fail with a plain RuntimeError.
        self.backend = dispatch.resolve(backend, self.device, cell)
        self._kernels = dispatch.kernels(cell, self.backend)
        self._array_type = array_module(self.device).ndarray
        self._rng = np.random.default_rng(seed)
        self._params: "OrderedDict[str, object]" = OrderedDict()
        self._thread = _ThreadState()
        self.training = True

    def __call__(self, *args, **kwargs):
        # Through self.forward, so that a subclass overriding forward is not bypassed.
        return self.forward(*args, **kwargs)

    @property
    def grads(self) -> dict:
        """Gradients of the parameters by name, from the last backward() made in this thread."""
        return self._thread.grads

    @grads.setter
    def grads(self, value: dict) -> None:
        self._thread.grads = value

    # A threading.local can be neither pickled nor deep-copied: a copy gets a fresh one, with no
    # tape (there is no forward of its own to go back through) and the calling thread's gradients.
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_thread"] = state["_thread"].grads
        return state

    def __setstate__(self, state):
        grads = state["_thread"]
        self.__dict__.update(state)
        self._thread = _ThreadState()
        self.grads = grads

    # -- parameters -------------------------------------------------------------------------------
    def _init_params(self, shapes: "OrderedDict[str, tuple]", hidden_size: int) -> None:
        """PyTorch's default: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), drawn in declaration order."""
        bound = 1.0 / np.sqrt(hidden_size)
        xp = array_module(self.device)
        for name, shape in shapes.items():
            values = self._rng.uniform(-bound, bound, size=shape).astype(self.dtype)
            self._params[name] = xp.asarray(values)

    def named_parameters(self):
        """The parameters with their names, as live arrays (not copies).

        Returns
        -------
        list of (str, array)
            ``(name, parameter)`` pairs in PyTorch's order and under PyTorch's names. Updating an
            array in place (``p -= lr * grads[name]``) changes the module; rebinding a name does
            not.

        Examples
        --------
        >>> cell = fr.GRUCell(3, 5)
        >>> [(name, p.shape) for name, p in cell.named_parameters()]
        [('weight_ih', (15, 3)), ('weight_hh', (15, 5)), ('bias_ih', (15,)), ('bias_hh', (15,))]
        """
        return list(self._params.items())

    def parameters(self):
        """The parameters as live arrays, in the order of `named_parameters`.

        Returns
        -------
        list of array
            The module's own arrays (not copies): in-place updates change the module.

        Examples
        --------
        >>> rnn = fr.RNN(3, 4, bias=False)
        >>> [p.shape for p in rnn.parameters()]
        [(4, 3), (4, 4)]
        """
        return list(self._params.values())

    def __getattr__(self, name):
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def state_dict(self) -> "OrderedDict[str, object]":
        """A copy of every parameter under PyTorch's names.

        Returns
        -------
        collections.OrderedDict of str to array
            Copies (NumPy arrays on "cpu", CuPy arrays on "cuda") with the names and shapes that
            the matching ``torch.nn`` module's ``state_dict()`` has, so each side loads the other's.

        Examples
        --------
        >>> lstm = fr.LSTM(3, 4, bidirectional=True)
        >>> list(lstm.state_dict())[:5]
        ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0', 'weight_ih_l0_reverse']
        >>> lstm.state_dict()["weight_hh_l0"].shape
        (16, 4)
        """
        return OrderedDict((k, v.copy()) for k, v in self._params.items())

    def load_state_dict(self, state) -> None:
        """Replace every parameter with the values in `state`.

        Parameters
        ----------
        state : mapping of str to array_like
            A value for every parameter and for nothing else, under PyTorch's names: a
            ``state_dict()`` of this module or of the matching ``torch.nn`` module (CPU tensors,
            NumPy or CuPy arrays, or anything ``numpy.asarray`` takes). Values are converted to
            the module's dtype and copied to its device.

        Raises
        ------
        TypeError
            When `state` is not a mapping (a list of pairs, say).
        KeyError
            When a name is missing or not one of the module's, naming both lists.
        ValueError
            When a value's shape is not the parameter's.

        Examples
        --------
        >>> a, b = fr.GRU(3, 4, seed=0), fr.GRU(3, 4, seed=1)
        >>> b.load_state_dict(a.state_dict())
        >>> bool((a.weight_hh_l0 == b.weight_hh_l0).all())
        True
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict expects a mapping of parameter names to arrays (like "
                            f"the OrderedDict state_dict() returns), got a {type(state).__name__}")
        missing = [k for k in self._params if k not in state]
        unexpected = [k for k in state if k not in self._params]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise KeyError(f"load_state_dict: {'; '.join(parts)}; expected exactly "
                           f"{list(self._params)}")
        xp = array_module(self.device)
        loaded = {}
        for name, current in self._params.items():
            value = to_host(state[name])
            if tuple(value.shape) != tuple(current.shape):
                raise ValueError(f"load_state_dict: {name} must have shape {tuple(current.shape)}, "
                                 f"got {tuple(value.shape)}")
            loaded[name] = xp.asarray(value.astype(self.dtype))
        self._params.update(loaded)

    # -- modes and devices ------------------------------------------------------------------------
    def train(self, mode: bool = True):
        """Set training mode (the default) or, with ``mode=False``, eval mode.

        In training mode a forward keeps what `backward` needs and applies dropout between
        layers; in eval mode it keeps nothing, applies no dropout, and the cells take their
        low-latency single-step path.

        Parameters
        ----------
        mode : bool, default True
            True for training mode, False for eval mode.

        Returns
        -------
        self
            The module itself, so that ``m = fr.LSTM(...).train()`` works.

        Examples
        --------
        >>> m = fr.RNN(3, 4).train(False)
        >>> m.training
        False
        >>> m.train().training
        True
        """
        self.training = bool(mode)
        return self

    def eval(self):
        """Set eval mode: the same as ``train(False)``.

        Returns
        -------
        self
            The module itself.

        Examples
        --------
        >>> cell = fr.LSTMCell(3, 4).eval()
        >>> cell.training
        False
        """
        return self.train(False)

    def to(self, device: str):
        """Move the parameters (and gradients) to `device` and switch to a backend for it.

        A backend asked for by name at construction is kept when it runs on `device` and replaced
        by ``"auto"`` when it does not; with none asked for, the choice is made as the constructor
        makes it (``FASTRNN_BACKEND``, else ``"auto"``). What the last training forward kept for
        `backward` is dropped.

        Parameters
        ----------
        device : {"cpu", "cuda"}
            Where the parameters go: NumPy arrays on "cpu", CuPy arrays on "cuda".

        Returns
        -------
        self
            The module itself, moved.

        Raises
        ------
        BackendUnavailableError
            When no backend runs on `device` here (for "cuda": no CuPy or no GPU).

        Examples
        --------
        >>> m = fr.GRU(3, 4)
        >>> m.to("cpu") is m
        True
        >>> m.to("cuda").backend        # doctest: +SKIP
        'cupy'
        """
        device = check_device(device)
        if device == self.device:
            return self
        backend = self._requested_backend
        if backend not in (None, "auto") and dispatch.backend_info(backend).device != device:
            backend = "auto"
        name = dispatch.resolve(backend, device, self.cell)
        kern = dispatch.kernels(self.cell, name)
        xp = array_module(device)
        self._params = OrderedDict((k, xp.asarray(to_host(v))) for k, v in self._params.items())
        grads = {k: xp.asarray(to_host(v)) for k, v in self.grads.items()}
        self.device, self.backend, self._kernels = device, name, kern
        self._array_type = xp.ndarray
        # Every thread's tape lives on the old device: drop them all (other threads' gradients too).
        self._thread = _ThreadState()
        self.grads = grads
        return self

    def _xp(self):
        return array_module(self.device)

    def _require_tape(self) -> _Tape:
        tape = self._thread.tape
        if tape is None:
            raise RuntimeError(
                "backward() needs a forward pass made in training mode first (call .train() before "
                "the forward; in eval mode the forward keeps nothing for backward)")
        return tape

    def _tape_inputs(self, x_kernel, x_caller, xp):
        """The input and the parameters for a training forward, as arrays the tape owns: x_kernel,
        copied if it shares memory with the caller's x, and a copy of every parameter. A change to
        either between forward and backward (x reused as a buffer, an optimizer step) then leaves
        backward computing the gradients of the forward that was run (torch raises there instead)."""
        if xp.may_share_memory(x_kernel, x_caller):
            x_kernel = x_kernel.copy()
        return x_kernel, OrderedDict((k, v.copy()) for k, v in self._params.items())


class _RNNBase(_Module):
    """A stack of recurrent layers over whole sequences (PyTorch's nn.RNN / nn.LSTM / nn.GRU)."""

    _CELL: CellSpec   # set by each subclass (or computed by _cell_spec)

    def _cell_spec(self) -> CellSpec:
        return self._CELL

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype="float32", backend=None, device="cpu",
                 seed=None, **unknown):
        _refuse_unknown(self, unknown)
        self.input_size = _check_size(input_size, "input_size")
        self.hidden_size = _check_size(hidden_size, "hidden_size")
        self.num_layers = _check_size(num_layers, "num_layers")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero "
                          f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", UserWarning, stacklevel=2)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        super().__init__(self._cell_spec(), dtype=dtype, backend=backend, device=device,
                         seed=seed)
        self._init_params(self._param_shapes(), self.hidden_size)

    def _param_shapes(self) -> "OrderedDict[str, tuple]":
        shapes: "OrderedDict[str, tuple]" = OrderedDict()
        for layer in range(self.num_layers):
            layer_in = self.input_size if layer == 0 else self.hidden_size * self.num_directions
            per_dir = self.cell.weight_shapes(layer_in, self.hidden_size)
            for direction in range(self.num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                for kind in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ()):
                    shapes[kind + suffix] = per_dir[kind]
        return shapes

    def _param_name(self, kind: str, layer: int, direction: int) -> str:
        return f"{kind}_l{layer}" + ("_reverse" if direction else "")

    def _weights(self, p):
        out = []
        for layer in range(self.num_layers):
            dirs = []
            for d in range(self.num_directions):
                names = [self._param_name(k, layer, d) for k in ("weight_ih", "weight_hh",
                                                                  "bias_ih", "bias_hh")]
                dirs.append(tuple(p[n] if n in p else None for n in names))
            out.append(dirs)
        return out

    def __repr__(self):
        extra = "" if not self.bidirectional else ", bidirectional=True"
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}{extra}, dtype={self.dtype.name}, "
                f"device={self.device!r}, backend={self.backend!r})")

    # -- forward ----------------------------------------------------------------------------------
    def _state_shape(self, batch: Optional[int]):
        rows = self.num_layers * self.num_directions
        return (rows, self.hidden_size) if batch is None else (rows, batch, self.hidden_size)

    def _state_arrays(self, value, arg: str, parts: tuple, batch, unbatched, xp):
        """Checked, time-major (with a batch axis) arrays for a state argument: hx (h_0, c_0) of the
        forward or dhn (dh_n, dc_n) of the backward. For the LSTM `value` is a pair, either part may
        be None; None means zeros. Returns (h-like, c-like or None)."""
        if not self.cell.has_cell_state:
            values, names = (value,), (arg,)
        else:
            if value is None:
                value = (None, None)
            if not (isinstance(value, (tuple, list)) and len(value) == 2):
                raise TypeError(f"{arg} of an LSTM must be a pair ({parts[0]}, {parts[1]}) "
                                "(either may be None) or None")
            values = value
            names = tuple(f"{arg}[{i}] ({part})" for i, part in enumerate(parts))
        layout = f"(num_layers * num_directions, {'' if unbatched else 'batch, '}hidden_size)"
        expected = self._state_shape(None if unbatched else batch)
        arrays = []
        for part, name in zip(values, names):
            if part is None:
                arrays.append(xp.zeros(self._state_shape(batch), dtype=self.dtype))
                continue
            arr = as_module_array(part, name, self.device, self.dtype, xp)
            check_shape(arr, expected, f"{name} {layout}")
            arrays.append(xp.ascontiguousarray(arr[:, None] if unbatched else arr))
        return arrays[0], (arrays[1] if self.cell.has_cell_state else None)

    def _dropout_mask(self, shape):
        keep = 1.0 - self.dropout
        mask = (self._rng.random(shape) < keep).astype(self.dtype) / self.dtype.type(keep)
        return self._xp().asarray(mask)

    def forward(self, x, hx=None, lengths=None):
        """Run every layer and direction over a batch of sequences; ``m(x)`` does the same.

        In training mode the forward also keeps what `backward` needs (and applies dropout
        between layers); in eval mode it keeps nothing. Below, ``D`` is 2 for a bidirectional
        module and 1 otherwise, ``L`` is ``num_layers`` and ``H`` is ``hidden_size``.

        Parameters
        ----------
        x : array, shape (T, N, input_size)
            The input: ``(N, T, input_size)`` with ``batch_first``, or ``(T, input_size)`` for
            one unbatched sequence. Its dtype must be the module's (fastrnn never converts
            precision silently) and it must live on the module's device (NumPy array for "cpu",
            CuPy array for "cuda").
        hx : array or pair of arrays, optional
            The initial state, zeros when None. For RNN and GRU, ``h_0`` of shape ``(L * D, N, H)``
            (``(L * D, H)`` unbatched); for LSTM the pair ``(h_0, c_0)`` of two such arrays, either
            of which may be None. Row ``layer * D + direction``; never batch-first.
        lengths : array_like of int, shape (N,), optional
            Each sequence's own length, in ``1..T``. Steps past a sequence's length are not
            computed: their outputs are zero, ``h_n`` holds each sequence's state at its own last
            step, and the reverse direction starts from there (what PyTorch's
            ``pack_padded_sequence`` gives). None means every sequence has length ``T``.

        Returns
        -------
        out : array, shape (T, N, D * H)
            The last layer's hidden state at every step, forward direction then reverse on the
            last axis; ``(N, T, D * H)`` with ``batch_first``, ``(T, D * H)`` unbatched.
        h_n : array or pair of arrays
            Every layer's final state, laid out like ``hx``: ``h_n`` for RNN and GRU, the pair
            ``(h_n, c_n)`` for LSTM.

        Raises
        ------
        TypeError
            When an array has another dtype, lives on the other device, or (LSTM) ``hx`` is not
            a pair.
        ValueError
            When a shape does not fit the module, or a length is outside ``1..T``.

        Examples
        --------
        >>> gru = fr.GRU(4, 8, bidirectional=True)
        >>> x = np.ones((6, 2, 4), np.float32)
        >>> out, h_n = gru.forward(x, lengths=[6, 3])
        >>> out.shape, h_n.shape
        ((6, 2, 16), (2, 2, 8))
        >>> bool((out[3:, 1] == 0).all())     # sequence 1 ends after 3 steps
        True
        """
        xp = self._xp()
        x = as_module_array(x, "input", self.device, self.dtype, xp)
        if x.ndim not in (2, 3):
            layout = "(N, T, input_size)" if self.batch_first else "(T, N, input_size)"
            raise ValueError(f"input must be 3-D {layout} or unbatched 2-D (T, input_size), "
                             f"got {x.ndim}-D with shape {tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input has {x.shape[-1]} features in its last axis, but the module's "
                             f"input_size is {self.input_size}")
        unbatched = x.ndim == 2
        if unbatched:
            x_tm = x[:, None, :]
        else:
            x_tm = x.transpose(1, 0, 2) if self.batch_first else x
        x_tm = xp.ascontiguousarray(x_tm)
        T, N, _ = x_tm.shape
        if T == 0 or N == 0:
            raise ValueError(f"input must have at least one time step and one sequence, "
                             f"got shape {tuple(x.shape)}")
        h0, c0 = self._state_arrays(hx, "hx", ("h_0", "c_0"), N, unbatched, xp)
        lengths_dev = None
        if lengths is not None:
            host = check_lengths(lengths, T, N)
            if not np.all(host == T):
                lengths_dev = xp.asarray(host.astype(np.int32))
        training = self.training
        params = self._params
        if training:
            x_tm, params = self._tape_inputs(x_tm, x, xp)
        self._thread.tape = None
        out, h_n, c_n, tape = stack_forward(
            self._kernels, self.cell, self._weights(params), x_tm, h0, c0, lengths_dev, training,
            self.dropout if training else 0.0, self._dropout_mask, xp, private_out=True)
        if training:
            self._thread.tape = _Tape(tape, (T, N, self.input_size), unbatched, self.batch_first)
        if unbatched:
            out, h_n = out[:, 0], h_n[:, 0]
            c_n = None if c_n is None else c_n[:, 0]
        elif self.batch_first:
            out = out.transpose(1, 0, 2)
        return out, ((h_n, c_n) if self.cell.has_cell_state else h_n)

    # -- backward ---------------------------------------------------------------------------------
    def backward(self, dout, dhn=None):
        """Backpropagation through time for the last training-mode forward.

        Computes the gradients of a loss with respect to the input, the initial state and every
        parameter, given its gradients with respect to the forward's outputs. The parameters'
        gradients replace `grads` (they are not accumulated). Layouts follow that forward:
        ``batch_first``, unbatched input and ``lengths`` apply to the gradients as they did to
        the arrays.

        Parameters
        ----------
        dout : array
            Gradient of the loss with respect to ``out``, with ``out``'s shape, dtype and device.
        dhn : array or pair of arrays, optional
            Gradient with respect to the final state, laid out like ``h_n``: for LSTM the pair
            ``(dh_n, dc_n)``, either of which may be None. None means zero.

        Returns
        -------
        dx : array
            Gradient with respect to ``x``, with its shape.
        dhx : array or pair of arrays
            Gradient with respect to the initial state, laid out like ``hx``: ``dh_0``, or the pair
            ``(dh_0, dc_0)`` for LSTM.

        Raises
        ------
        RuntimeError
            When the module made no training-mode forward since it was built or moved, or the
            last forward was in eval mode.

        Examples
        --------
        >>> lstm = fr.LSTM(4, 8, num_layers=2)
        >>> out, (h_n, c_n) = lstm(np.ones((5, 3, 4), np.float32))
        >>> dx, (dh_0, dc_0) = lstm.backward(np.ones_like(out), (None, np.ones_like(c_n)))
        >>> dx.shape, dh_0.shape, dc_0.shape
        ((5, 3, 4), (2, 3, 8), (2, 3, 8))
        >>> sorted(lstm.grads) == sorted(lstm.state_dict())
        True
        """
        tape = self._require_tape()
        xp = self._xp()
        T, N, _ = tape.input_shape
        out_width = self.hidden_size * self.num_directions
        if tape.unbatched:
            out_shape = (T, out_width)
        else:
            out_shape = (N, T, out_width) if tape.batch_first else (T, N, out_width)
        dout = as_module_array(dout, "dout", self.device, self.dtype, xp)
        check_shape(dout, out_shape, "dout (the gradient of out)")
        if tape.unbatched:
            dout_tm = dout[:, None, :]
        else:
            dout_tm = dout.transpose(1, 0, 2) if tape.batch_first else dout
        dout_tm = xp.ascontiguousarray(dout_tm)
        dh_n, dc_n = self._state_arrays(dhn, "dhn", ("dh_n", "dc_n"), N, tape.unbatched, xp)
        dx, dh0, dc0, grads = stack_backward(self._kernels, self.cell, tape.record, dout_tm, dh_n,
                                             dc_n, xp)
        self.grads = self._named_grads(grads)
        if tape.unbatched:
            dx, dh0 = dx[:, 0], dh0[:, 0]
            dc0 = None if dc0 is None else dc0[:, 0]
        elif tape.batch_first:
            dx = dx.transpose(1, 0, 2)
        return dx, ((dh0, dc0) if self.cell.has_cell_state else dh0)

    def _named_grads(self, grads):
        named = {}
        for layer, per_dir in enumerate(grads):
            for direction, values in enumerate(per_dir):
                for kind, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), values):
                    name = self._param_name(kind, layer, direction)
                    if name in self._params:
                        named[name] = value
        return {k: named[k] for k in self._params}


class RNN(_RNNBase):
    """A multi-layer Elman RNN with tanh or ReLU, like ``torch.nn.RNN``.

    For each layer, direction and time step ``t``, with ``x_t`` the layer's input and
    ``h_{t-1}`` its previous hidden state (zeros, or ``hx``, at the first step)::

        h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)      (or relu instead of tanh)

    %(sequence_sections)s

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> rnn = fr.RNN(10, 20, num_layers=2, nonlinearity="relu", seed=0)
    >>> x = np.random.default_rng(0).standard_normal((5, 3, 10), dtype=np.float32)
    >>> out, h_n = rnn(x, np.zeros((2, 3, 20), np.float32))
    >>> out.shape, h_n.shape
    ((5, 3, 20), (2, 3, 20))
    >>> dx, dh_0 = rnn.backward(np.ones_like(out))
    >>> dx.shape, rnn.grads["weight_ih_l1"].shape
    ((5, 3, 10), (20, 20))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *, dtype="float32",
                 backend=None, device="cpu", seed=None):
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, backend=backend, device=device, seed=seed)

    def _cell_spec(self) -> CellSpec:
        return rnn_cell(self.nonlinearity)


class LSTM(_RNNBase):
    """A multi-layer long short-term memory network, like ``torch.nn.LSTM`` (without ``proj_size``).

    For each layer, direction and time step ``t``, with ``x_t`` the layer's input and
    ``h_{t-1}`` its previous hidden state (zeros, or ``hx``, at the first step)::

        i = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
        f = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
        g = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        o = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    %(sequence_sections)s

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> lstm = fr.LSTM(10, 20, num_layers=2, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((5, 3, 10), dtype=np.float32)
    >>> out, (h_n, c_n) = lstm(x)
    >>> out.shape, h_n.shape, c_n.shape
    ((5, 3, 20), (2, 3, 20), (2, 3, 20))
    >>> dx, (dh_0, dc_0) = lstm.backward(np.ones_like(out))
    >>> dx.shape, lstm.grads["weight_hh_l1"].shape
    ((5, 3, 10), (80, 20))
    """

    _CELL = LSTM_SPEC


class GRU(_RNNBase):
    """A multi-layer gated recurrent unit, like ``torch.nn.GRU``.

    For each layer, direction and time step ``t``, with ``x_t`` the layer's input and
    ``h_{t-1}`` its previous hidden state (zeros, or ``hx``, at the first step)::

        r = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    %(sequence_sections)s

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> gru = fr.GRU(10, 20, batch_first=True, bidirectional=True, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((3, 5, 10), dtype=np.float32)
    >>> out, h_n = gru(x)                   # batch-first: (N, T, I) in, (N, T, D * H) out
    >>> out.shape, h_n.shape
    ((3, 5, 40), (2, 3, 20))
    >>> gru.eval()(x[0])[0].shape           # one unbatched sequence, inference only
    (5, 40)
    """

    _CELL = GRU_SPEC


class _CellBase(_Module):
    """One time step (PyTorch's nn.RNNCell / nn.LSTMCell / nn.GRUCell)."""

    _CELL: CellSpec

    def _cell_spec(self) -> CellSpec:
        return self._CELL

    def __init__(self, input_size, hidden_size, bias=True, *, dtype="float32", backend=None,
                 device="cpu", seed=None, **unknown):
        _refuse_unknown(self, unknown)
        self.input_size = _check_size(input_size, "input_size")
        self.hidden_size = _check_size(hidden_size, "hidden_size")
        self.bias = bool(bias)
        cell = self._cell_spec()
        super().__init__(cell, dtype=dtype, backend=backend, device=device, seed=seed)
        shapes = cell.weight_shapes(self.input_size, self.hidden_size)
        kinds = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
        self._init_params(OrderedDict((k, shapes[k]) for k in kinds), self.hidden_size)

    def __repr__(self):
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"dtype={self.dtype.name}, device={self.device!r}, backend={self.backend!r})")

    def _weights(self, p):
        return p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh")

    def _state(self, value, name, batch, unbatched, xp):
        if value is None:
            return xp.zeros((batch, self.hidden_size), dtype=self.dtype)
        arr = as_module_array(value, name, self.device, self.dtype, xp)
        expected = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
        check_shape(arr, expected, f"{name} ({'' if unbatched else 'batch, '}hidden_size)")
        return xp.ascontiguousarray(arr[None] if unbatched else arr)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.forward is not _CellBase.forward and "__call__" not in cls.__dict__:
            cls.__call__ = _Module.__call__      # a subclass's own forward is what a call runs

    def _streaming_step(self, x, hx):
        """The low-latency inference step for inputs that need no conversion, or None to say
        "use the checked path" (which converts or explains). Takes arrays of the module's array
        type, dtype and shapes, C-contiguous, as they are, with Python work per step kept to a few
        attribute reads (checks spelled out inline: a helper method per array cost a step 5%;
        dtypes compared by identity first, as NumPy's built-in dtypes are single objects); then
        the backend's stream kernel on the arrays themselves where it has one (no request objects:
        19 -> 15 us a LSTMCell step, H = 128, on a Zen 2 core), else its step kernel."""
        if self.training or hx is None:
            return None
        array, dtype = self._array_type, self.dtype
        if type(hx) is tuple:
            if len(hx) != 2 or not self.cell.has_cell_state:
                return None
            h, c = hx
            if not (type(c) is array and (c.dtype is dtype or c.dtype == dtype)
                    and c.flags.c_contiguous):
                return None
        elif self.cell.has_cell_state:
            return None
        else:
            h = hx
            c = None
        if not (type(x) is array and type(h) is array and (x.dtype is dtype or x.dtype == dtype)
                and (h.dtype is dtype or h.dtype == dtype) and x.ndim == 2
                and x.flags.c_contiguous and h.flags.c_contiguous):
            return None
        state = (x.shape[0], self.hidden_size)
        if x.shape[1] != self.input_size or h.shape != state or (c is not None
                                                                and c.shape != state):
            return None
        kernels = self._kernels
        thread = self._thread
        if thread.tape is not None:
            thread.tape = None
        p = self._params
        w_ih, w_hh, b_ih, b_hh = p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh")
        if kernels.stream is not None:
            result = kernels.stream(x, h, c, w_ih, w_hh, b_ih, b_hh)
            if result is not None:
                return result if c is not None else result[0]
        if kernels.step is None:
            return None
        weights = LayerWeights(w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
        result = kernels.step(StepRequest(cell=self.cell, x=x, h=h, c=c, weights=weights))
        return (result.h, result.c) if c is not None else result.h

    def forward(self, x, hx=None):
        """One time step: the next state from an input and the current state; ``cell(x)`` does
        the same.

        In training mode the step also keeps what `backward` needs. In eval mode, when ``hx`` is
        given and every array already has the module's array type, dtype and shape (and is
        C-contiguous), the step goes straight to the backend with almost no Python work in
        between: the path for streaming.

        Parameters
        ----------
        x : array, shape (N, input_size)
            The input of this step, or ``(input_size,)`` unbatched; the module's dtype and device.
        hx : array or pair of arrays, optional
            The current state: ``h`` of shape ``(N, hidden_size)`` (``(hidden_size,)`` unbatched)
            for RNNCell and GRUCell, the pair ``(h, c)`` of two such arrays for LSTMCell (either
            may be None). None means zeros.

        Returns
        -------
        array or pair of arrays
            The next state, laid out like ``hx``: ``h'``, or ``(h', c')`` for LSTMCell. New
            arrays; the inputs are not modified.

        Raises
        ------
        TypeError
            When an array has another dtype or lives on the other device, or (LSTMCell) ``hx`` is
            not a pair.
        ValueError
            When a shape does not fit the module.

        Examples
        --------
        >>> cell = fr.LSTMCell(4, 8).eval()
        >>> h, c = np.zeros((2, 8), np.float32), np.zeros((2, 8), np.float32)
        >>> for x_t in np.ones((3, 2, 4), np.float32):     # three steps of a batch of two
        ...     h, c = cell(x_t, (h, c))
        >>> h.shape, c.shape
        ((2, 8), (2, 8))
        """
        result = self._streaming_step(x, hx)
        if result is not None:
            return result
        xp = self._xp()
        x = as_module_array(x, "input", self.device, self.dtype, xp)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"input must have shape (batch, {self.input_size}) or "
                             f"({self.input_size},), got {tuple(x.shape)}")
        unbatched = x.ndim == 1
        x2 = xp.ascontiguousarray(x[None] if unbatched else x)
        N = x2.shape[0]
        if self.cell.has_cell_state:
            if hx is None:
                hx = (None, None)
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError("hx of an LSTMCell must be a pair (h, c) or None")
            h = self._state(hx[0], "hx[0] (h)", N, unbatched, xp)
            c = self._state(hx[1], "hx[1] (c)", N, unbatched, xp)
        else:
            h, c = self._state(hx, "hx", N, unbatched, xp), None
        params = self._params
        if self.training:
            x2, params = self._tape_inputs(x2, x, xp)
        w_ih, w_hh, b_ih, b_hh = self._weights(params)
        weights = LayerWeights(w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
        self._thread.tape = None
        if self.training or self._kernels.step is None:
            result = self._kernels.forward(ForwardRequest(
                cell=self.cell, x=x2[None], h0=h, c0=c, weights=weights, training=self.training))
            h1, c1 = result.h_n, result.c_n
            if self.training:
                self._thread.tape = _Tape(result.cache, (1, N, self.input_size), unbatched)
        else:
            result = self._kernels.step(StepRequest(cell=self.cell, x=x2, h=h, c=c, weights=weights))
            h1, c1 = result.h, result.c
        if unbatched:
            h1 = h1[0]
            c1 = None if c1 is None else c1[0]
        return (h1, c1) if self.cell.has_cell_state else h1

    # A call is forward itself, without _Module.__call__'s argument packing (~1 us of a 15 us
    # LSTMCell streaming step); subclasses that override forward get _Module.__call__ back.
    __call__ = forward

    def backward(self, dh, dc=None):
        """Gradients of the last training-mode step.

        Computes the gradients of a loss with respect to the step's input, its state and every
        parameter, given the gradients with respect to the next state. The parameters' gradients
        replace `grads` (they are not accumulated).

        Parameters
        ----------
        dh : array or None
            Gradient with respect to ``h'``, shaped like it; None means zero.
        dc : array, optional
            Gradient with respect to ``c'`` (LSTMCell only; ignored by the other cells); None means
            zero.

        Returns
        -------
        dx : array
            Gradient with respect to ``x``, with its shape.
        dhx : array or pair of arrays
            Gradient with respect to ``hx``: ``dh``, or the pair ``(dh, dc)`` for LSTMCell.

        Raises
        ------
        RuntimeError
            When the module made no training-mode step since it was built or moved, or the last
            step was in eval mode.

        Examples
        --------
        >>> cell = fr.GRUCell(4, 8)
        >>> h1 = cell(np.ones((2, 4), np.float32))
        >>> dx, dh = cell.backward(np.ones_like(h1))
        >>> dx.shape, dh.shape, cell.grads["weight_hh"].shape
        ((2, 4), (2, 8), (24, 8))
        """
        tape = self._require_tape()
        cache, N, unbatched = tape.record, tape.input_shape[1], tape.unbatched
        xp = self._xp()
        dh = self._state(dh, "dh", N, unbatched, xp)
        dc = self._state(dc, "dc", N, unbatched, xp) if self.cell.has_cell_state else None
        dout = xp.zeros((1, N, self.hidden_size), dtype=self.dtype)
        result = self._kernels.backward(BackwardRequest(cell=self.cell, cache=cache, dout=dout,
                                                        dh_n=dh, dc_n=dc))
        grads = dict(zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), result.weight_grads))
        self.grads = {k: grads[k] for k in self._params}
        dx, dh0, dc0 = result.dx[0], result.dh0, result.dc0
        if unbatched:
            dx, dh0 = dx[0], dh0[0]
            dc0 = None if dc0 is None else dc0[0]
        return dx, ((dh0, dc0) if self.cell.has_cell_state else dh0)


class RNNCell(_CellBase):
    """One step of an Elman RNN, like ``torch.nn.RNNCell``.

    The next state is ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``, or relu instead of tanh.

    %(cell_sections)s

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> cell = fr.RNNCell(10, 20, nonlinearity="relu", seed=0)
    >>> h = cell(np.ones((3, 10), np.float32))
    >>> h.shape
    (3, 20)
    >>> bool((h >= 0).all())
    True
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *,
                 dtype="float32", backend=None, device="cpu", seed=None):
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, dtype=dtype, backend=backend,
                         device=device, seed=seed)

    def _cell_spec(self) -> CellSpec:
        return rnn_cell(self.nonlinearity)


class LSTMCell(_CellBase):
    """One step of an LSTM, like ``torch.nn.LSTMCell``, with the gate equations of `LSTM`.

    %(cell_sections)s

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> cell = fr.LSTMCell(10, 20, seed=0)
    >>> h, c = cell(np.ones((3, 10), np.float32))
    >>> h.shape, c.shape
    ((3, 20), (3, 20))
    >>> dx, (dh, dc) = cell.backward(np.ones_like(h), np.zeros_like(c))
    >>> dx.shape, cell.grads["weight_ih"].shape
    ((3, 10), (80, 10))
    """

    _CELL = LSTM_SPEC


class GRUCell(_CellBase):
    """One step of a GRU, like ``torch.nn.GRUCell``, with the gate equations of `GRU`.

    %(cell_sections)s

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> cell = fr.GRUCell(10, 20, seed=0).eval()
    >>> h = np.zeros(20, np.float32)                # unbatched: one stream
    >>> for x_t in np.ones((4, 10), np.float32):
    ...     h = cell(x_t, h)
    >>> h.shape
    (20,)
    """

    _CELL = GRU_SPEC
