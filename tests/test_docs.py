"""The documentation: docstrings, their examples, the Sphinx site under docs/ and its code.

* Every public name (fastrnn.__all__) and every public method of an exported class has a numpydoc
  docstring with a summary, Examples, and the signature's parameters; the modules also have the
  sections torch.nn's docs have (Parameters, Inputs, Outputs, Attributes, Examples).
* Every docstring example runs (doctest), so none can rot; so does every ```python block of the
  Markdown pages.
* The site builds with warnings as errors, nitpicky, as CI runs it, and documents every public name.
"""
from __future__ import annotations

import doctest
import html
import importlib
import inspect
import pydoc
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastrnn
from fastrnn import numerics

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

PUBLIC = {name: getattr(fastrnn, name) for name in fastrnn.__all__ if name != "__version__"}
CLASSES = {name: obj for name, obj in PUBLIC.items()
           if inspect.isclass(obj) and not issubclass(obj, BaseException)}
MODULES = {name: cls for name, cls in CLASSES.items() if callable(getattr(cls, "forward", None))}
MODULE_SECTIONS = ("Parameters", "Inputs", "Outputs", "Attributes", "Examples")
EXAMPLE_GLOBALS = {"np": np, "fr": fastrnn}
OPTIONAL_PACKAGES = {"torch", "cupy"}     # the pages may show them; the test extra installs torch


