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


def test_readme_usage_example_runs():
    """The first Python block of README.md is the usage example users copy: it must run as shown."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    lstm = namespace["lstm"]
    assert set(lstm.grads) == set(lstm.state_dict())
    assert namespace["h"].shape == (1, namespace["H"])
