"""The docstring sections the six modules share, written once and filled in when fastrnn is imported.

Each module's docstring in layers.py holds what is its own (the summary, the equations, the examples)
and one placeholder line, ``%(sequence_sections)s`` or ``%(cell_sections)s``, where `fill_module_docs`
puts the Parameters, Inputs, Outputs and Attributes sections. They are generated from the constructor's
signature (so every parameter is described, in order) and from the cell's description in cells.py
(gate count and names, the LSTM's cell state). fastrnn/__init__.py calls `fill_module_docs`, so
``help()``, the Sphinx pages and the doctests all see the whole text.
"""
from __future__ import annotations

import inspect
import re
import textwrap

from . import cells, layers

# The constructor parameters' descriptions: "type" line, then the text. {module} is "module" or "cell".
_PARAMETERS = {
    "input_size": ("int", "Features of each input step, ``I``."),
    "hidden_size": ("int", "Features of the hidden state, ``H``."),
    "num_layers": ("int, default 1",
                   "Stacked layers; layer ``k > 0`` takes the output of layer ``k - 1`` as its input."),
    "nonlinearity": ('{"tanh", "relu"}, default "tanh"', "The activation."),
    "bias": ("bool, default True",
             "Whether the {module} has bias parameters; False means ``b_ih = b_hh = 0``."),
    "batch_first": ("bool, default False", "Whether the input and output are ``(N, T, features)`` "
                    "instead of ``(T, N, features)``; states are never batch-first."),
    "dropout": ("float, default 0.0", "In training mode, the probability of zeroing each element of a "
                "layer's output before it feeds the next layer (inverted dropout: the kept elements "
                "are scaled by ``1 / (1 - dropout)``). In ``[0, 1)``; not applied after the last "
                "layer."),
    "bidirectional": ("bool, default False",
                      "Whether each layer also runs over reversed time; ``D = 2`` then, else ``D = 1``."),
    "dtype": ('{"float32", "float64"}, default "float32"',
              "Precision of the parameters and of every array the {module} takes and returns."),
    "backend": ("str, optional", "The backend that computes: a name from `fastrnn.backends`, or "
                "``\"auto\"`` for the fastest one available for `device`. None reads the "
                "``FASTRNN_BACKEND`` environment variable and otherwise means ``\"auto\"``."),
    "device": ('{"cpu", "cuda"}, default "cpu"',
               'Where the parameters live and the arrays are: NumPy on "cpu", CuPy on "cuda".'),
    "seed": ("int, optional", "Seed of the {module}'s random generator, which draws the initial "
             "parameters (``U(-1/sqrt(H), 1/sqrt(H))``, as PyTorch){dropout}. None: fresh entropy."),
}

_COMMON_ATTRIBUTES = """\
grads : dict of str to array
    The gradients that the last `backward` computed, under the parameters' names.
training : bool
    True in training mode (the default), False after ``eval()``.
backend : str
    The name of the backend that computes, e.g. ``"numba"``.
device : str
    "cpu" or "cuda".
dtype : numpy.dtype
    float32 or float64.
"""


_LITERAL = re.compile(r"``.*?``")


def _entry(names: str, kind: str, text: str) -> str:
    # wrap between words, never inside a ``literal``
    glued = _LITERAL.sub(lambda m: m.group(0).replace(" ", "\0"), text)
    body = textwrap.fill(glued, width=92, initial_indent="    ", subsequent_indent="    ",
                         break_long_words=False, break_on_hyphens=False)
    return f"{names} : {kind}\n{body.replace(chr(0), ' ')}\n"


def _section(title: str, body: str) -> str:
    return f"{title}\n{'-' * len(title)}\n{body}"


def _parameters(cls, module: str) -> str:
    dropout = " and the dropout masks" if module == "module" else ""
    entries = []
    for name, param in inspect.signature(cls).parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            continue   # caught only to name the class in the error for an unknown keyword
        kind, text = _PARAMETERS[name]
        entries.append(_entry(name, kind, text.format(module=module, dropout=dropout)))
    return _section("Parameters", "".join(entries))


def _gates(spec: cells.CellSpec) -> str:
    if spec.gates == 1:
        return ""
    return f"; gate blocks ``{', '.join(spec.gate_names)}`` stacked on the rows, in that order"


