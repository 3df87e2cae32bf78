"""The README's example programs run and do what they say."""
import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sine_lstm_loss_falls(capsys):
    example = _load("sine_lstm")
    final_loss = example.main(["--steps", "60", "--backend", "numpy"])
    printed = capsys.readouterr().out
    first_loss = float(printed.split("step    1  loss ")[1].split()[0])
    assert final_loss < 0.25 * first_loss
