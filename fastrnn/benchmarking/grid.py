"""The one benchmark grid: cells x shapes x dtypes x training/inference, crossed with the backends.

`fastrnn bench`, the pytest-benchmark suite under bench/ and the report all read their cases from here,
so a shape added here is measured, smoke-tested and reported everywhere at once. The backends are not
listed here: they come from the dispatch registry (see backends.py), plus PyTorch as the baseline.

Besides the layer and step cases, kind "model" times a whole model: the character-level LSTM language
model of fastrnn.torch.models (CHAR_LM_* below), torch.nn against the same model converted by
fastrnn.torch.convert (see model_workloads.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Iterable, Optional, Sequence

from ..cells import CELLS

MODES = ("training", "inference")
KINDS = ("layer", "step", "model")
LAYER_KINDS = ("layer", "step")   # the kinds timed per RNN module, against the GEMM floor
DTYPES = ("float32", "float64")

# The public module class for each cell name, per kind (layer: whole sequences; step: the *Cell
# modules driven one time step at a time, the streaming / low-latency path).
MODULE_NAMES = {
    "layer": {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"},
    "step": {"lstm": "LSTMCell", "gru": "GRUCell", "rnn_tanh": "RNNCell", "rnn_relu": "RNNCell"},
    "model": {"lstm": "CharLM"},
}

# The char-LM of the model cases (fastrnn.torch.models.CharLM), as bench/char_lm_speed.py times it: a
# model case's I is the embedding width and H the LSTM's hidden size; these are fixed.
CHAR_LM_VOCAB = 64
CHAR_LM_LAYERS = 2

# Names people type for cells on the command line.
CELL_ALIASES = {"rnn": "rnn_tanh", "tanh": "rnn_tanh", "relu": "rnn_relu"}

DEFAULT_CELLS = ("lstm", "gru", "rnn_tanh")

# DeepBench-style sizes of the full grid.
FULL_HIDDEN = (256, 512, 1024)
FULL_BATCH = (1, 4, 16, 32, 64)
FULL_STEPS = (25, 100)


@dataclass(frozen=True)
class Case:
    """One measured configuration: every backend is timed on it side by side.

    kind "layer" times a one-layer module on a whole (T, N, I) sequence: in "training" mode the
    forward in training mode plus the full backward (dx, dh0 and every weight gradient), in
    "inference" mode the eval-mode forward. Kind "step" drives a *Cell module T times in a row, one
    step at a time (inference only), which is where Python overhead per step is the cost. Kind "model"
    (cell "lstm" only) times the char-LM on (T, N) characters, embedding I, hidden size H: in
    "training" mode one training step (fastrnn.torch.models.char_lm_train_step: forward,
    cross-entropy, backward, gradient clipping, Adam step), in "inference" mode the eval-mode forward
    under torch.no_grad().

    bidirectional: a layer case of a bidirectional module (both directions, outputs 2H wide); the
    other kinds are one direction.

    target: the project's published goal for this case, the speedup over PyTorch on the CPU that
    fastrnn's CPU backend aims to reach, or None; it is documentation for the report, not part of the
    case's identity.
    """

    cell: str
    mode: str
    T: int
    N: int
    I: int
    H: int
    dtype: str = "float32"
    kind: str = "layer"
    bidirectional: bool = False
    target: Optional[float] = field(default=None, compare=False)

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; cells: {', '.join(CELLS)}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "step" and self.mode != "inference":
            raise ValueError("step cases time the *Cell inference path; mode must be 'inference'")
        if self.kind == "model" and self.cell not in MODULE_NAMES["model"]:
            raise ValueError(f"model cases time the char-LM, an LSTM; cell must be 'lstm', "
                             f"got {self.cell!r}")
        if self.bidirectional and self.kind != "layer":
            raise ValueError(f"only layer cases can be bidirectional, not {self.kind!r} cases")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name in ("T", "N", "I", "H"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def gates(self) -> int:
        return CELLS[self.cell].gates

    @property
    def module_name(self) -> str:
        return MODULE_NAMES[self.kind][self.cell]

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def layers(self) -> int:
        """Stacked recurrent layers a call runs through (the char-LM's; one for the other kinds)."""
        return CHAR_LM_LAYERS if self.kind == "model" else 1

    @property
    def shape(self) -> str:
        """(T, N, I, H) as the report prints it; I is left out when it equals H."""
        dims = (self.T, self.N, self.H) if self.I == self.H else (self.T, self.N, self.I, self.H)
        return "(" + ",".join(str(d) for d in dims) + ")"

    @property
    def label(self) -> str:
        """Short human name, e.g. "lstm training (100,32,256)", "lstm step x1000 (1,1,128)" or
        "char-LM training (100,32,64,256)"."""
        if self.kind == "model":
            return f"char-LM {self.mode} {self.shape}" + ("" if self.dtype == "float32" else
                                                          f" {self.dtype}")
        what = self.mode if self.kind == "layer" else f"step x{self.T}"
        if self.bidirectional:
            what = "bidirectional " + what
        shape = self.shape if self.kind == "layer" else f"(N={self.N},H={self.H})"
        suffix = "" if self.dtype == "float32" else f" {self.dtype}"
        return f"{self.cell} {what} {shape}{suffix}"

    @property
    def key(self) -> str:
        """Stable identity used to match cases across JSON records and in pytest ids."""
        return (f"{self.cell}-{self.kind}-{self.mode}-T{self.T}-N{self.N}-I{self.I}-H{self.H}"
                f"-{self.dtype}" + ("-bidirectional" if self.bidirectional else ""))

    @property
    def flops(self) -> float:
        """GEMM floating-point operations of one timed call (the DeepBench convention: pointwise
        work is not counted). Forward: 2*T*N*G*H*(I+H); training adds the backward's data and
        weight gradients, twice the forward's. A bidirectional case counts both directions, a model
        case every LSTM layer and the read-out."""
        forward = 2.0 * self.T * self.N * self.gates * self.H * (self.I + self.H)
        if self.kind == "model":
            deeper = 2.0 * self.T * self.N * self.gates * self.H * 2 * self.H
            forward += (self.layers - 1) * deeper + 2.0 * self.T * self.N * self.H * CHAR_LM_VOCAB
        return forward * self.directions * (3.0 if self.mode == "training" else 1.0)

    @property
    def steps(self) -> int:
        """Sequence elements processed per call, T*N: the unit of throughput."""
        return self.T * self.N

    def with_T(self, T: int) -> "Case":
        return replace(self, T=T)

    def shrunk(self) -> "Case":
        """A tiny case of the same kind for smoke tests: same code paths, milliseconds to run."""
        return replace(self, T=min(self.T, 3), N=min(self.N, 2), I=min(self.I, 5), H=min(self.H, 4))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        return cls(**{k: d[k] for k in ("cell", "mode", "T", "N", "I", "H", "dtype", "kind")},
                   bidirectional=bool(d.get("bidirectional", False)), target=d.get("target"))


def target_cases(dtype: str = "float32") -> list[Case]:
    """The cases with a published target (PyTorch CPU time / fastrnn CPU time to reach): the
    done-when figures of the CPU-engine issue (two cores, float32)."""
    return [
        Case("lstm", "training", 100, 32, 256, 256, dtype, target=1.5),
        Case("gru", "training", 100, 32, 256, 256, dtype, target=1.6),
        Case("rnn_tanh", "training", 100, 32, 256, 256, dtype, target=1.5),
        Case("lstm", "inference", 100, 32, 256, 256, dtype, target=1.0),
        Case("gru", "inference", 100, 32, 256, 256, dtype, target=1.6),
        Case("lstm", "training", 100, 64, 512, 512, dtype, target=1.3),
        Case("lstm", "inference", 1000, 1, 128, 128, dtype, target=1.5),
        Case("lstm", "inference", 1000, 1, 128, 128, dtype, kind="step", target=5.0),
    ]


def model_cases(dtype: str = "float32") -> list[Case]:
    """The char-LM at bench/char_lm_speed.py's shape (T=100, N=32, embedding 64, H=256): the training
    step, with the issue's target of 1.2x over torch.nn on the CPU, and inference."""
    return [Case("lstm", "training", 100, 32, 64, 256, dtype, kind="model", target=1.2),
            Case("lstm", "inference", 100, 32, 64, 256, dtype, kind="model")]


def quick_grid(dtype: str = "float32") -> list[Case]:
    """The cases with targets plus a batch sweep of the LSTM at H=256 (for the throughput chart), and
    the char-LM model cases.

    Sized to finish in about seven minutes on two idle cores (numpy, numba, PyTorch, the GEMM floor
    and the char-LM pair, timing.ROUNDS["quick"] rounds: 412 s measured on 2026-12-02)."""
    sweep = [Case("lstm", mode, 100, n, 256, 256, dtype)
             for mode in MODES for n in (1, 4, 16, 64)]
    return _unique(target_cases(dtype) + sweep + model_cases(dtype))


def full_grid(dtype: str = "float32", cells: Sequence[str] = DEFAULT_CELLS) -> list[Case]:
    """DeepBench-style: every cell at H in {256, 512, 1024}, N in {1, 4, 16, 32, 64}, T in {25, 100},
    I = H, training and inference, plus the cases with targets that fall outside that set and the
    char-LM model cases (when the cells include the LSTM)."""
    cases = [Case(cell, mode, T, N, H, H, dtype)
             for cell in cells for H in FULL_HIDDEN for T in FULL_STEPS for N in FULL_BATCH
             for mode in MODES]
    models = model_cases(dtype) if "lstm" in cells else []
    return _unique(target_cases(dtype) + cases + models)


def custom_grid(shapes: Iterable[tuple[int, int, int, int]], cells: Sequence[str],
                dtype: str = "float32", modes: Sequence[str] = MODES) -> list[Case]:
    """cells x shapes (T, N, I, H) x modes, whole-sequence layers."""
    return _unique([Case(cell, mode, T, N, I, H, dtype)
                    for cell in cells for (T, N, I, H) in shapes for mode in modes])


def build_grid(preset: str = "quick", *, cells: Optional[Sequence[str]] = None,
               shapes: Optional[Sequence[tuple[int, int, int, int]]] = None,
               dtypes: Sequence[str] = ("float32",),
               modes: Optional[Sequence[str]] = None,
               kinds: Optional[Sequence[str]] = None,
               bidirectional: bool = False) -> list[Case]:
    """The cases of one run: a preset ("quick" or "full") or explicit shapes, filtered by cell, mode
    and kind (KINDS), repeated for each dtype; with bidirectional, the layer cases only, each made
    bidirectional."""
    if preset not in ("quick", "full"):
        raise ValueError(f"preset must be 'quick' or 'full', got {preset!r}")
    for kind in kinds or ():
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    cell_names = [normalize_cell(c) for c in cells] if cells else None
    cases: list[Case] = []
    for dtype in dtypes:
        if shapes:
            cases += custom_grid(shapes, cell_names or DEFAULT_CELLS, dtype, modes or MODES)
        elif preset == "quick":
            cases += quick_grid(dtype)
        else:
            cases += full_grid(dtype, cell_names or DEFAULT_CELLS)
    if cell_names:
        cases = [c for c in cases if c.cell in cell_names]
    if modes:
        cases = [c for c in cases if c.mode in modes]
    if kinds:
        cases = [c for c in cases if c.kind in kinds]
    if bidirectional:
        cases = [replace(c, bidirectional=True) for c in cases if c.kind == "layer"]
    return _unique(cases)


def normalize_cell(name: str) -> str:
    name = name.strip().lower()
    name = CELL_ALIASES.get(name, name)
    if name not in CELLS:
        raise ValueError(f"unknown cell {name!r}; choose from {', '.join(list(CELLS) + list(CELL_ALIASES))}")
    return name


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """ "T,N,H" (input size = H) or "T,N,I,H" -> (T, N, I, H)."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) not in (3, 4) or min(dims, default=0) < 1:
        raise ValueError(f"a shape is T,N,H or T,N,I,H with positive integers, got {text!r}")
    if len(dims) == 3:
        T, N, H = dims
        return T, N, H, H
    T, N, I, H = dims
    return T, N, I, H


def _unique(cases: list[Case]) -> list[Case]:
    """Drop repeats, keeping the first (which carries the target when there is one)."""
    seen: dict[Case, None] = {}
    for c in cases:
        seen.setdefault(c, None)
    return list(seen)
