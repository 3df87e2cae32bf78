"""A converted model under DistributedDataParallel (gloo, two CPU processes on this machine, loopback
only) gives the gradients of one process on the whole batch."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)

import torch_ddp_worker as worker  # noqa: E402
from torch_support import assert_close  # noqa: E402

WORKER = Path(worker.__file__).resolve()
REPO = WORKER.parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_on_two_processes_matches_one_process_on_the_whole_batch(tmp_path):
    world, port = 2, _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    outs = [tmp_path / f"rank{r}.pt" for r in range(world)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), str(world), str(port), str(out)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r, out in enumerate(outs)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=180)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a DDP worker did not finish within 180 s")
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log
    per_rank = [torch.load(out) for out in outs]
    expected = worker.gradients(worker.build(), *worker.batch())
    assert set(per_rank[0]) == set(expected)
    for name, g in expected.items():
        assert torch.equal(per_rank[0][name], per_rank[1][name]), f"ranks disagree on {name}"
        assert_close(per_rank[0][name], g, 1e-10, name)