def public_methods(cls) -> dict:
    return {name: member for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")}


def documented_objects():
    """(qualified name, object) for every public name and every public method of a class."""
    for name, obj in PUBLIC.items():
        yield f"fastrnn.{name}", obj
        if name in CLASSES:
            for method_name, method in public_methods(obj).items():
                yield f"fastrnn.{name}.{method_name}", method


# -- docstrings -------------------------------------------------------------------------------------

def docs_extension():
    """docs/_ext/fastrnn_docs.py, the Sphinx extension of the docs (it needs Sphinx)."""
    pytest.importorskip("sphinx", reason="sphinx is not installed (pip install -e '.[docs]')")
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        return importlib.import_module("fastrnn_docs")
    finally:
        sys.path.remove(str(DOCS / "_ext"))


@pytest.fixture(scope="module")
def numpydoc_scrape():
    docscrape = pytest.importorskip("numpydoc.docscrape")
    docs_extension().register_call_sections()
    return docscrape.NumpyDocString


def _names(section) -> list[str]:
    return [n.strip() for param in section for n in param.name.split(",")]


@pytest.mark.parametrize("qualname, obj", list(documented_objects()),
                         ids=[q for q, _ in documented_objects()])
def test_numpydoc_sections(numpydoc_scrape, qualname, obj):
    assert obj.__doc__, f"{qualname} has no docstring"
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # numpydoc warns, and drops it, on a section it does not know
        doc = numpydoc_scrape(inspect.getdoc(obj))
    assert doc["Summary"] and doc["Summary"][0], f"{qualname}: no summary line"
    assert doc["Examples"], f"{qualname}: no Examples section"
    if qualname.removeprefix("fastrnn.") in MODULES:
        missing = [s for s in MODULE_SECTIONS if not doc[s]]
        assert not missing, f"{qualname}: no {', '.join(missing)} section"
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return
    signature = inspect.signature(obj)
    expected = [name for name, p in signature.parameters.items()
                if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    assert _names(doc["Parameters"]) == expected, f"{qualname}: Parameters differ from the signature"
    if inspect.isfunction(obj) and signature.return_annotation not in ("None", None):
        assert doc["Returns"], f"{qualname}: no Returns section"


def test_help_shows_the_constructor_parameters():
    text = pydoc.render_doc(fastrnn.LSTM, renderer=pydoc.plaintext)
    for name, param in inspect.signature(fastrnn.LSTM).parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            continue   # **unknown only exists to name the class when a keyword is misspelt
        assert re.search(rf"^\s*\|?\s*{name} : ", text, re.M), f"help(LSTM) does not document {name}"


def _doctest_modules() -> list[str]:
    return sorted({inspect.getmodule(obj).__name__ for obj in PUBLIC.values()})


@pytest.mark.parametrize("module_name", _doctest_modules())
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in finder.find(module, module_name, globs=dict(EXAMPLE_GLOBALS)):
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0, f"{module_name} has no examples"
    assert result.failed == 0, "".join(report)


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", page.read_text(), re.S | re.M)


@pytest.mark.parametrize("page", [p.name for p in sorted(DOCS.glob("*.md")) if _python_blocks(p)])
def test_page_code_runs(page):
    """A page's ```python blocks run in order in one namespace, as a reader would paste them."""
    namespace: dict = {"__name__": f"docs.{page}"}
    for i, block in enumerate(_python_blocks(DOCS / page)):
        try:
            exec(compile(block, f"{page} block {i + 1}", "exec"), namespace)
        except ModuleNotFoundError as exc:
            if exc.name not in OPTIONAL_PACKAGES:
                raise
            pytest.skip(f"{page} block {i + 1} needs {exc.name}, which is not installed")


# -- the site ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """docs/ built as CI builds it: warnings are errors, nitpicky; the HTML output folder."""
    for tool in ("sphinx", "numpydoc", "myst_parser"):
        pytest.importorskip(tool, reason=f"{tool} is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("docs")
    run = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html",
         "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"sphinx-build failed:\n{run.stderr}\n{run.stdout}"
    assert "WARNING" not in run.stderr, run.stderr
    return out / "html"


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def test_site_documents_every_public_name(site):
    api = (site / "api.html").read_text()
    anchors = set(re.findall(r'id="(fastrnn\.[^"]+)"', api))
    missing = [q for q, _ in documented_objects() if q not in anchors]
    assert not missing, f"not on the API page (docs/api.rst): {missing}"


def test_site_renders_the_call_sections(site):
    api = (site / "api.html").read_text()
    for name in MODULES:
        start = api.index(f'id="fastrnn.{name}"')
        end = api.find('<dl class="py', start + 1)
        section = api[start:end]
        for title in ("Parameters", "Inputs", "Outputs", "Attributes", "Examples"):
            assert f">{title}<" in section, f"fastrnn.{name}: no {title} on the API page"


def test_tolerance_page_shows_the_numerics_table(site):
    text = _text(site / "numerics.html")
    for (backend, dtype), bound in numerics.BACKEND_VS_REFERENCE.items():
        row = re.search(rf"^{re.escape(backend)}\n+(\S+)\n+(\S+)$", text, re.M)
        assert row, f"no row for {backend} on the numerics page"
        column = 1 if dtype == "float32" else 2
        assert float(row.group(column)) == bound, (backend, dtype)
    for dtype, bound in numerics.TORCH_PARITY.items():
        assert f"{bound:.0e}" in text


def test_benchmark_page_includes_the_readme_tables(site):
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"<!-- BEGIN GENERATED: benchmark tables -->\n(.*?)"
                        r"<!-- END GENERATED: benchmark tables -->", readme, re.S)
    assert section, "README.md lacks the generated benchmark section's markers"
    rows = [line for line in section.group(1).splitlines() if line.startswith("|")]
    assert rows, "no table between the README's benchmark markers"
    text = _text(site / "benchmarks.html")
    for row in rows[:1] + rows[2:]:
        first_cell = row.strip("|").split("|")[0].strip().strip("*")
        assert first_cell in text, f"benchmarks page lacks the README row {row!r}"


def test_included_readme_links_to_repository_files_become_downloads():
    link_repository_files = docs_extension().link_repository_files

    class App:
        srcdir = str(DOCS)

    content = ["[the record](bench/conftest.py#top), [site](https://example.org/x.md), "
               "[gone](bench/no-such-file.md), ![plot](bench/conftest.py), [up](#benchmarks)"]
    link_repository_files(App(), Path("../README.md"), "benchmarks", content)
    assert content == ["[the record](path:../bench/conftest.py), [site](https://example.org/x.md), "
                       "[gone](bench/no-such-file.md), ![plot](bench/conftest.py), [up](#benchmarks)"]
    inside = ["[a page](quickstart.md)"]
    link_repository_files(App(), Path("quickstart.md"), "index", inside)
    assert inside == ["[a page](quickstart.md)"]


def test_import_works_without_docstrings():
    """python -OO strips docstrings; filling in the shared sections must not break the import."""
    run = subprocess.run([sys.executable, "-OO", "-c", "import fastrnn; print(fastrnn.LSTM.__doc__)"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "None\n"
