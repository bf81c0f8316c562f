"""Is a run's process still alive? pid plus process start, so a reused pid is not mistaken.

The start is the kernel's own clock-tick count since boot (field 22 of `/proc/<pid>/stat`): two
reads of one process give the same integer, whatever the wall clock or `/proc/stat`'s boot time
do meanwhile (on some virtual machines the latter jumps by tens of seconds between reads, which
made a live process look like another one). Where there is no /proc, psutil's wall-clock start
time is compared with a small tolerance instead.
"""

from __future__ import annotations

import os
from pathlib import Path

# a wall-clock start time is derived from ticks and the boot time; only the fallback uses it
START_TOLERANCE_S = 0.02


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the command name, which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    _, sep, rest = text.rpartition(")")
    return rest.split() if sep else None


def is_frozen(pid: int) -> bool:
    """Is the process stopped by a signal (SIGSTOP, ctrl-Z, a debugger)? It acts on nothing,
    a stop request included, until it is continued."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] in ("T", "t")


def start_ticks(pid: int) -> int | None:
    """The process's start in clock ticks after boot, or None (no such process, no /proc)."""
    fields = _stat_fields(pid)
    if not fields or len(fields) < 20:
        return None
    try:
        return int(fields[19])  # field 22 of the whole line; fields[0] is field 3 (state)
    except ValueError:
        return None


def process_start_time(pid: int) -> float | None:
    """Wall-clock start time, for display and for stores written before start ticks: the boot
    time plus the start ticks, as psutil's create_time() computes it (read here from /proc, so
    that a launcher need not import psutil), else psutil's."""
    ticks, boot = start_ticks(pid), _boot_time()
    if ticks is not None and boot is not None:
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    import psutil  # no /proc

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _boot_time() -> float | None:
    """The kernel's boot time (`btime` of /proc/stat), or None."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def is_alive(pid: int | None, start_time: float | None = None, ticks: int | None = None) -> bool:
    """True while the process that was recorded (pid and start) still runs and is no zombie."""
    if not pid:
        return False
    if ticks is not None:
        fields = _stat_fields(pid)
        if fields is not None:
            return fields[0] not in ("Z", "X") and len(fields) >= 20 and fields[19] == str(ticks)
        if Path("/proc/self/stat").exists():
            return False  # /proc works, this pid is not in it
    if start_time is None:
        return False
    import psutil  # no /proc

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - start_time) <= START_TOLERANCE_S
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def identity(pid: int) -> dict[str, float | int | None]:
    """What a status event records so that the process can be recognised later."""
    return {"pid": pid, "pid_start": process_start_time(pid), "pid_ticks": start_ticks(pid)}


def ticks_now() -> int | None:
    """The clock ticks since boot now (the unit of start_ticks), or None (no /proc)."""
    try:
        with open("/proc/uptime", "rb") as f:
            return int(float(f.read().split()[0]) * os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
