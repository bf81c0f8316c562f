"""Finding runs and their status: liveness, `lost` written only when it is true, and
status changes made only from the status a run still has (under the store's write lock)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.backends import backend_of
from core.errors import RunError
from core.registry.workspace import Workspace
from core.runs import machine
from core.store import ACTIVE, Store
from core.store.events import last_status
from core.store.states import MAY, Status
from core.store.transition import transition

# a run that is queued but whose worker has not reported yet is given this long before "lost"
START_GRACE_S = 30.0


def _gone(row: dict[str, Any], now: float) -> bool:
    """Is the process of an active row gone? A run whose worker has not been recorded yet
    (launched or restarted a moment ago) gets START_GRACE_S from its last status change."""
    if row.get("pid") is None:
        since = row.get("status_at") or row.get("created_at") or 0
        return now - since >= START_GRACE_S
    return not backend_of(row).alive(row)


def effective_status(row: dict[str, Any], host: str | None = None) -> str:
    """The status to show: an active run whose process is gone reads `lost` (not recorded;
    `record_if_lost` decides that, under the write lock)."""
    status = row["status"]
    if status not in MAY["lose"]:  # a queued or ended run has no process to look for
        return status
    if not backend_of(row).checked_by_pid:
        return status  # followed by its backend (Slurm: squeue), not a pid
    if row.get("host") and row["host"] != (host or machine.host()):
        return status  # another machine's process cannot be checked from here
    return Status.LOST if _gone(row, time.time()) else status


LOST_RECHECK_S = 0.2  # the second look, before `lost` is written


def record_if_lost(store: Store, ws: Workspace, run_id: str) -> bool:
    """Record `lost` for a run only if, at the moment of writing, its row is still active, its
    process is still gone (a second look, after a pause) and its events file holds no final
    status. The check and the write happen under the store's write lock, so a worker that
    records its end meanwhile wins, and so does a restart that has just started a new worker.
    A run the queue claimed but never started (its scheduler was killed in between) goes back
    to the queue instead."""
    time.sleep(LOST_RECHECK_S)
    if _claimed_by_queue(ws.run_dir(run_id)) and transition(
        store, ws, run_id, MAY["requeue"],
        {"type": "status", "status": Status.QUEUED},  # its resume flag stays as the queue had it
        unless=lambda row: row.get("pid") is not None or not _gone(row, time.time()),
    ):
        from core.backends.queue.scheduler import ensure_running

        ensure_running(ws)
        return False
    return transition(
        store, ws, run_id, MAY["lose"],
        {"type": "status", "status": Status.LOST,
         "error": "worker process vanished without a final status"},
        unless=lambda row: not _gone(row, time.time()),
    )


def _claimed_by_queue(run_dir: Path) -> bool:
    """Is the last status event the queue's claim (`starting`, by the queue)?"""
    last = last_status(run_dir / "events.jsonl")
    return bool(last and last["status"] == Status.STARTING and last.get("by") == "queue")


def current_status(store: Store, ws: Workspace, row: dict[str, Any]) -> str:
    """One run's status now, read again from the store (a row read earlier may be stale);
    records `lost` when `record_if_lost` confirms it."""
    fresh = store.get_run(row["id"]) or row
    if fresh["status"] in ACTIVE and effective_status(fresh) == Status.LOST:
        if _try_record_lost(store, ws, row["id"]):
            return Status.LOST
        fresh = store.get_run(row["id"]) or fresh
    return str(fresh["status"])


def _try_record_lost(store: Store, ws: Workspace, run_id: str) -> bool:
    try:
        return record_if_lost(store, ws, run_id)
    except sqlite3.Error:  # a read-only or full database: show it as it is, record nothing
        return False


def reconcile(store: Store, ws: Workspace) -> list[str]:
    """Check every run that claims to be alive; record `lost` for those that are."""
    host = machine.host()
    suspects = [r["id"] for r in store.active_runs() if effective_status(r, host) == Status.LOST]
    return [run_id for run_id in suspects if _try_record_lost(store, ws, run_id)]


def resolve_run(store: Store, ref: str) -> str:
    """A run id from an id, a unique id prefix, or an experiment name (its latest run)."""
    matches = store.find_runs(ref)
    if ref in matches:
        return ref
    latest = store.latest_run(ref)
    if latest is not None:
        return latest["id"]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        shown = ", ".join(matches[:5])
        raise RunError(f"run '{ref}' is ambiguous: {len(matches)} runs match ({shown}, ...)")
    raise RunError(f"no run or experiment with runs named '{ref}' in {store.path}")


def wait_for(store: Store, run_id: str, statuses: Iterable[str], timeout: float) -> str | None:
    """Poll the store until the run reaches one of `statuses`; returns it, or None on timeout."""
    wanted = set(statuses)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = store.get_run(run_id)
        if row and row["status"] in wanted:
            return row["status"]
        time.sleep(0.1)
    return None
