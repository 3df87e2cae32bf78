"""What a results file ran on: CPU, cores and threads, GPU and driver, library versions, git commit."""
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
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
              "NUMBA_THREADING_LAYER", "CUPY_TF32")


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


def blas_info() -> dict:
    """NumPy's BLAS as NumPy reports it, and its thread count when threadpoolctl is installed."""
    info: dict = {}
    try:
        import numpy as np

        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = " ".join(str(blas.get(k, "")) for k in ("name", "version")).strip() or None
    except Exception:
        info["numpy_blas"] = None
    try:
        from threadpoolctl import threadpool_info

        info["blas_threads"] = [p.get("num_threads") for p in threadpool_info()
                                if p.get("user_api") == "blas"]
    except ImportError:
        pass
    return info


def thread_info() -> dict:
    """Thread counts in effect: PyTorch's default (never changed by the benchmark), Numba's, BLAS's,
    and the environment variables that set them."""
    threads: dict = {"env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ}}
    if "torch" in sys.modules or package_version("torch"):
        try:
            import torch

            threads["torch"] = torch.get_num_threads()
            threads["torch_interop"] = torch.get_num_interop_threads()
        except Exception:
            pass
    if package_version("numba"):
        try:
            import numba

            threads["numba"] = numba.get_num_threads()
            threads["numba_threading_layer"] = numba.config.THREADING_LAYER
        except Exception:
            pass
    threads.update(blas_info())
    return threads


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


def load_average() -> Optional[list]:
    """The 1, 5 and 15 minute load averages: other work on the machine makes every time noisier."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_record(probe_gpu: bool = False) -> dict:
    return {"date": now_iso(), "cpu": cpu_info(), "gpus": gpu_info(probe_gpu),
            "threads": thread_info(), "versions": versions(), "git": git_info(),
            "load_before": load_average()}
