"""The machine a run's worker ran on, recorded by the worker itself (on Slurm, the compute node,
not the login node that submitted it): host, Python, torch with its CUDA and cuDNN, the NVIDIA
driver and the GPUs it sees.

GPUs and the driver come from NVML where the `gpu` extra (nvidia-ml-py) is installed, else from
the driver's own files under /proc/driver/nvidia; torch's versions from the loaded torch (a
recipe's worker has imported it), else from torch's version file without importing it (a
command experiment's script loads its own). `NKD_GPUS`, the GPU test seam, describes the GPUs
where it is set. Nothing here raises: what cannot be read is left out.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from core.util.files import atomic_write_json, read_json

NAME = "worker_environment.json"
DRIVER = Path("/proc/driver/nvidia")


def _torch() -> dict[str, Any]:
    torch = sys.modules.get("torch")
    if torch is not None:
        out: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda}
        try:
            out["cudnn"] = torch.backends.cudnn.version() if \
                torch.backends.cudnn.is_available() else None
            out["cuda_available"] = bool(torch.cuda.is_available())
        except Exception:
            pass
        return out
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return {"torch": None}
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return {"torch": "?"}
    found = dict(re.findall(r"^(__version__|cuda)\s*(?::\s*\S+\s*)?=\s*'([^']*)'", text, re.M))
    return {"torch": found.get("__version__", "?"), "cuda": found.get("cuda")}


def _gpus() -> dict[str, Any]:
    """{"driver": version, "gpus": [names], "read_by": ...}: NKD_GPUS where set, else NVML,
    else the driver's files; no driver, no GPUs."""
    if os.environ.get("NKD_GPUS"):
        try:
            from core.backends.gpus import read_gpus

            return {"driver": None, "gpus": [g.name for g in read_gpus()], "read_by": "NKD_GPUS"}
        except Exception:
            return {"driver": None, "gpus": []}
    try:
        import pynvml  # the `gpu` extra

        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                     for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
        return {"driver": driver.decode() if isinstance(driver, bytes) else str(driver),
                "gpus": [n.decode() if isinstance(n, bytes) else str(n) for n in names],
                "read_by": "nvml"}
    except Exception:
        pass  # no extra, no driver: the driver's files, if any
    out: dict[str, Any] = {"driver": None, "gpus": []}
    try:
        line = (DRIVER / "version").read_text(encoding="utf-8", errors="replace")
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d[\d.]*)", line)
        out["driver"] = found.group(1) if found else line.splitlines()[0][:120]
        for info in sorted((DRIVER / "gpus").glob("*/information")):
            model = re.search(r"^Model:\s*(.+)$", info.read_text(errors="replace"), re.M)
            out["gpus"].append(model.group(1).strip() if model else "?")
        out["read_by"] = "driver files"
    except OSError:
        pass  # no NVIDIA driver on this machine
    return out


def host() -> str:
    """This machine's name (what socket.gethostname and platform.node give)."""
    return os.uname().nodename


def python_version() -> str:
    """This Python's version, "3.11.7" (platform.python_version's text)."""
    return sys.version.split()[0]


def platform_text() -> str:
    """The system, its release, the architecture and the C library, as platform.platform()
    writes them on Linux ("Linux-6.1.0-x86_64-with-glibc2.36") without its cost there: it
    runs `uname -p` (about 15 ms, on every launch and worker start) for a processor field that
    Debian's uname leaves unknown and others fill with the architecture again, left out here.
    Elsewhere, platform.platform() itself."""
    u = os.uname()
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    if u.sysname != "Linux" or not libc:
        import platform

        return platform.platform()
    return "-".join([u.sysname, u.release, u.machine, "with", libc.replace(" ", "")])


def worker_environment() -> dict[str, Any]:
    return {"host": host(), "python": python_version(),
            "platform": platform_text(), **_torch(), **_gpus(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def record_worker(run_dir: Path) -> None:
    """Add this worker's machine to run_dir/worker_environment.json: the first start, and each
    later start (a resume, a requeue) on a machine that differs from the last one recorded."""
    try:
        now = worker_environment()
        path = run_dir / NAME
        try:
            starts = list(read_json(path).get("starts") or [])
        except (OSError, ValueError, AttributeError):
            starts = []
        if starts and {k: v for k, v in starts[-1].items() if k != "t"} == now:
            return
        atomic_write_json(path, {"starts": [*starts, {"t": time.time(), **now}]})
    except Exception as exc:  # provenance never fails a run
        print(f"nkd: the worker's machine is not recorded ({exc})", flush=True)


def last(run_dir: Path) -> dict[str, Any] | None:
    """The newest start's machine, or None."""
    try:
        starts = read_json(run_dir / NAME).get("starts") or []
    except (OSError, ValueError, AttributeError):
        return None
    return starts[-1] if starts else None
