"""The backend contract (fastrnn.contract): what its requests promise a backend, and that the backends
depend on it rather than on the dispatch layer."""
from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

import fastrnn
from fastrnn import devices
from fastrnn.cells import CELLS
from fastrnn.contract import ForwardRequest, LayerWeights, normalise_lengths

from support import array_module, to_backend

PACKAGE = pathlib.Path(fastrnn.__file__).resolve().parent
BACKEND_PACKAGES = ("reference", "cpu", "gpu")


def _request(x, lengths, **options):
    cell = CELLS["gru"]
    N, H = x.shape[1], 2
    zeros = devices.array_module(devices.device_of(x)).zeros
    weights = LayerWeights(w_ih=zeros((3 * H, x.shape[2])), w_hh=zeros((3 * H, H)))
    return ForwardRequest(cell=cell, x=x, h0=zeros((N, H)), c0=None, weights=weights,
                          lengths=lengths, **options)


@pytest.mark.parametrize("given", [
    [3, 1, 2],
    np.array([3, 1, 2], dtype=np.int64),
    np.array([3, 9, 1, 9, 2], dtype=np.int32)[::2],    # strided
    np.array([3, 1, 2], dtype=np.uint8),
], ids=["list", "int64", "strided", "uint8"])
def test_lengths_become_contiguous_int32_in_the_array_module_of_x(backend, given):
    x = to_backend(np.zeros((3, 3, 2)), backend)
    req = _request(x, given)
    xp = array_module(backend)
    assert isinstance(req.lengths, xp.ndarray)
    assert req.lengths.dtype == np.int32 and req.lengths.flags.c_contiguous
    assert devices.to_host(req.lengths).tolist() == [3, 1, 2]


def test_conforming_lengths_are_not_copied():
    lengths = np.array([2, 1], dtype=np.int32)
    assert normalise_lengths(lengths, np.zeros((2, 2, 1))) is lengths
    assert normalise_lengths(None, np.zeros((2, 2, 1))) is None


def test_lengths_that_are_not_integers_are_refused():
    with pytest.raises(TypeError, match="lengths must be integers, got dtype float64"):
        _request(np.zeros((3, 2, 1)), np.array([2.5, 1.0]))


def test_lengths_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\), one per batch row, got \(3,\)"):
        _request(np.zeros((3, 2, 1)), [1, 2, 3])


def test_requests_are_slotted_keyword_only_and_normalise_their_flags():
    req = _request(np.zeros((1, 1, 1)), None, reverse=1, training=0)
    assert req.reverse is True and req.training is False
    with pytest.raises(AttributeError):
        req.lenghts = np.array([1])   # a misspelt field is an error, not a new attribute
    with pytest.raises(TypeError, match="positional"):
        LayerWeights(req.weights.w_ih, req.weights.w_hh)


def _imported_modules(path: pathlib.Path, package: str) -> set[str]:
    """Absolute names of the fastrnn modules a backend source file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("backend_package", BACKEND_PACKAGES)
def test_backends_import_the_contract_and_never_dispatch(backend_package):
    """The backends see only fastrnn.contract (and cells, devices): an import of fastrnn.dispatch would
    put the registry's import loop back into every backend."""
    files = sorted((PACKAGE / backend_package).glob("*.py"))
    assert files
    seen = set()
    for path in files:
        package = f"fastrnn.{backend_package}"
        imported = _imported_modules(path, package)
        assert not any(n == "fastrnn.dispatch" or n.startswith("fastrnn.dispatch.") for n in imported), \
            f"{path.name} imports fastrnn.dispatch"
        seen |= imported
    assert "fastrnn.contract" in seen, f"fastrnn.{backend_package} does not import fastrnn.contract"
