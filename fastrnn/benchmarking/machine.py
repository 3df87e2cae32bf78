"""What a results file ran on: CPU, cores, GPU and driver, library versions, git commit, load."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

PACKAGES = ("fastrnn", "numpy", "numba", "scipy", "cupy", "torch", "matplotlib")


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_info() -> dict:
    model, cores = None, set()
    physical = None
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model is None:
            model = value
        elif key == "physical id":
            physical = value
        elif key == "core id":
            cores.add((physical, value))
    if not model:
        model = platform.processor() or platform.machine()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem_kb = None
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "model": model,
        "logical_cpus": os.cpu_count(),
        "physical_cores": len(cores) or None,
        "usable_cpus": usable,
        "memory_gib": round(mem_kb / 2 ** 20, 1) if mem_kb else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def package_version(name: str) -> Optional[str]:
    """Installed version of an importable package, without importing it (CuPy's wheel is named
    cupy-cuda12x etc., so the distribution is looked up from the import name)."""
    dists = importlib.metadata.packages_distributions().get(name, [name])
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    if name == "fastrnn":
        try:
            import fastrnn

            return getattr(fastrnn, "__version__", None)
        except Exception:
            return None
    return None


def versions() -> dict:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        found[name] = package_version(name)
    return found


def numpy_blas() -> Optional[str]:
    """NumPy's BLAS library and version, as NumPy reports it."""
    try:
        import numpy as np

        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        return " ".join(str(blas.get(k, "")) for k in ("name", "version")).strip() or None
    except Exception:
        return None


def gpu_info(probe: bool) -> list:
    """Name, driver, memory and compute capability of each GPU; [] without one. `probe` allows
    importing CuPy / PyTorch when nvidia-smi is not there."""
    gpus = []
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            text = subprocess.run(
                [smi, "--query-gpu=name,driver_version,memory.total,compute_cap",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout
            for line in text.strip().splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) >= 4:
                    gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2],
                                 "compute_capability": parts[3]})
        except (OSError, subprocess.SubprocessError):
            pass
    if gpus or not probe:
        return gpus
    try:
        import cupy

        rt = cupy.cuda.runtime
        for i in range(rt.getDeviceCount()):
            props = rt.getDeviceProperties(i)
            gpus.append({"name": props["name"].decode(), "driver": f"CUDA driver API {rt.driverGetVersion()}",
                         "memory": f"{props['totalGlobalMem'] / 2 ** 30:.0f} GiB",
                         "compute_capability": f"{props['major']}.{props['minor']}",
                         "cuda_runtime": rt.runtimeGetVersion()})
    except Exception:
        pass
    return gpus


def git_info() -> dict:
    """The commit of the fastrnn source tree when it is a git checkout (None from a wheel)."""
    root = Path(__file__).resolve().parents[2]
    git = shutil.which("git")
    if not git or not (root / ".git").exists():
        return {"commit": None, "dirty": None}

    def run(*args):
        return subprocess.run([git, "-C", str(root), *args], capture_output=True, text=True,
                              timeout=20)

    try:
        head = run("rev-parse", "HEAD")
        commit = head.stdout.strip() if head.returncode == 0 else None
        # Uncommitted or untracked source of the package itself means the commit is not what ran.
        status = run("status", "--porcelain", "--", "fastrnn", "kernels")
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def cpu_busy_s() -> Optional[float]:
    """CPU seconds the whole machine has spent busy since boot, all CPUs together (Linux)."""
    fields = _read("/proc/stat").partition("\n")[0].split()
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds used by this process and its finished children (the benchmark's own workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load_average() -> Optional[list]:
    """The 1, 5 and 15 minute load averages: other work on the machine makes every time noisier."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_record(probe_gpu: bool = False) -> dict:
    """What the run is on. Thread counts are not here: each worker reads back its own (threads.py)."""
    return {"date": now_iso(), "cpu": cpu_info(), "gpus": gpu_info(probe_gpu),
            "numpy_blas": numpy_blas(), "versions": versions(), "git": git_info(),
            "load_before": load_average()}
