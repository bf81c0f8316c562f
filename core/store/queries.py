"""Reading the store: runs listed (by a covering index, no JSON), one run in full, its epochs,
metrics, checkpoints and lineage; what the TUI's tree and table need in one query each."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, overload

from core.errors import RunError
from core.store.events import ACTIVE, HOLDING
from core.store.states import Status

# What a listing reads: eight plain columns served by one covering index, no JSON. Python's sqlite3
# spends about 0.9 ms per column per 10,000 rows building objects, so every column here costs;
# `score` is what the run table shows beside the loss: mean SDR for separation, else accuracy.
# The experiment is not listed: the run id starts with it, and per-experiment lists filter on it.
LIST_COLUMNS = (
    "id", "status", "epoch", "epochs_total", "best_val_loss",
    "coalesce(sdr, accuracy) AS score", "started_at", "ended_at",
)
FULL_COLUMNS = (
    "id", "experiment", "recipe", "status", "epoch", "epochs_total", "best_epoch",
    "best_val_loss", "best_train_loss", "accuracy", "sdr", "test_sdr", "pid", "pid_start", "host",
    "device", "created_at", "started_at", "ended_at", "heartbeat_at", "exit_code", "error",
    "gpus", "sweep", "priority", "backend", "job_id", "node", "slurm_state", "slurm_reason",
    "requeues", "tags", "note", "archived", "select_by", "best_value", "early_stop", "caveat",
    "checkpoint_bytes", "folder_bytes",
)
LIVENESS_COLUMNS = (
    "id", "status", "pid", "pid_start", "pid_ticks", "host", "created_at", "status_at", "backend",
)
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


class RunQueries:
    """The read side of `Store`: every query over its connection."""

    conn: sqlite3.Connection

    # ── reading ─────────────────────────────────────────────────────────────────────────────

    def list_runs(
        self,
        experiment: str | None = None,
        limit: int | None = None,
        columns: tuple[str, ...] = LIST_COLUMNS,
        sweep: str | None = None,
        archived: bool | None = None,
    ) -> RunList:
        """Runs, newest first. The default columns are the cheap listing; pass FULL_COLUMNS
        for everything but params. `archived`: None lists every run, False hides the archived
        ones (what a person sees by default), True lists only them."""
        sql = f"SELECT {', '.join(columns)} FROM runs"
        args: list[Any] = []
        where = []
        if experiment is not None:
            where.append("experiment = ?")
            args.append(experiment)
        if sweep is not None:
            where.append("sweep = ?")
            args.append(sweep)
        if archived is not None:
            where.append("archived IS NOT NULL" if archived else "archived IS NULL")
        if where:
            sql += " WHERE " + " AND ".join(where)
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

    def require_run(self, run_id: str) -> dict[str, Any]:
        """`get_run` for a run that must exist: RunError (one line) names it otherwise."""
        row = self.get_run(run_id)
        if row is None:
            raise RunError(f"no run '{run_id}' in {self.path}")
        return row

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
        row = cur.fetchone()
        if row is None:
            return None
        out = dict(zip([d[0] for d in cur.description], row, strict=True))
        out["params"] = json.loads(out["params"] or "{}")
        for key in ("defaults", "settings_used"):
            if key in out:
                out[key] = json.loads(out[key] or "{}")
        return out

    def find_runs(self, prefix: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT id FROM runs WHERE id = ? OR id LIKE ? ESCAPE '\\' ORDER BY created_at DESC",
            (prefix, _like_prefix(prefix)),
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

    def runs_of_recipe(self, recipe: str, status: str = Status.FINISHED) -> list[str]:
        """Ids of a recipe's runs with `status`, newest first."""
        cur = self.conn.execute(
            "SELECT id FROM runs WHERE recipe = ? AND status = ? ORDER BY created_at DESC",
            (recipe, status),
        )
        return [r[0] for r in cur]

    def epochs(self, run_id: str, after: int | None = None) -> list[dict[str, Any]]:
        """A run's epochs in order; only those after epoch `after` when it is given."""
        cur = self.conn.execute(
            "SELECT epoch, train_loss, val_loss, lr, extra, seconds, at FROM epochs "
            "WHERE run = ? AND (? IS NULL OR epoch > ?) ORDER BY epoch",
            (run_id, after, after),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def epochs_after(
        self, run_id: str, after: int
    ) -> list[tuple[int, float | None, float | None, float | None, str | None]]:
        """(epoch, train_loss, val_loss, lr, extra as JSON) of the epochs after `after`, for
        live charts."""
        return self.conn.execute(
            "SELECT epoch, train_loss, val_loss, lr, extra FROM epochs WHERE run = ? AND epoch > ? "
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
        """Each experiment's latest run status (SQLite takes status from the max() row);
        archived runs are left out, as the TUI hides them."""
        rows = self.conn.execute(
            "SELECT experiment, status, max(created_at) FROM runs WHERE archived IS NULL "
            "GROUP BY experiment"
        )
        return {experiment: status for experiment, status, _ in rows}

    def experiment_summaries(self) -> dict[str, tuple[int, float | None]]:
        """Each experiment's number of live runs and the best score of its finished runs
        (validation SDR, else accuracy), for the TUI's tree. An index (schema.TREE_INDEX)
        covers every column read: no run's wide row is touched."""
        marks = ", ".join("?" * len(HOLDING))
        rows = self.conn.execute(
            f"SELECT experiment, sum(status IN ({marks})), "
            "max(CASE WHEN status = ? THEN coalesce(sdr, accuracy) END) "
            "FROM runs GROUP BY experiment", (*HOLDING, Status.FINISHED))
        return {experiment: (int(live or 0), best) for experiment, live, best in rows}

    def experiment_bytes(self) -> dict[str, int]:
        """Each experiment's runs' bytes on disk (checkpoints and folders), for the TUI's tree;
        from the same covering index."""
        rows = self.conn.execute("SELECT experiment, total(checkpoint_bytes) + "
                                 "total(folder_bytes) FROM runs GROUP BY experiment")
        return {experiment: int(size) for experiment, size in rows}

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT name, value, stem, track, split, definition, epoch, gains, caveat FROM metrics "
            "WHERE run = ? ORDER BY id",
            (run_id,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def cache_shares(self, run_id: str | None = None) -> dict[str, tuple[int, int, int]]:
        """Each run's share of the derived caches (`run_id`: that run's alone): run ->
        (its share in bytes, the bytes of the entries it used, the runs that used them)."""
        rows = self.conn.execute(
            "WITH n AS (SELECT cache_key, COUNT(*) AS runs FROM runs WHERE cache_key IS NOT NULL "
            "GROUP BY cache_key) SELECT r.id, r.cache_bytes, n.runs FROM runs r JOIN n "
            "USING (cache_key)" + (" WHERE r.id = ?" if run_id else ""),
            (run_id,) if run_id else ()).fetchall()
        return {run: ((size or 0) // runs, size or 0, runs) for run, size, runs in rows}

    def deleted_checkpoint(self, path: str) -> dict[str, Any] | None:
        """The record of a checkpoint file that was deleted (when, by what, its sha256), or
        None."""
        row = self.conn.execute(
            "SELECT id, deleted_at, sha256, deleted_by FROM checkpoints WHERE path = ? AND "
            "deleted_at IS NOT NULL ORDER BY deleted_at DESC LIMIT 1", (path,)).fetchone()
        return None if row is None else {"id": row[0], "deleted_at": row[1], "sha256": row[2],
                                         "deleted_by": row[3]}

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT id, path, role, epoch, value, sha256, at, bytes, deleted_at, deleted_by "
            "FROM checkpoints "
            "WHERE run = ? "
            "ORDER BY at",
            (run_id,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def latest_params(self, experiments: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each experiment's settings as its newest run recorded them."""
        out: dict[str, dict[str, Any]] = {}
        for name in experiments:
            row = self.conn.execute(
                "SELECT params FROM runs WHERE experiment = ? ORDER BY created_at DESC LIMIT 1",
                (name,)).fetchone()
            out[name] = json.loads(row[0]) if row and row[0] else {}
        return out

    def lineage(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT child, parent, relation, weight FROM lineage")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching ids that start with `prefix` literally (_ and % included)."""
    return prefix.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
