"""Reads the store and run folders for the TUI and returns frozen snapshots (runs in threads)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.store import Store
from core.workspace import Workspace
from nkd_tui.format import duration, fmt_num, fmt_time

LOG_TAIL_BYTES = 16_384
RECONCILE_EVERY_S = 5.0
RUN_COLUMNS = (
    "id", "status", "epoch", "epochs_total", "best_val_loss",
    "coalesce(sdr, accuracy) AS score", "started_at", "ended_at", "device",
)


@dataclass(frozen=True)
class RunRow:
    """One line of the run table, display-ready."""

    run_id: str
    status: str
    cells: tuple[str, ...]


@dataclass(frozen=True)
class Snapshot:
    latest: dict[str, str]
    experiment: str | None
    runs: tuple[RunRow, ...]
    run_id: str | None
    new_epochs: tuple[tuple[int, float | None, float | None], ...] = ()
    log_tail: str = ""
    lost: tuple[str, ...] = field(default_factory=tuple)


def short_id(run_id: str, experiment: str) -> str:
    """The run table is per experiment, so its rows show the id without the experiment name."""
    return run_id.removeprefix(experiment + "_")


class Poller:
    """One store connection per thread; incremental reads of the followed run's epochs."""

    def __init__(self, workspace: Workspace, clock=time.time) -> None:
        self.ws = workspace
        self.clock = clock
        self._local = threading.local()
        self._next_reconcile = 0.0

    @property
    def store(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store(self.ws.db_path)
        return store

    def snapshot(
        self, experiment: str | None, run_id: str | None, after_epoch: int,
        reconcile_runs: bool = True,
    ) -> Snapshot:
        """What the screen shows. `reconcile_runs=False` skips the liveness check (and its
        imports), for the snapshot read while the app starts; the next poll does it."""
        lost: tuple[str, ...] = ()
        now = time.monotonic()
        if reconcile_runs and now >= self._next_reconcile:
            self._next_reconcile = now + RECONCILE_EVERY_S
            from core.runner import reconcile  # psutil and friends, not needed to paint

            lost = tuple(reconcile(self.store, self.ws))
        runs = self.runs(experiment) if experiment else ()
        if run_id is None and runs:
            run_id = runs[0].run_id
        new_epochs: tuple = ()
        tail = ""
        if run_id:
            new_epochs = tuple(self.store.epochs_after(run_id, after_epoch))
            tail = self.log_tail(run_id)
        return Snapshot(self.store.latest_statuses(), experiment, runs, run_id, new_epochs,
                        tail, lost)

    def runs(self, experiment: str) -> tuple[RunRow, ...]:
        now = self.clock()
        out = []
        for r in self.store.list_runs(experiment, columns=RUN_COLUMNS):
            total = r["epochs_total"]
            cells = (
                short_id(r["id"], experiment),
                r["status"],
                f"{r['epoch'] or 0}/{total or '?'}",
                fmt_num(r["best_val_loss"]),
                fmt_num(r["score"]),
                fmt_time(r["started_at"]),
                duration(r, now),
                r["device"] or "-",
            )
            out.append(RunRow(r["id"], r["status"], cells))
        return tuple(out)

    def log_tail(self, run_id: str) -> str:
        path: Path = self.ws.run_dir(run_id) / "output.log"
        try:
            with open(path, "rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                fh.seek(max(0, size - LOG_TAIL_BYTES))
                data = fh.read()
        except OSError:
            return ""
        text = data.decode("utf-8", errors="replace")
        return text if size <= LOG_TAIL_BYTES else text.split("\n", 1)[-1]
