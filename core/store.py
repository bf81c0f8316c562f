"""The SQLite run store: runs, epochs, metrics, checkpoints and lineage (an index of run folders).

Every change goes through `apply(run_id, event)`: the worker's reporter calls it for each event it
also appends to `runs/<id>/events.jsonl`, and `reindex` replays those files, so the database can
always be rebuilt from the run folders.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:  # imported when a migration runs: it costs ~100 ms, the TUI starts without it
    import sqlite_utils

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 30_000
ACTIVE = ("queued", "starting", "running", "paused", "stopping", "suspending")
FINAL = ("finished", "stopped", "suspended", "failed", "killed", "lost")

# What a listing reads: eight plain columns served by one covering index, no JSON. Python's sqlite3
# spends about 0.9 ms per column per 10,000 rows building objects, so every column here costs;
# `score` is what the run table shows beside the loss: mean SDR for separation, else accuracy.
# The experiment is not listed: the run id starts with it, and per-experiment lists filter on it.
LIST_COLUMNS = (
    "id", "status", "epoch", "epochs_total", "best_val_loss",
    "coalesce(sdr, accuracy) AS score", "started_at", "ended_at",
)
LIST_INDEX = (
    "created_at DESC", "id", "experiment", "status", "epoch", "epochs_total", "best_val_loss",
    "sdr", "accuracy", "started_at", "ended_at",
)
FULL_COLUMNS = (
    "id", "experiment", "recipe", "status", "epoch", "epochs_total", "best_epoch",
    "best_val_loss", "best_train_loss", "accuracy", "sdr", "pid", "pid_start", "host",
    "device", "created_at", "started_at", "ended_at", "heartbeat_at", "exit_code", "error",
)
LIVENESS_COLUMNS = ("id", "status", "pid", "pid_start", "host", "created_at")
_IS_ACTIVE = f"status IN ({', '.join('?' * len(ACTIVE))})"  # bind ACTIVE as its arguments


class RunList(Sequence[dict[str, Any]]):
    """Rows of a listing, fetched as tuples; each becomes a dict only when it is looked at."""

    def __init__(self, names: list[str], rows: list[tuple[Any, ...]]) -> None:
        self.names = names
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [dict(zip(self.names, r, strict=True)) for r in self.rows[index]]
        return dict(zip(self.names, self.rows[index], strict=True))


def _v1(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "id": str,
            "experiment": str,
            "recipe": str,
            "status": str,
            "params": str,
            "run_dir": str,
            "seed": int,
            "pid": int,
            "pid_start": float,
            "host": str,
            "created_at": float,
            "started_at": float,
            "ended_at": float,
            "heartbeat_at": float,
            "exit_code": int,
            "error": str,
            "epoch": int,
            "epochs_total": int,
            "best_epoch": int,
            "best_val_loss": float,
            "best_train_loss": float,
            "accuracy": float,
            "sdr": float,
        },
        pk="id",
    )
    db["epochs"].create(
        {
            "run": str,
            "epoch": int,
            "train_loss": float,
            "val_loss": float,
            "lr": float,
            "extra": str,
            "seconds": float,
            "at": float,
        },
        pk=("run", "epoch"),
    )
    db["metrics"].create(
        {
            "id": int,
            "run": str,
            "name": str,
            "value": float,
            "stem": str,
            "track": str,
            "split": str,
            "epoch": int,
            "at": float,
        },
        pk="id",
    )
    db["checkpoints"].create(
        {
            "id": str,
            "run": str,
            "path": str,
            "role": str,
            "epoch": int,
            "value": float,
            "sha256": str,
            "at": float,
        },
        pk="id",
    )
    db["lineage"].create(
        {"child": str, "parent": str, "relation": str, "weight": float},
        pk=("child", "parent", "relation"),
    )
    db["runs"].create_index(["experiment", "created_at"])
    db["runs"].create_index(["status"])
    db["metrics"].create_index(["run", "name"])
    db["checkpoints"].create_index(["run"])
    db["lineage"].create_index(["parent"])


def _v2(db: sqlite_utils.Database) -> None:
    # v2: which device a run used, and which definition a metric value follows (e.g. SDR
    # "bsseval_v4_images" vs "sources"), since different definitions give different numbers.
    db["runs"].add_column("device", str)
    db["metrics"].add_column("definition", str)
    # listing every run reads only this index, never the wide rows with their params
    db.execute(f"CREATE INDEX idx_runs_list ON runs ({', '.join(LIST_INDEX)})")


MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {1: _v1, 2: _v2}


class Store:
    """One connection to the run database. Cheap to open; open one per process or thread."""

    def __init__(self, path: str | Path, *, migrate_to: int = SCHEMA_VERSION) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.conn = conn
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":  # waits out other openers through the busy timeout
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate(migrate_to)

    # ── schema ──────────────────────────────────────────────────────────────────────────────

    @property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils' view of the same connection, for schema work and ad-hoc queries."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    @property
    def version(self) -> int:
        exists = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if not exists:
            return 0
        row = self.conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self, target: int) -> None:
        if self.version >= target:
            return
        db = self.db
        with self.write():
            current = self.version  # again, inside the lock: another process may have migrated
            if current == 0:
                db["schema_version"].create({"version": int, "at": float}, pk="version")
            for version in range(current + 1, target + 1):
                MIGRATIONS[version](db)
                self.conn.execute(
                    "INSERT INTO schema_version (version, at) VALUES (?, ?)",
                    (version, time.time()),
                )

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction that takes the write lock at once (no upgrade deadlock)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    # ── writing: one event at a time ────────────────────────────────────────────────────────

    def apply(self, run_id: str, event: dict[str, Any]) -> None:
        """Apply one event from a run's events.jsonl to the database, in one transaction."""
        handler = _HANDLERS.get(event.get("type", ""))
        if handler is None:
            return
        with self.write() as conn:
            handler(conn, run_id, event)

    def heartbeat(self, run_id: str, when: float | None = None) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE id = ?", (when or time.time(), run_id)
            )

    def set_status(self, run_id: str, status: str, **fields: Any) -> None:
        self.apply(run_id, {"type": "status", "status": status, "t": time.time(), **fields})

    # ── reading ─────────────────────────────────────────────────────────────────────────────

    def list_runs(
        self,
        experiment: str | None = None,
        limit: int | None = None,
        columns: tuple[str, ...] = LIST_COLUMNS,
    ) -> RunList:
        """Runs, newest first. The default columns are the cheap listing; pass FULL_COLUMNS
        for everything but params."""
        sql = f"SELECT {', '.join(columns)} FROM runs"
        args: list[Any] = []
        if experiment is not None:
            sql += " WHERE experiment = ?"
            args.append(experiment)
        sql += " ORDER BY created_at DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        cur = self.conn.execute(sql, args)
        return RunList([d[0] for d in cur.description], cur.fetchall())

    def active_runs(self) -> list[dict[str, Any]]:
        """Runs that claim to be alive, with what is needed to check that they are."""
        cur = self.conn.execute(
            f"SELECT {', '.join(LIVENESS_COLUMNS)} FROM runs WHERE {_IS_ACTIVE}", ACTIVE
        )
        return [dict(zip(LIVENESS_COLUMNS, row, strict=True)) for row in cur.fetchall()]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
        row = cur.fetchone()
        if row is None:
            return None
        out = dict(zip([d[0] for d in cur.description], row, strict=True))
        out["params"] = json.loads(out["params"] or "{}")
        return out

    def find_runs(self, prefix: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT id FROM runs WHERE id = ? OR id LIKE ? ORDER BY created_at DESC",
            (prefix, prefix.replace("%", r"\%").replace("_", r"\_") + "%"),
        )
        return [r[0] for r in rows]

    def latest_run(self, experiment: str, status: str | None = None) -> dict[str, Any] | None:
        sql = "SELECT id FROM runs WHERE experiment = ?"
        args: list[Any] = [experiment]
        if status:
            sql += " AND status = ?"
            args.append(status)
        row = self.conn.execute(sql + " ORDER BY created_at DESC LIMIT 1", args).fetchone()
        return self.get_run(row[0]) if row else None

    def runs_of_recipe(self, recipe: str, status: str = "finished") -> list[str]:
        """Ids of a recipe's runs with `status`, newest first."""
        cur = self.conn.execute(
            "SELECT id FROM runs WHERE recipe = ? AND status = ? ORDER BY created_at DESC",
            (recipe, status),
        )
        return [r[0] for r in cur]

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT epoch, train_loss, val_loss, lr, extra, seconds, at FROM epochs "
            "WHERE run = ? ORDER BY epoch",
            (run_id,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def epochs_after(
        self, run_id: str, after: int
    ) -> list[tuple[int, float | None, float | None]]:
        """(epoch, train_loss, val_loss) of the epochs after `after`, for live charts."""
        return self.conn.execute(
            "SELECT epoch, train_loss, val_loss FROM epochs WHERE run = ? AND epoch > ? "
            "ORDER BY epoch",
            (run_id, after),
        ).fetchall()

    def focus_experiment(self) -> str | None:
        """Where a person reopening the app wants to look: the newest live run's experiment,
        else the newest run's."""
        for where, args in ((f"WHERE {_IS_ACTIVE}", ACTIVE), ("", ())):
            row = self.conn.execute(
                f"SELECT experiment FROM runs {where} ORDER BY created_at DESC LIMIT 1", args
            ).fetchone()
            if row:
                return row[0]
        return None

    def latest_statuses(self) -> dict[str, str]:
        """Each experiment's latest run status (SQLite takes status from the max() row)."""
        rows = self.conn.execute(
            "SELECT experiment, status, max(created_at) FROM runs GROUP BY experiment"
        )
        return {experiment: status for experiment, status, _ in rows}

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT name, value, stem, track, split, definition, epoch FROM metrics "
            "WHERE run = ? ORDER BY id",
            (run_id,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT id, path, role, epoch, value, sha256, at FROM checkpoints WHERE run = ? "
            "ORDER BY at",
            (run_id,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def lineage(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT child, parent, relation, weight FROM lineage")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    # ── rebuilding ──────────────────────────────────────────────────────────────────────────

    def reindex(self, runs_dir: str | Path) -> int:
        """Rebuild every row from runs/*/events.jsonl; returns the number of runs indexed."""
        runs_dir = Path(runs_dir)
        folders = sorted(p for p in runs_dir.iterdir() if (p / "events.jsonl").is_file())
        with self.write() as conn:
            for table in ("lineage", "checkpoints", "metrics", "epochs", "runs"):
                conn.execute(f"DELETE FROM {table}")
            # all runs' events in time order, as they were written live, so rows come back in
            # the same order (metric ids included, up to events of one instant)
            streams = [_timed_events(n, folder) for n, folder in enumerate(folders)]
            for _t, _n, run_id, event in heapq.merge(*streams, key=lambda item: item[:2]):
                handler = _HANDLERS.get(event.get("type", ""))
                if handler:
                    handler(conn, run_id, event)
        return len(folders)


def _timed_events(n: int, folder: Path) -> Iterator[tuple[float, int, str, dict[str, Any]]]:
    for event in read_events(folder / "events.jsonl"):
        yield event.get("t", 0.0), n, folder.name, event


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Events of one run; a torn last line (the writer was killed mid-write) is skipped."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


# ── event handlers (each runs inside one transaction) ───────────────────────────────────────


def _on_run(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO runs (id, experiment, recipe, status, params, run_dir, seed, "
        "host, created_at, epochs_total, epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
        (
            run_id,
            ev["experiment"],
            ev.get("recipe"),
            ev.get("status", "queued"),
            json.dumps(ev.get("params", {}), sort_keys=True),
            ev.get("run_dir"),
            ev.get("seed"),
            ev.get("host"),
            ev["t"],
            ev.get("epochs_total"),
        ),
    )


_STATUS_FIELDS = ("pid", "pid_start", "exit_code", "error", "device", "seed")


def _on_status(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    status = ev["status"]
    sets = ["status = ?"]
    args: list[Any] = [status]
    for key in _STATUS_FIELDS:
        if key in ev:
            sets.append(f"{key} = ?")
            args.append(ev[key])
    if status == "running":
        sets.append("started_at = coalesce(started_at, ?)")
        args.append(ev["t"])
    if status in FINAL:
        sets.append("ended_at = ?")
        args.append(ev["t"])
    elif status in ("starting", "running"):
        sets.append("ended_at = NULL")
    conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*args, run_id))


def _on_epoch(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    known = {"type", "t", "epoch", "train_loss", "val_loss", "lr", "seconds"}
    extra = {k: v for k, v in ev.items() if k not in known}
    epoch = int(ev["epoch"])
    conn.execute(
        "INSERT OR REPLACE INTO epochs (run, epoch, train_loss, val_loss, lr, extra, seconds, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run_id,
            epoch,
            ev.get("train_loss"),
            ev.get("val_loss"),
            ev.get("lr"),
            json.dumps(extra) if extra else None,
            ev.get("seconds"),
            ev["t"],
        ),
    )
    # The best epoch is the lowest validation loss (train loss when a run has no validation).
    score = ev.get("val_loss", ev.get("train_loss"))
    column = "best_val_loss" if "val_loss" in ev else "best_train_loss"
    conn.execute("UPDATE runs SET epoch = max(coalesce(epoch, 0), ?) WHERE id = ?", (epoch, run_id))
    if score is not None:
        conn.execute(
            f"UPDATE runs SET best_epoch = ?, best_val_loss = ?, best_train_loss = ? "
            f"WHERE id = ? AND ({column} IS NULL OR {column} > ?)",
            (epoch, ev.get("val_loss"), ev.get("train_loss"), run_id, score),
        )


# Metrics whose best value is kept on the run row for listings.
_ROW_METRICS = {("accuracy", None): "accuracy", ("sdr", "mean"): "sdr"}


def _on_metric(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO metrics (run, name, value, stem, track, split, epoch, definition, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run_id,
            ev["name"],
            ev["value"],
            ev.get("stem"),
            ev.get("track"),
            ev.get("split"),
            ev.get("epoch"),
            ev.get("definition"),
            ev["t"],
        ),
    )
    column = _ROW_METRICS.get((ev["name"], ev.get("stem")))
    if column and ev.get("track") is None:
        conn.execute(
            f"UPDATE runs SET {column} = ? WHERE id = ? AND ({column} IS NULL OR {column} < ?)",
            (ev["value"], run_id, ev["value"]),
        )


def _on_checkpoint(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    ckpt_id = ev.get("id") or f"{run_id}/{Path(ev['path']).name}"
    conn.execute(
        "INSERT OR REPLACE INTO checkpoints (id, run, path, role, epoch, value, sha256, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ckpt_id,
            run_id,
            ev["path"],
            ev.get("role"),
            ev.get("epoch"),
            ev.get("value"),
            ev.get("sha256"),
            ev["t"],
        ),
    )
    for parent in ev.get("parents", []):
        conn.execute(
            "INSERT OR REPLACE INTO lineage (child, parent, relation, weight) VALUES (?, ?, ?, ?)",
            (ckpt_id, parent["checkpoint"], parent["relation"], parent.get("weight")),
        )


_HANDLERS: dict[str, Callable[[sqlite3.Connection, str, dict[str, Any]], None]] = {
    "run": _on_run,
    "status": _on_status,
    "epoch": _on_epoch,
    "metric": _on_metric,
    "checkpoint": _on_checkpoint,
}
