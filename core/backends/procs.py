"""Every process a run started, found again: its worker's descendants and anything that carries
the run's mark in its environment (NKD_RUN_MARK, the run folder's absolute path: unique across
workspaces, unlike a run id), so a script's `setsid` or background children, and the leftovers
of a worker killed with -9, can still be ended."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.backends.liveness import start_ticks
from core.util.project import PROJECT_ROOT

if TYPE_CHECKING:
    import psutil

MARK = "NKD_RUN_MARK"
PR_SET_CHILD_SUBREAPER = 36


def python_env(run_dir: Path | None) -> dict[str, str]:
    """The environment of an nkd process we start (a worker, the scheduler): this project on
    PYTHONPATH, and the run's mark, or none for a process that is no run's."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    for key in (MARK, "NKD_RUN_ID"):
        env.pop(key, None)
    if run_dir is not None:
        env[MARK] = str(run_dir)
        env["NKD_RUN_ID"] = run_dir.name  # for the run's own scripts
    return env


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process instead of init (Linux), so the
    worker still sees a script's double-forked children."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def mark_of(pid: int) -> str | None:
    """The run folder a process belongs to (its mark), or None."""
    needle = f"{MARK}=".encode()
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for item in env.split(b"\0"):
        if item.startswith(needle):
            return item[len(needle):].decode(errors="replace")
    return None


def run_of(pid: int) -> str | None:
    """The id of the run a process belongs to, or None."""
    mark = mark_of(pid)
    return Path(mark).name if mark else None


def marked() -> dict[int, str]:
    """Every process that carries a run's mark: pid -> its run folder."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    found = {}
    for entry in entries:
        if entry.isdigit():
            mark = mark_of(int(entry))
            if mark is not None:
                found[int(entry)] = mark
    return found


def run_processes(run_dir: Path, root: int | None = None,
                  started_before: int | None = None) -> list[psutil.Process]:
    """The run's live processes (not this one): marked ones and `root`'s descendants; with
    `started_before` (clock ticks since boot), only those started before then: a worker that
    let go of its run ends what the run left, never the next worker of the run (a promoted
    or restarted one) that the scheduler may have started in the meantime."""
    import psutil  # on use: a launcher prestarting a worker needs none of it

    pids = {pid for pid, mark in marked().items() if mark == str(run_dir)}
    if root:
        try:
            pids |= {p.pid for p in psutil.Process(root).children(recursive=True)}
            pids.add(root)
        except psutil.Error:
            pass
    pids.discard(os.getpid())
    if started_before is not None:
        pids = {pid for pid in pids if (start_ticks(pid) or started_before) < started_before}
    procs = []
    for pid in sorted(pids):
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                procs.append(proc)
        except psutil.Error:
            continue
    return procs


def end_processes(procs: list[psutil.Process], grace: float = 2.0) -> int:
    """SIGTERM, then SIGKILL after `grace` seconds for those still there; returns how many
    were signalled."""
    import psutil  # on use: a launcher prestarting a worker needs none of it

    signalled = len(procs)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for proc in procs:
            try:
                proc.send_signal(sig)
                alive.append(proc)
            except psutil.Error:
                continue
        if sig == signal.SIGTERM:
            deadline = time.monotonic() + grace
            while alive and time.monotonic() < deadline:
                alive = [p for p in alive if _running(p)]
                time.sleep(0.05)
            procs = alive
    return signalled


def kill_all(procs: list[psutil.Process]) -> int:
    import psutil  # on use: a launcher prestarting a worker needs none of it

    n = 0
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
            n += 1
        except psutil.Error:
            continue
    return n


def _running(proc: psutil.Process) -> bool:
    import psutil  # on use: a launcher prestarting a worker needs none of it

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
