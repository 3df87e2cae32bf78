"""Char-LM speed: torch.nn's LSTM against the same model converted to fastrnn (fastrnn.torch.convert).

The model is fastrnn.torch.models.CharLM (embedding 64, 2-layer LSTM H=256, linear read-out), the batch
T=100 characters by N=32 sequences, float32, on the CPU. Timed: the training step (forward,
cross-entropy, backward, clip_grad_norm_, Adam step: fastrnn.torch.models.char_lm_train_step) and
inference (forward under torch.no_grad()). Each contestant runs in its own fresh process, the two
taking turns, for --rounds rounds (thread pools left spinning by one library slow the other when they
share a process); each process reports the median of --repeats timings after --warmup untimed calls.
Prints every round, the median over rounds of each contestant, and the ratio torch / converted.

`fastrnn bench` now has these two cases too (the "char-LM" model cases of its quick and full grids,
fastrnn.benchmarking.model_workloads), with the same definition of what is timed, a float64 check of
the converted model against torch.nn, bootstrap intervals and the 1.2x target in its report; use it
for figures to publish. This script stays as a quick standalone look.

    python bench/char_lm_speed.py [--rounds 3] [--repeats 10]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CONTESTANTS = ("torch", "fastrnn")
CASES = ("train", "infer")


def _time_ms(fn, warmup, repeats):
    """Median ms of `repeats` calls after the first call and `warmup` more (fastrnn's timing)."""
    from fastrnn.benchmarking.timing import median_ms

    return median_ms(fn, repeats, warmup)


def worker(args) -> dict:
    """Time both cases for one contestant in this process; returns {case: median ms}. Runs with the
    repository on PYTHONPATH (set by _run_one), so the parent needs no fastrnn installed."""
    import torch

    from fastrnn.torch.models import char_lm, char_lm_train_step

    torch.manual_seed(0)
    model = char_lm(args.vocab, embedding=args.embedding, hidden=args.hidden,
                    num_layers=args.layers, fast=args.worker == "fastrnn")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, args.vocab, (args.seq_len + 1, args.batch))
    inputs, targets = tokens[:-1], tokens[1:]

    def infer():
        with torch.no_grad():
            model(inputs)

    return {"train": _time_ms(lambda: char_lm_train_step(model, optimizer, inputs, targets),
                              args.warmup, args.repeats),
            "infer": _time_ms(infer, args.warmup, args.repeats),
            "threads": torch.get_num_threads()}


def _run_one(contestant, argv) -> dict:
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, __file__, "--worker", contestant] + argv, env=env,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{contestant} worker failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=64)
    parser.add_argument("--worker", choices=CONTESTANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return None

    passed = list(argv if argv is not None else sys.argv[1:])
    print(f"char-LM T={args.seq_len} N={args.batch} E={args.embedding} {args.layers}-layer LSTM "
          f"H={args.hidden} float32; {args.rounds} rounds, median of {args.repeats} per process")
    results = {c: [] for c in CONTESTANTS}
    for r in range(args.rounds):
        order = CONTESTANTS if r % 2 == 0 else CONTESTANTS[::-1]
        for contestant in order:
            res = _run_one(contestant, passed)
            results[contestant].append(res)
            print(f"round {r + 1} {contestant:8s} train {res['train']:8.2f} ms  infer "
                  f"{res['infer']:8.2f} ms  ({res['threads']} torch threads)", flush=True)
    summary = {}
    for case in CASES:
        medians = {c: statistics.median(x[case] for x in results[c]) for c in CONTESTANTS}
        per_round = [t[case] / f[case] for t, f in zip(results["torch"], results["fastrnn"])]
        summary[case] = dict(medians, ratio=medians["torch"] / medians["fastrnn"],
                             per_round=per_round)
        print(f"{case:6s} torch.nn {medians['torch']:8.2f} ms  converted {medians['fastrnn']:8.2f} ms"
              f"  speedup {summary[case]['ratio']:.2f}x  (per round: "
              + ", ".join(f"{x:.2f}" for x in per_round) + ")")
    return summary


if __name__ == "__main__":
    main()
