"""The order in which this box's queued runs start: priority (higher first), then age. Light
on purpose: the TUI numbers the queued runs with it while it paints."""

from __future__ import annotations

from typing import Any

from core.store import Store
from core.store.states import Status


def queued_rows(store: Store) -> list[dict[str, Any]]:
    """Queued runs in the order they start: priority (higher first), then age."""
    cols = ("id", "experiment", "recipe", "needs_gpus", "gpu_memory", "priority", "after",
            "resume", "queued_at", "sweep", "params")
    cur = store.conn.execute(
        f"SELECT {', '.join(cols)} FROM runs WHERE status = ? "
        "AND coalesce(backend, 'local') = 'local' ORDER BY priority DESC, queued_at, created_at",
        (Status.QUEUED,),
    )
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
