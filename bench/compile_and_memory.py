"""Two numbers published beside the speed table, each measured in fresh processes:

* compile time of the first call of every cell (float32 and float64, training forward + backward,
  the thread team's training and eval loops, the inference step and a burst of steps that runs
  paired on two cores) with an empty Numba cache and
  an empty fastrnn choice cache, then again with the caches that run left behind;
* a user's first call with warm caches: `import fastrnn`, then an LSTM (T=100, N=32, I=H=256)
  float32 training forward + backward, in a fresh process, against the same call once warm;
* peak memory allocated by NumPy during LSTM (T=100, N=32, I=H=256) training (forward + backward) and
  inference (eval forward), counted by tracemalloc, which sees every NumPy buffer.

    python bench/compile_and_memory.py [--backend numba] [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

FIRST_CALLS = r"""
import time, numpy as np
t0 = time.perf_counter()
import fastrnn as fr
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
modules = [fr.LSTM, fr.GRU, fr.RNN, lambda *a, **k: fr.RNN(*a, nonlinearity="relu", **k)]
cells = [fr.LSTMCell, fr.GRUCell, fr.RNNCell, lambda *a, **k: fr.RNNCell(*a, nonlinearity="relu", **k)]
for dtype in ("float32", "float64"):
    for batch in (1, 8):   # the whole-loop small-batch kernels and the per-step kernels
        x = rng.standard_normal((5, batch, 3)).astype(dtype)
        for make in modules:
            m = make(3, 4, dtype=dtype, backend="{backend}")
            out, _ = m(x)
            m.backward(np.ones_like(out))
        # 64 hidden units: at 8 rows on 2+ threads the thread team's loops, training and eval,
        # and the first-use probe that chooses between them and the serial loops (team_choice.py)
        for make in modules:
            m = make(3, 64, dtype=dtype, backend="{backend}")
            out, _ = m(x)
            m.backward(np.ones_like(out))
            m.eval()(x)
    for make in cells:
        c = make(3, 4, dtype=dtype, backend="{backend}").eval()
        h = np.zeros((1, 4), dtype)
        c(np.ones((1, 3), dtype), (h, h) if isinstance(c, fr.LSTMCell) else h)
    # a burst of steps large enough to run paired on 2+ threads (pair.py: the caller's and the
    # partner's kernels)
    c = fr.LSTMCell(96, 128, dtype=dtype, backend="{backend}").eval()
    state = (np.zeros((1, 128), dtype), np.zeros((1, 128), dtype))
    for _ in range(20):
        state = c(np.ones((1, 96), dtype), state)
print(time.perf_counter() - t0 - t_import, t_import)
"""

USER_FIRST_CALL = r"""
import time
t0 = time.perf_counter()
import numpy as np, fastrnn as fr
x = np.random.default_rng(0).standard_normal((100, 32, 256)).astype(np.float32)
m = fr.LSTM(256, 256, backend="{backend}")
out, _ = m(x); m.backward(np.ones_like(out))
first = time.perf_counter() - t0
again = []
for _ in range(5):
    t1 = time.perf_counter(); out, _ = m(x); m.backward(np.ones_like(out))
    again.append(time.perf_counter() - t1)
print(first, sorted(again)[2])
"""

PEAK_MEMORY = r"""
import tracemalloc, numpy as np, fastrnn as fr
T, N, H = 100, 32, 256
m = fr.LSTM(H, H, backend="{backend}")
x = np.random.default_rng(0).standard_normal((T, N, H)).astype(np.float32)
m.eval(); m(x); m.train(); out, _ = m(x); m.backward(np.ones_like(out))   # compile, warm up
m._thread.tape = None
tracemalloc.start()
m.train(); out, _ = m(x); m.backward(np.ones_like(out))
training = tracemalloc.get_traced_memory()[1]
del out; m._thread.tape = None; m.grads = {{}}
tracemalloc.reset_peak()
m.eval(); m(x)
inference = tracemalloc.get_traced_memory()[1]
print(training, inference)
"""


def run(code: str, env: dict) -> list:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return [float(v) for v in result.stdout.split()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    results = {"backend": args.backend, "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(cache, "numba"),
                   FASTRNN_CACHE_DIR=os.path.join(cache, "fastrnn"))
        cold, import_s = run(FIRST_CALLS.format(backend=args.backend), env)
        warm, _ = run(FIRST_CALLS.format(backend=args.backend), env)
        run(USER_FIRST_CALL.format(backend=args.backend), env)      # its shape's choice, cached
        user_first, user_warm = run(USER_FIRST_CALL.format(backend=args.backend), env)
        training, inference = run(PEAK_MEMORY.format(backend=args.backend), env)
    results.update(import_s=import_s, first_calls_cold_s=cold, first_calls_warm_s=warm,
                   lstm_training_first_call_warm_s=user_first, lstm_training_call_s=user_warm,
                   lstm_100_32_256_training_peak_mb=training / 2**20,
                   lstm_100_32_256_inference_peak_mb=inference / 2**20)
    print(f"import fastrnn: {import_s:.2f} s")
    print(f"first calls, every cell x dtype x path, empty cache: {cold:.1f} s; warm cache: {warm:.2f} s")
    print(f"import + first LSTM (100, 32, 256) training call, warm caches: {user_first:.2f} s "
          f"(the same call warm: {user_warm:.3f} s)")
    print(f"LSTM (100, 32, 256) peak NumPy memory: training {training / 2**20:.1f} MiB, "
          f"inference {inference / 2**20:.1f} MiB")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
