"""Status changes made only from the status a run still has: checked and recorded (events file,
then store) under the store's write lock, by whoever changes a run's status from outside its
worker: the queue, control, `lost`, Slurm."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from core.errors import RunError
from core.registry.workspace import Workspace
from core.store import ACTIVE, Store
from core.store.apply import HANDLERS
from core.store.events import final_status
from core.store.reporter import Reporter
from core.store.states import Status


def transition(
    store: Store,
    ws: Workspace,
    run_id: str,
    allowed: Iterable[str],
    event: dict[str, Any],
    unless: Callable[[dict[str, Any]], bool] = lambda _row: False,
) -> bool:
    """Record a status event (file, then store) only if, under the store's write lock, the
    run's status is one of `allowed` and `unless(row)` is false. A final status that the worker
    wrote to its file but not to the store is taken from the file instead."""
    run_dir = ws.run_dir(run_id)
    with store.write() as conn:
        cur = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
        found = cur.fetchone()
        if found is None:
            return False
        row = dict(zip([d[0] for d in cur.description], found, strict=True))
        if row["status"] not in tuple(allowed) or unless(row):
            return False
        final = final_status(run_dir / "events.jsonl") if run_dir.is_dir() else None
        if final is not None and row["status"] in ACTIVE and row["status"] != Status.QUEUED:
            # the worker wrote its end to the file but not to the store: take it from there
            HANDLERS["status"](conn, run_id, final)
            return False
        event = {"t": time.time(), **event}
        try:  # into events.jsonl too, so `nkd reindex` keeps it
            with Reporter(run_id, run_dir, None) as reporter:
                reporter.event(event)
        except (RunError, OSError):
            pass  # a folder that cannot be written: the store still says it
        HANDLERS["status"](conn, run_id, event)
        return True
