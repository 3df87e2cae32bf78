"""bench/readme_tables.py: the README's benchmark tables come from records, between the markers."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fastrnn.benchmarking.report import save_record

from bench_records import cpu_record

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "readme_tables.py"
spec = importlib.util.spec_from_file_location("readme_tables", SCRIPT)
readme_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_tables)

BEGIN, END = readme_tables.BEGIN_MARKER, readme_tables.END_MARKER
README = f"# Project\n\nintro\n\n{BEGIN}\nold table\n{END}\n\n## After\n\ntext\n"


@pytest.fixture
def checkout(tmp_path):
    (tmp_path / "README.md").write_text(README)
    runs = tmp_path / "bench" / "results"
    save_record(cpu_record(numba_lstm=1e-3, numba_gru=4e-3), runs / "run1" / "bench.json")
    second = cpu_record(numba_lstm=1.1e-3, numba_gru=2.5e-3)
    second["machine"]["git"]["commit"] = "fedcba9876543210"
    save_record(second, runs / "run2" / "bench.json")
    return tmp_path


def _generated(text: str) -> str:
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)]


def test_one_record_gives_its_table_and_where_it_ran(checkout):
    record = checkout / "bench" / "results" / "run1" / "bench.json"
    assert readme_tables.main([str(record), "--readme", str(checkout / "README.md")]) == 0
    text = (checkout / "README.md").read_text()
    assert text.startswith("# Project\n\nintro\n\n" + BEGIN) and text.endswith(END + "\n\n## After\n\ntext\n")
    block = _generated(text)
    assert "old table" not in block
    assert "Test CPU" in block and "`0123456789ab`" in block and "3 rounds" in block
    assert "2 requested for every contestant" in block
    assert "(bench/results/run1/bench.json)" in block
    lstm = next(line for line in block.splitlines() if line.startswith("| lstm training"))
    assert "**4.00x**" in lstm and ">= 2x" in lstm and "| yes |" in lstm
    gru = next(line for line in block.splitlines() if line.startswith("| gru training"))
    assert "**1.25x**" in gru and "**no**" in gru


def test_several_records_side_by_side(checkout):
    runs = [str(checkout / "bench" / "results" / r / "bench.json") for r in ("run1", "run2")]
    assert readme_tables.main([*runs, "--readme", str(checkout / "README.md")]) == 0
    block = _generated((checkout / "README.md").read_text())
    assert "**run 1**" in block and "**run 2**" in block and "`fedcba987654`" in block
    header = next(line for line in block.splitlines() if line.startswith("| case"))
    assert header.count("speedup") == 2 and header.count("met") == 2
    gru = next(line for line in block.splitlines() if line.startswith("| gru training"))
    assert "**1.25x**" in gru and "**2.00x**" in gru and "**no**" in gru and "| yes |" in gru


def test_check_mode_and_a_readme_without_markers(checkout, tmp_path):
    record = str(checkout / "bench" / "results" / "run1" / "bench.json")
    readme = str(checkout / "README.md")
    assert readme_tables.main([record, "--readme", readme, "--check"]) == 1
    assert (checkout / "README.md").read_text() == README   # --check writes nothing
    readme_tables.main([record, "--readme", readme])
    assert readme_tables.main([record, "--readme", readme, "--check"]) == 0
    bare = tmp_path / "bare.md"
    bare.write_text("# no markers\n")
    with pytest.raises(ValueError, match="BEGIN GENERATED"):
        readme_tables.main([record, "--readme", str(bare)])


def test_a_file_that_is_not_a_record_is_refused(checkout):
    other = checkout / "other.json"
    other.write_text(json.dumps({"backend": "numba"}))
    with pytest.raises(ValueError, match="not a fastrnn benchmark record"):
        readme_tables.main([str(other), "--readme", str(checkout / "README.md")])


def test_the_char_lm_row_joins_the_table_when_a_record_has_it(tmp_path):
    from bench_records import model_record

    (tmp_path / "README.md").write_text(README)
    path = tmp_path / "bench.json"
    save_record(model_record(converted=0.25), path)
    assert readme_tables.main([str(path), "--readme", str(tmp_path / "README.md")]) == 0
    block = _generated((tmp_path / "README.md").read_text())
    row = next(line for line in block.splitlines() if line.startswith("| char-LM training"))
    assert "**1.20x**" in row and ">= 1.2x" in row and "| 300 | 250 |" in row
    assert "converted by `fastrnn.torch.convert`" in block
    assert "| lstm training" in block
