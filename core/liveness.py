"""Is a run's process still alive? pid plus process start time, so a reused pid is not mistaken."""

from __future__ import annotations

import psutil

# create_time() is derived from clock ticks since boot; two reads of one process agree exactly,
# a different process that reuses the pid starts at least a tick later.
START_TOLERANCE_S = 0.02


def process_start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def is_alive(pid: int | None, start_time: float | None) -> bool:
    if not pid or start_time is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - start_time) <= START_TOLERANCE_S
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False
