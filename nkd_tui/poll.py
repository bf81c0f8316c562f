"""Reads the store and run folders for the TUI and returns frozen snapshots (runs in threads)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.registry.workspace import Workspace
from core.runs.progress import (
    cost_text,
    eta_short,
    mean_epoch_seconds,
    per_epoch_text,
    progress,
    progress_text,
)
from core.store import Store
from core.store.events import FINAL, HOLDING
from core.store.states import Status
from core.util.text import visible
from nkd_tui.format import (
    epochs_text,
    fmt_bytes,
    fmt_num,
    fmt_time,
    run_bytes,
    score_cell,
    short_duration,
)

LOG_TAIL_BYTES = 16_384
RECONCILE_EVERY_S = 5.0
RUN_COLUMNS = (
    "id", "status", "epoch", "epochs_total", "best_val_loss",
    "coalesce(sdr, accuracy) AS score", "started_at", "ended_at", "device", "gpus",
    "backend", "job_id", "node", "slurm_reason", "tags", "note", "archived", "caveat",
    "checkpoint_bytes", "folder_bytes",
)
SLURM_EVERY_S = 1.0  # a compute node's epoch is on screen within about a second of ingest
GPUS_EVERY_S = 2.0  # the GPU panel's reading (a subprocess: the TUI never loads NVML)


@dataclass(frozen=True)
class RunRow:
    """One line of the run table, display-ready."""

    run_id: str
    status: str
    cells: tuple[str, ...]
    tags: tuple[str, ...] = ()
    note: str = ""
    archived: bool = False
    caveat: str = ""  # why its score means less than it looks


@dataclass(frozen=True)
class Snapshot:
    latest: dict[str, str]
    experiment: str | None
    runs: tuple[RunRow, ...]
    run_id: str | None
    new_epochs: tuple[tuple, ...] = ()  # (epoch, train, val, lr, extra JSON) after the chart's
    log_tail: str = ""
    lost: tuple[str, ...] = field(default_factory=tuple)
    gpus: GpuReading | None = None  # only while the GPU panel is shown
    ended: tuple[tuple[str, str], ...] = ()  # runs that ended since the last poll, and how
    progress: str = ""  # the followed run's place inside its epoch and its ETA, while it runs
    # experiment -> (live runs, best finished score): the tree's `▶2` and best value
    summaries: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    partial: bool = False  # only the newest runs were read (the first paint): a full read follows
    # experiments with runs that the registry does not name (nkd eval, nkd blend):
    # name -> (group, the experiment it scores or None, description)
    adhoc: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)
    disk: str = ""  # a warning while runs go and the checkpoints' disk is nearly full
    # read with the liveness check, not each poll: free bytes on the checkpoints' disk, and
    # experiment -> its runs' bytes on disk
    free: int | None = None
    sizes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GpuReading:
    """What the GPU panel shows: the GPUs as `python -m core.backends.gpus` printed them, and which
    active nkd runs hold each (CUDA_VISIBLE_DEVICES id -> run ids)."""

    gpus: tuple[dict, ...]
    holders: dict[str, tuple[str, ...]]
    error: str = ""


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
        self._disk = ""  # the low-disk warning, read with the liveness check
        self._free: int | None = None  # the checkpoints' disk's free bytes, read with it
        self._sizes: dict[str, int] | None = None  # each experiment's bytes, read with it
        self._gpu_reading: tuple[float, tuple[dict, ...], str] | None = None
        self._next_slurm = 0.0
        self._active: set[str] | None = None  # runs active at the last poll
        self.show_archived = False  # the TUI's `A`: archived runs listed too, dimmed
        self.search = ""  # the TUI's `/` text: runs whose id, tags or note match it
        self._rows: dict[tuple, RunRow] = {}  # the last listing: its raw rows, as displayed
        self.known: set[str] = set()  # the registry's experiments
        self._adhoc: tuple[frozenset[str], dict[str, tuple[str, str | None, str]]] = (
            frozenset(), {})

    @property
    def store(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store(self.ws.db_path)
        return store

    def snapshot(
        self, experiment: str | None, run_id: str | None, after_epoch: int,
        reconcile_runs: bool = True,
        gpus: bool = False,
        limit: int | None = None,
    ) -> Snapshot:
        """What the screen shows. `reconcile_runs=False` skips the liveness check (and its
        imports), for the snapshot read while the app starts; the next poll does it. `limit`:
        only the newest runs (the first paint needs a screenful; `partial` says more exist)."""
        lost: tuple[str, ...] = ()
        now = time.monotonic()
        # a snapshot is read on a thread of its own and two may overlap (the first paint's and
        # a poll): what one reads is its own, never another's half-made state
        sizes = self._sizes
        if reconcile_runs and now >= self._next_reconcile:
            self._next_reconcile = now + RECONCILE_EVERY_S
            from core.runs.status import reconcile  # psutil and friends, not needed to paint

            lost = tuple(reconcile(self.store, self.ws))
            # free space: read with the liveness check, not each poll
            from core.backends.space import free_bytes, low_space

            self._free = free_bytes(self.ws.checkpoints_dir)
            self._disk = low_space(self.ws, self.store, self._free) or ""
            sizes = None
        if sizes is None:  # with the liveness check, and for the first paint
            sizes = self._sizes = self.store.experiment_bytes()
        if reconcile_runs and now >= self._next_slurm:
            # Slurm runs: their new events, ingested by byte offset, and squeue's view of them
            self._next_slurm = now + SLURM_EVERY_S
            from core.backends import sync_all

            lost += tuple(sync_all(self.store, self.ws))
        runs = self.runs(experiment, limit) if experiment else ()
        if run_id is None and runs:
            run_id = runs[0].run_id
        new_epochs: tuple = ()
        tail = ""
        progress = ""
        if run_id:
            new_epochs = tuple(self.store.epochs_after(run_id, after_epoch))
            tail = self.log_tail(run_id)
            progress = self.progress(run_id)
        latest = self.store.latest_statuses()
        return Snapshot(latest, experiment, runs, run_id, new_epochs,
                        tail, lost, self.gpu_reading() if gpus else None,
                        self.ended_since_last() if reconcile_runs else (), progress,
                        self.store.experiment_summaries(),
                        partial=limit is not None and len(runs) >= limit,
                        adhoc=self.adhoc(latest), disk=self._disk, free=self._free,
                        sizes=sizes)

    def adhoc(self, latest: dict[str, str]) -> dict[str, tuple[str, str | None, str]]:
        """The experiments with runs that the registry does not name, read again only when
        that set changes: each one's group, what it scores and its description."""
        names = frozenset(latest) - self.known
        if names != self._adhoc[0]:
            from core.runs.evals import scored_experiment

            found = {}
            for name, params in self.store.latest_params(sorted(names)).items():
                found[name] = (str(params.get("group") or "other"), scored_experiment(params),
                               str(params.get("description") or ""))
            self._adhoc = (names, found)
        return self._adhoc[1]

    def progress(self, run_id: str) -> str:
        """Step and ETA while the run trains; what its worker cost once it has ended."""
        return (progress_text(self.store.conn, run_id, self.clock())
                or cost_text(self.store.conn, run_id))

    def ended_since_last(self) -> tuple[tuple[str, str], ...]:
        """Runs that were active at the previous poll and have ended since, with their status
        (none at the first poll: what ended before the app opened is not news)."""
        now = {r["id"] for r in self.store.active_runs()}
        before, self._active = self._active, now
        gone = sorted((before or set()) - now)
        if not gone:
            return ()
        marks = ", ".join("?" * len(gone))
        rows = self.store.conn.execute(
            f"SELECT id, status FROM runs WHERE id IN ({marks})", gone).fetchall()
        return tuple((run_id, status) for run_id, status in rows)

    def gpu_reading(self) -> GpuReading:
        """The GPUs (read at most every GPUS_EVERY_S, in a subprocess) and their nkd holders."""
        now = time.monotonic()
        if self._gpu_reading is None or now - self._gpu_reading[0] >= GPUS_EVERY_S:
            self._gpu_reading = (now, *_read_gpus())
        _, gpus, error = self._gpu_reading
        holders: dict[str, list[str]] = {}
        marks = ", ".join("?" * len(HOLDING))
        for run_id, ids in self.store.conn.execute(
            f"SELECT id, gpus FROM runs WHERE gpus IS NOT NULL AND status IN ({marks})", HOLDING
        ):
            for gpu in ids.split(","):
                holders.setdefault(gpu, []).append(run_id)
        return GpuReading(gpus, {k: tuple(v) for k, v in holders.items()}, error)

    def runs(self, experiment: str, limit: int | None = None) -> tuple[RunRow, ...]:
        """The experiment's runs, display-ready. An ended run whose row has not changed since
        the last poll is the same RunRow object as before, so neither this read nor the table's
        update spends time on it (10,000 runs, 50 of them live, is the common case)."""
        from core.runs.annotate import matches, tags_of

        now = self.clock()
        out = []
        positions: dict[str, int] = {}
        cache, self._rows = self._rows, {}
        search = self.search
        listed = self.store.list_runs(experiment, columns=RUN_COLUMNS, limit=limit,
                                      archived=None if self.show_archived else False)
        status_at = listed.names.index("status")
        for raw in listed.rows:
            cached = cache.get(raw)
            if cached is not None and raw[status_at] in FINAL and not search:
                self._rows[raw] = cached
                out.append(cached)
                continue
            r = dict(zip(listed.names, raw, strict=True))
            if search and search.lower() not in experiment.lower() and not matches(r, search):
                continue
            if r["status"] == Status.QUEUED and not positions:
                positions = self.queue_positions()
            total = r["epochs_total"]
            status = r["status"]
            if status == Status.QUEUED and r["id"] in positions:
                status = f"queued #{positions[r['id']]}"
            elif status == Status.QUEUED and r["slurm_reason"]:  # pending in Slurm, and why
                status = f"queued ({r['slurm_reason']})"
            cells = (
                short_id(r["id"], experiment),
                status,
                epochs_text(r["epoch"], total),
                fmt_num(r["best_val_loss"]),
                score_cell(r["score"], r["caveat"]),
                self._time_cell(r, now),
                self._per_epoch_cell(r),
                fmt_time(r["started_at"]),
                _where(r),
                fmt_bytes(run_bytes(r)),
            )
            row = RunRow(r["id"], r["status"], cells, tuple(visible(t) for t in tags_of(r)),
                         visible(r["note"] or ""), bool(r["archived"]), visible(r["caveat"] or ""))
            self._rows[raw] = row
            out.append(row)
        return tuple(out)

    def _per_epoch_cell(self, r: dict) -> str:
        """The mean length of the run's epochs (read once per changed row: rows of ended runs
        are kept from poll to poll)."""
        seconds = mean_epoch_seconds(self.store.conn, r["id"]) if r["epoch"] else None
        return per_epoch_text(seconds) if seconds else "-"

    def _time_cell(self, r: dict, now: float) -> str:
        """A running run's time left, once it has reported steps; else how long it ran."""
        if r["status"] == Status.RUNNING:
            found = progress(self.store.conn, r["id"], now)
            if found is not None and found[1] is not None:
                return eta_short(found[1])
        return short_duration(r, now)

    def queue_positions(self) -> dict[str, int]:
        """Queued runs' places in the queue (the scheduler's order: priority, then age)."""
        from core.backends.queue.order import queued_rows

        return {row["id"]: n for n, row in enumerate(queued_rows(self.store), 1)}

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


def _where(r: dict) -> str:
    """The device cell: a Slurm run's job and node, else the GPUs it holds, else its device."""
    from core.backends import backend_of

    backend = backend_of(r)
    if not backend.checked_by_pid:  # held elsewhere: its backend says where
        return backend.describe(r)
    return f"gpu {r['gpus']}" if r["gpus"] else r["device"] or "-"


def _read_gpus() -> tuple[tuple[dict, ...], str]:
    """`python -m core.backends.gpus` in its own process: NVML (or NKD_GPUS) never loads in the
    TUI."""
    import json
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-m", "core.backends.gpus"], capture_output=True,
                              text=True, timeout=10, check=False,
                              cwd=Path(__file__).resolve().parent.parent)
        doc = json.loads(done.stdout or "{}")
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return (), f"GPUs not read: {exc}"
    if "error" in doc:
        return (), str(doc["error"])
    return tuple(doc.get("gpus", [])), ""
