"""The README's example programs run and do what they say."""
import importlib.util
from pathlib import Path

import pytest

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


@pytest.fixture
def _torch_example():
    """Load a torch example with torch on one thread: these shapes are tiny, and torch's OpenMP pool
    and NumPy's OpenBLAS pool busy-wait against each other on two cores."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield _load
    torch.set_num_threads(before)


def test_char_lm_learns_and_samples(capsys, _torch_example):
    example = _torch_example("char_lm")
    losses, sample = example.main(["--steps", "30", "--seq-len", "24", "--batch", "8",
                                   "--embedding", "16", "--hidden", "32", "--lr", "1e-2",
                                   "--sample", "40"])
    printed = capsys.readouterr()
    assert "sample:" in printed.out and "step 30" in printed.err     # the progress bar, on stderr
    assert losses[-1] < 0.85 * losses[0]
    _, vocab = example.load_text()
    assert len(sample) == len("It is a truth") + 40 and set(sample) <= set(vocab)


def test_sentiment_classifier_learns(_torch_example):
    example = _torch_example("sentiment")
    assert example.main(["--steps", "60", "--max-len", "12", "--hidden", "16"]) >= 0.9


def test_convert_model_times_both_and_agrees(_torch_example):
    example = _torch_example("convert_model")
    before, after, err = example.main(["--seq-len", "6", "--batch", "3", "--hidden", "8",
                                       "--repeats", "2"])
    assert all(t > 0 for t in before + after)
    assert err <= 1e-5


def test_char_lm_speed_script_times_both_sides():
    """bench/char_lm_speed.py at a tiny size: one round, each side in its own process."""
    pytest.importorskip("torch")
    path = EXAMPLES.parent / "bench" / "char_lm_speed.py"
    spec = importlib.util.spec_from_file_location("char_lm_speed", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    summary = script.main(["--rounds", "1", "--repeats", "2", "--warmup", "0", "--seq-len", "5",
                           "--batch", "2", "--embedding", "4", "--hidden", "8", "--vocab", "10"])
    for case in ("train", "infer"):
        assert summary[case]["torch"] > 0 and summary[case]["fastrnn"] > 0
        assert summary[case]["ratio"] == pytest.approx(summary[case]["torch"] / summary[case]["fastrnn"])
