"""`fastrnn --version` prints fastrnn.__version__, and that attribute is the version's only source."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastrnn

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_a_release_number():
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?(a|b|rc|dev|post)\d+)?", fastrnn.__version__)


def test_cli_prints_the_version():
    run = subprocess.run([sys.executable, "-m", "fastrnn", "--version"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"fastrnn {fastrnn.__version__}\n"


def test_pyproject_reads_the_version_from_the_package():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in config["project"], "the version is written in fastrnn/__init__.py only"
    assert "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastrnn.__version__"}
