"""Every process a run started, found again: its worker's descendants and anything that carries
the run's mark in its environment (NKD_RUN_ID), so a script's `setsid` or background children,
and the leftovers of a worker killed with -9, can still be ended."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

import psutil

MARK = "NKD_RUN_ID"
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process instead of init (Linux), so the
    worker still sees a script's double-forked children."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _marked(run_id: str) -> set[int]:
    needle = f"{MARK}={run_id}".encode()
    found: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.add(int(entry))
    return found


def run_processes(run_id: str, root: int | None = None) -> list[psutil.Process]:
    """The run's live processes (not this one): marked ones and `root`'s descendants."""
    pids = _marked(run_id)
    if root:
        try:
            pids |= {p.pid for p in psutil.Process(root).children(recursive=True)}
            pids.add(root)
        except psutil.Error:
            pass
    pids.discard(os.getpid())
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
    n = 0
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
            n += 1
        except psutil.Error:
            continue
    return n


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
