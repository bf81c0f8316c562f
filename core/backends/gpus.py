"""What GPUs this box has and who uses them: NVML, or `NKD_GPUS` (a JSON description of GPUs,
re-read when it changes) for tests and demos on a box without one.

NVML comes from the optional `gpu` extra (`nvidia-ml-py`), imported here lazily; the TUI process
never imports this module's NVML path: it runs `python -m core.backends.gpus`, which prints
the same JSON.

    {"gpus": [{"index": 0, "uuid": "GPU-0", "name": "NVIDIA H100 80GB",
               "memory_total_mib": 81559, "memory_used_mib": 0, "utilization": 0,
               "processes": [{"pid": 4242, "user": "someone", "memory_mib": 70000}]}]}
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV = "NKD_GPUS"


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    user: str
    memory_mib: float


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_total_mib: float
    memory_used_mib: float
    utilization: float  # percent
    processes: tuple[GpuProcess, ...] = field(default_factory=tuple)
    mig: bool = False

    @property
    def memory_free_mib(self) -> float:
        return max(0.0, self.memory_total_mib - self.memory_used_mib)

    @property
    def visible_id(self) -> str:
        """What CUDA_VISIBLE_DEVICES names it by: the UUID under MIG, else the PCI-ordered index."""
        return self.uuid if self.mig else str(self.index)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "uuid": self.uuid, "name": self.name,
            "memory_total_mib": self.memory_total_mib, "memory_used_mib": self.memory_used_mib,
            "utilization": self.utilization, "mig": self.mig,
            "processes": [{"pid": p.pid, "user": p.user, "memory_mib": p.memory_mib}
                          for p in self.processes],
        }


class GpuError(ValueError):
    """A GPU description that cannot be read; the message names the file and the key."""


_cache: dict[str, tuple[float, int, list[Gpu]]] = {}


def from_json(doc: Any, where: str) -> list[Gpu]:
    if not isinstance(doc, dict) or not isinstance(doc.get("gpus"), list):
        raise GpuError(f"{where}: must be a JSON object with a 'gpus' list")
    out = []
    for n, g in enumerate(doc["gpus"]):
        try:
            procs = tuple(
                GpuProcess(int(p["pid"]), str(p.get("user", "?")), float(p.get("memory_mib", 0)))
                for p in g.get("processes", [])
            )
            out.append(Gpu(
                index=int(g.get("index", n)),
                uuid=str(g.get("uuid", f"GPU-{n}")),
                name=str(g.get("name", "GPU")),
                memory_total_mib=float(g["memory_total_mib"]),
                memory_used_mib=float(g.get("memory_used_mib", 0)),
                utilization=float(g.get("utilization", 0)),
                processes=procs,
                mig=bool(g.get("mig", False)),
            ))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise GpuError(f"{where}: gpus[{n}]: {type(exc).__name__}: {exc}") from None
    return out


def _from_file(path: Path) -> list[Gpu]:
    try:
        st = path.stat()
    except OSError as exc:
        raise GpuError(f"{path} ({ENV}): {exc.strerror}") from None
    cached = _cache.get(str(path))
    if cached and cached[:2] == (st.st_mtime, st.st_size):
        return cached[2]
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GpuError(f"{path} ({ENV}): not readable JSON ({exc})") from None
    gpus = from_json(doc, f"{path} ({ENV})")
    _cache[str(path)] = (st.st_mtime, st.st_size, gpus)
    return gpus


def _from_nvml() -> list[Gpu]:
    try:
        import pynvml  # the `gpu` extra: nvidia-ml-py
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no GPU
        return []
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                util = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:
                util = 0.0
            try:
                mig = bool(pynvml.nvmlDeviceGetMigMode(h)[0])
            except Exception:
                mig = False
            procs = []
            try:
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                    procs.append(GpuProcess(int(p.pid), _user(int(p.pid)),
                                            float(p.usedGpuMemory or 0) / 2**20))
            except Exception:
                pass
            name = pynvml.nvmlDeviceGetName(h)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            out.append(Gpu(
                index=i,
                uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                name=name.decode() if isinstance(name, bytes) else str(name),
                memory_total_mib=mem.total / 2**20,
                memory_used_mib=mem.used / 2**20,
                utilization=util,
                processes=tuple(procs),
                mig=mig,
            ))
        return out
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _user(pid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
    except (OSError, KeyError, ImportError):
        return "?"


def read_gpus() -> list[Gpu]:
    """This box's GPUs now (empty when it has none); GpuError for a bad NKD_GPUS file."""
    described = os.environ.get(ENV)
    if described:
        return _from_file(Path(described))
    return _from_nvml()


DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU while the driver is loaded


def cuda_devices() -> int | None:
    """How many CUDA GPUs this box has, without NVML or torch: the NKD_GPUS description where
    set (tests), else the NVIDIA driver's own listing; 0 with no driver, None where it cannot
    be told (a driver device without its listing)."""
    if os.environ.get(ENV):
        return len(read_gpus())
    try:
        return sum(1 for _ in DRIVER_GPUS.iterdir())
    except FileNotFoundError:
        return None if Path("/dev/nvidiactl").exists() else 0
    except OSError:
        return None


def main() -> int:
    """`python -m core.backends.gpus`: the GPUs as JSON, for a process that must not load NVML
    itself."""
    try:
        gpus = read_gpus()
    except GpuError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    from core.backends.procs import run_of

    out = [g.as_dict() for g in gpus]
    for gpu in out:  # which processes belong to nkd's runs (they carry the run's mark)
        for proc in gpu["processes"]:
            run = run_of(proc["pid"])
            if run:
                proc["run"] = run
    print(json.dumps({"gpus": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
