"""The `[queue]` and `[sweeps.NAME]` tables of a registry, and the run keys of placement."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MEMORY = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(GiB|GB|G|MiB|MB|M|TiB|TB|T)?\s*", re.IGNORECASE)
_MIB = {"g": 1024, "gb": 1000**3 / 2**20, "gib": 1024, "m": 1, "mb": 1000**2 / 2**20, "mib": 1,
        "t": 1024**2, "tb": 1000**4 / 2**20, "tib": 1024**2}


def parse_memory(value: Any) -> float | None:
    """MiB from "10GiB", "512MiB", "10 GB" or a number of GiB; None when it is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) * 1024 if math.isfinite(value) and value >= 0 else None
    if not isinstance(value, str):
        return None
    m = MEMORY.fullmatch(value)
    if not m:
        return None
    return float(m.group(1)) * _MIB[(m.group(2) or "GiB").lower()]


@dataclass(frozen=True)
class QueueConfig:
    gpus: tuple[int, ...] | None = None  # which GPUs nkd may use (None: all)
    runs_per_gpu: int = 1
    utilization_ceiling: float = 50.0  # % above which a GPU with others' jobs counts as busy
    foreign_memory_ceiling: float = 0.5  # share of memory others may hold before it is busy
    max_running: int = 1  # on a box without GPUs: runs at once


QUEUE_KEYS = {
    "gpus": "which GPU indices nkd may use (default: all)",
    "runs_per_gpu": "how many runs may share one GPU (default 1)",
    "utilization_ceiling": "percent utilisation above which a GPU with others' jobs is busy (50)",
    "foreign_memory_ceiling": "share of a GPU's memory others may use before it is busy (0.5)",
    "max_running": "on a box without GPUs: how many queued runs run at once (1)",
}



def parse_queue(path: Path, table: Any, problems: list[str]) -> QueueConfig:
    if table is None:
        return QueueConfig()
    where = f"{path}: [queue]"
    if not isinstance(table, dict):
        problems.append(f"{where} must be a table")
        return QueueConfig()
    before = len(problems)
    for key, value in table.items():
        if key not in QUEUE_KEYS:
            problems.append(f"{where}: unknown key '{key}' (known: {', '.join(QUEUE_KEYS)})")
        elif key == "gpus":
            if not (isinstance(value, list) and all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
                problems.append(f"{where}: key 'gpus' must be a list of GPU indices, got {value!r}")
        elif key in ("runs_per_gpu", "max_running"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{where}: key '{key}' must be an integer ≥ 1, got {value!r}")
        elif key == "utilization_ceiling":
            if not _number(value) or not 0 < value <= 100:
                problems.append(f"{where}: key '{key}' must be a percentage in (0, 100], "
                                f"got {value!r}")
        elif key == "foreign_memory_ceiling" and (not _number(value) or not 0 < value <= 1):
            problems.append(f"{where}: key '{key}' must be a share in (0, 1], got {value!r}")
    if len(problems) > before:
        return QueueConfig()
    gpus = table.get("gpus")
    return QueueConfig(
        gpus=tuple(gpus) if gpus is not None else None,
        runs_per_gpu=table.get("runs_per_gpu", 1),
        utilization_ceiling=float(table.get("utilization_ceiling", 50.0)),
        foreign_memory_ceiling=float(table.get("foreign_memory_ceiling", 0.5)),
        max_running=table.get("max_running", 1),
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