def sequence_sections(cls, spec: cells.CellSpec) -> str:
    """Parameters, Inputs, Outputs and Attributes of RNN, LSTM or GRU."""
    g = f"{spec.gates}*H" if spec.gates > 1 else "H"
    if spec.has_cell_state:
        hx = _entry("hx", "pair of arrays (h_0, c_0), optional",
                    "Initial hidden and cell states, each ``(L * D, N, H)`` (``(L * D, H)`` "
                    "unbatched), row ``layer * D + direction``; None, or None for either, means zeros.")
        h_n = _entry("(h_n, c_n)", "pair of arrays, each of shape (L * D, N, H)",
                     "Every layer's and direction's final hidden and cell states, laid out like ``hx``.")
    else:
        hx = _entry("hx", "array, shape (L * D, N, H), optional",
                    "Initial hidden state ``h_0`` (``(L * D, H)`` unbatched), row "
                    "``layer * D + direction``; zeros when None.")
        h_n = _entry("h_n", "array, shape (L * D, N, H)",
                     "Every layer's and direction's final hidden state, laid out like ``hx``.")
    inputs = (_entry("input", "array, shape (T, N, I)", "``(N, T, I)`` with ``batch_first``, or "
                     "``(T, I)`` unbatched; the module's dtype and device.")
              + hx
              + _entry("lengths", "array_like of int, shape (N,), optional",
                       "Each sequence's length in ``1..T``; steps past it are skipped and output "
                       "zeros."))
    outputs = (_entry("output", "array, shape (T, N, D * H)",
                      "The last layer's hidden states, forward then reverse direction on the last "
                      "axis; ``(N, T, D * H)`` with ``batch_first``, ``(T, D * H)`` unbatched.")
               + h_n)
    suffixes = "weight_{kind}_l{{k}}, weight_{kind}_l{{k}}_reverse"
    attributes = (
        _entry(suffixes.format(kind="ih"), f"array, shape ({g}, I) or ({g}, D * H)",
               f"Input-to-hidden weights of layer ``k`` (``I`` columns for layer 0){_gates(spec)}.")
        + _entry(suffixes.format(kind="hh"), f"array, shape ({g}, H)",
                 "Hidden-to-hidden weights of layer ``k``"
                 + (", in the same gate order." if spec.gates > 1 else "."))
        + _entry("bias_ih_l{k}, bias_hh_l{k}, bias_ih_l{k}_reverse, bias_hh_l{k}_reverse",
                 f"array, shape ({g},)", "The biases, when ``bias=True``. The ``_reverse`` names "
                 "exist when ``bidirectional=True``.")
        + _COMMON_ATTRIBUTES)
    return "\n".join([_parameters(cls, "module"), _section("Inputs", inputs),
                      _section("Outputs", outputs), _section("Attributes", attributes)])


def cell_sections(cls, spec: cells.CellSpec) -> str:
    """Parameters, Inputs, Outputs and Attributes of RNNCell, LSTMCell or GRUCell."""
    g = f"{spec.gates}*H" if spec.gates > 1 else "H"
    if spec.has_cell_state:
        hx = _entry("hx", "pair of arrays (h, c), optional", "The current hidden and cell states, "
                    "each ``(N, H)`` (``(H,)`` unbatched); None, or None for either, means zeros.")
        h1 = _entry("(h', c')", "pair of arrays, each of shape (N, H)",
                    "The next hidden and cell states (``(H,)`` unbatched).")
    else:
        hx = _entry("hx", "array, shape (N, H), optional",
                    "The current hidden state (``(H,)`` unbatched); zeros when None.")
        h1 = _entry("h'", "array, shape (N, H)", "The next hidden state (``(H,)`` unbatched).")
    inputs = _entry("input", "array, shape (N, I)", "Or ``(I,)`` unbatched; the cell's dtype and "
                    "device.") + hx
    attributes = (
        _entry("weight_ih", f"array, shape ({g}, I)", f"Input-to-hidden weights{_gates(spec)}.")
        + _entry("weight_hh", f"array, shape ({g}, H)", "Hidden-to-hidden weights.")
        + _entry("bias_ih, bias_hh", f"array, shape ({g},)", "The biases, when ``bias=True``.")
        + _COMMON_ATTRIBUTES)
    return "\n".join([_parameters(cls, "cell"), _section("Inputs", inputs),
                      _section("Outputs", h1), _section("Attributes", attributes)])


_PLACEHOLDER = re.compile(r"^( *)%\((\w+)\)s\n", re.M)


def _fill(cls, name: str, text: str) -> None:
    def replace(match: re.Match) -> str:
        if match.group(2) != name:
            raise ValueError(f"{cls.__name__}'s docstring has the placeholder {match.group(2)!r}, "
                             f"expected {name!r}")
        return textwrap.indent(text, match.group(1))

    doc, count = _PLACEHOLDER.subn(replace, cls.__doc__)
    if count != 1:
        raise ValueError(f"{cls.__name__}'s docstring needs one line %({name})s, found {count}")
    cls.__doc__ = doc


def fill_module_docs() -> None:
    """Put the generated sections into the six modules' docstrings (once; later calls do nothing)."""
    sequence = {layers.RNN: cells.RNN_TANH, layers.LSTM: cells.LSTM, layers.GRU: cells.GRU}
    single = {layers.RNNCell: cells.RNN_TANH, layers.LSTMCell: cells.LSTM, layers.GRUCell: cells.GRU}
    for cls, spec in sequence.items():
        if "%(sequence_sections)s" in (cls.__doc__ or ""):      # None under python -OO
            _fill(cls, "sequence_sections", sequence_sections(cls, spec))
    for cls, spec in single.items():
        if "%(cell_sections)s" in (cls.__doc__ or ""):
            _fill(cls, "cell_sections", cell_sections(cls, spec))
