"""The worker's one reporter: every event goes to runs/<id>/events.jsonl (flushed) and the store."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from core.store import Store


class Reporter:
    """Log dicts for a run. The JSONL file is the durable record; the store is an index of it."""

    def __init__(self, run_id: str, run_dir: Path, store: Store | None) -> None:
        self.run_id = run_id
        self.store = store
        self._fh = open(run_dir / "events.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        event = {"t": time.time(), **event}
        self._fh.write(json.dumps(event, sort_keys=True) + "\n")
        self._fh.flush()
        if self.store is not None:
            try:
                self.store.apply(self.run_id, event)
            except Exception as exc:  # the JSONL line is kept; `nkd reindex` restores the row
                print(f"nkd: store write failed for {self.run_id}: {exc}", file=sys.stderr)
        return event

    def status(self, status: str, **fields: Any) -> None:
        self.event({"type": "status", "status": status, **fields})

    def epoch(self, epoch: int, **values: Any) -> None:
        self.event({"type": "epoch", "epoch": epoch, **values})

    def metric(self, name: str, value: float, **where: Any) -> None:
        self.event({"type": "metric", "name": name, "value": float(value), **where})

    def checkpoint(self, path: str, role: str, **fields: Any) -> None:
        self.event({"type": "checkpoint", "path": path, "role": role, **fields})

    def close(self) -> None:
        self._fh.close()
