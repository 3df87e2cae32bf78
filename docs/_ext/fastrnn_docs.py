"""Sphinx extension for fastrnn's docs: torch.nn-style docstring sections and generated tables.

* ``Inputs`` and ``Outputs``: the docstrings of the modules list what a call takes and returns in
  these two sections, as torch.nn's do. numpydoc knows neither (it would drop them with a warning),
  so `register_call_sections` teaches it to parse them like ``Parameters`` and to render them right
  after it. The test suite calls it too, before it checks the docstrings with numpydoc.
* ``.. fastrnn-tolerances::`` renders fastrnn.numerics's tolerance table at build time, and
  ``.. fastrnn-backends::`` the backend registry, so the pages never hold a copy of either.
* Links in the README's sections that the pages include point at repository files; they become
  downloads (`link_repository_files`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

CALL_SECTIONS = ("Inputs", "Outputs")


def register_call_sections() -> None:
    """Make numpydoc parse ``Inputs`` and ``Outputs`` as parameter lists, rendered after
    ``Parameters``. Idempotent."""
    from numpydoc import docscrape, docscrape_sphinx

    doc_class = docscrape.NumpyDocString
    if all(name in doc_class.sections for name in CALL_SECTIONS):
        return
    doc_class.sections = {**doc_class.sections, **{name: [] for name in CALL_SECTIONS}}

    parse = doc_class._parse

    def _parse(self):
        parse(self)
        for name in CALL_SECTIONS:
            if self[name]:
                self[name] = self._parse_param_list(self[name])

    doc_class._parse = _parse

    str_param_list = docscrape_sphinx.SphinxDocString._str_param_list

    def _str_param_list(self, name, fake_autosummary=False):
        out = str_param_list(self, name, fake_autosummary)
        if name == "Parameters":
            for extra in CALL_SECTIONS:
                out += str_param_list(self, extra)
        return out

    docscrape_sphinx.SphinxDocString._str_param_list = _str_param_list


# [text](target) but not ![alt](target): a Markdown link, not an image
_MD_LINK = re.compile(r"(?<!!)(\[[^\]]*\])\(([^)\s]+)\)")


def link_repository_files(app, relative_path, parent_docname, content) -> None:
    """In Markdown included from outside docs/ (the README), make links to repository files
    downloads. Sphinx would take a link to a .md file for a page of the site, find none and warn;
    a download works for any file. Links to URLs and anchors are left alone; images are the
    include's ``:relative-images:`` option's job."""
    if not str(relative_path).endswith(".md"):
        return
    source = (Path(app.srcdir) / relative_path).resolve()
    if Path(app.srcdir).resolve() in source.parents:
        return

    def relink(match: re.Match) -> str:
        text, target = match.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target):
            return match.group(0)
        path = (source.parent / target.split("#")[0]).resolve()
        if not path.exists():
            return match.group(0)
        return f"{text}(path:{os.path.relpath(path, app.srcdir)})"

    content[0] = _MD_LINK.sub(relink, content[0])


def _list_table(header: list[str], rows: list[list[str]], widths: str) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header] + rows:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return lines


def _bound(value: float) -> str:
    return f"``{value:.0e}``"


class _GeneratedTable(SphinxDirective):
    has_content = False

    def lines(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(StringList(self.lines(), source="generated"), self.content_offset,
                                container)
        return container.children


class ToleranceTable(_GeneratedTable):
    """The bounds of fastrnn.numerics, as tables."""

    def lines(self) -> list[str]:
        from fastrnn import numerics

        dtypes = ("float32", "float64")
        backends = list(dict.fromkeys(b for b, _ in numerics.BACKEND_VS_REFERENCE))
        rows = [[f"``{b}``"] + [_bound(numerics.vs_reference(b, dt)) for dt in dtypes]
                for b in backends]
        rows.append(["any other backend"] + [_bound(numerics.DEFAULT_VS_REFERENCE[dt])
                                             for dt in dtypes])
        lines = _list_table(["backend against the float64 reference", *dtypes], rows, "50 25 25")
        lines += [""] + _list_table(
            ["fastrnn against PyTorch", *dtypes],
            [["outputs and every gradient"] + [_bound(numerics.TORCH_PARITY[dt]) for dt in dtypes]],
            "50 25 25")
        lines += ["", f"The reference backward against central finite differences in float64 "
                      f"(step {_bound(numerics.FD_EPS)}): {_bound(numerics.FD_TOLERANCE)}."]
        return lines


class BackendTable(_GeneratedTable):
    """Every registered backend, from fastrnn.dispatch's registry."""

    def lines(self) -> list[str]:
        from fastrnn import dispatch

        rows = []
        for name in dispatch.registered_backends():
            info = dispatch.backend_info(name)
            needs = ", ".join(f"``{r}``" for r in info.requires) or "NumPy only"
            rows.append([f"``{name}``", f"``{info.device}``", str(info.priority), needs,
                         info.description or ""])
        return _list_table(["backend", "device", "priority", "needs", "what it is"], rows,
                           "12 10 10 18 50")


def setup(app):
    register_call_sections()
    app.add_directive("fastrnn-tolerances", ToleranceTable)
    app.add_directive("fastrnn-backends", BackendTable)
    app.connect("include-read", link_repository_files)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
