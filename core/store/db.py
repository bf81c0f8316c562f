"""The SQLite run store: runs, epochs, metrics, checkpoints and lineage (an index of run folders).

Every change goes through `apply(run_id, event)`: the worker's reporter calls it for each event it
also appends to `runs/<id>/events.jsonl`, and `reindex` replays those files, so the database can
always be rebuilt from the run folders.
"""

from __future__ import annotations

import heapq
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import StoreError
from core.store.apply import HANDLERS, apply_guarded, on_epochs
from core.store.events import ACTIVE, FINAL, BadEvent, EventLog, check
from core.store.queries import RunQueries
from core.store.schema import MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:  # imported when a migration runs: it costs ~100 ms, the TUI starts without it
    import sqlite_utils

BUSY_TIMEOUT_MS = 30_000

class Store(RunQueries):
    """One connection to the run database. Cheap to open; open one per process or thread."""

    def __init__(self, path: str | Path, *, migrate_to: int = SCHEMA_VERSION) -> None:
        self.path = Path(path)
        self.created = not self.path.exists()
        try:
            if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
                raise sqlite3.DatabaseError("not a regular file")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(_problem(self.path, exc)) from None
        self.conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if tables and "schema_version" not in tables:  # another program's file: untouched
                raise sqlite3.DatabaseError("an SQLite file, but not nkd's: no schema_version")
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":  # waits out other openers through the busy timeout
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA temp_store = MEMORY")  # core.store.best's table: no file
            self._migrate(migrate_to)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(_problem(self.path, exc)) from None
        self.identity = _file_identity(self.path)

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

    def replaced(self) -> bool:
        """Has the file this connection opened been deleted or replaced (e.g. by `nkd reindex`
        after moving a corrupt one aside)? A connection to a replaced file writes to nothing."""
        return _file_identity(self.path) != self.identity

    # ── writing: one event at a time ────────────────────────────────────────────────────────

    def apply(self, run_id: str, event: dict[str, Any]) -> None:
        """Apply one event from a run's events.jsonl to the database, in one transaction.
        An event that breaks the schema raises BadEvent and changes nothing."""
        handler = HANDLERS.get(check(event)["type"])
        if handler is None:
            return
        with self.write() as conn:
            handler(conn, run_id, event)

    def apply_many(self, run_id: str, events: list[dict[str, Any]]) -> list[BadEvent]:
        """Apply events in order in one transaction (a script's burst of records); those that
        break the schema are left out and returned, the others all applied or none."""
        bad, good = [], []
        for event in events:
            try:
                good.append((HANDLERS.get(check(event)["type"]), event))
            except BadEvent as exc:
                bad.append(exc)
        with self.write() as conn:
            epochs: list[dict[str, Any]] = []  # a stretch of epochs: their statements at once
            for handler, event in good:
                if handler is HANDLERS["epoch"]:
                    epochs.append(event)
                    continue
                if epochs:
                    on_epochs(conn, run_id, epochs)
                    epochs = []
                if handler is not None:
                    handler(conn, run_id, event)
            if epochs:
                on_epochs(conn, run_id, epochs)
        return bad

    def end_unrecorded(self, run_id: str, event: dict[str, Any], reason: str) -> None:
        """A worker's final status that its events.jsonl could not take (disk full, read-only
        folder). The store never claims an end the run's record lacks: the row says `lost`,
        with what the worker meant to record and why it could not, and `unrecorded_ends` keeps
        that for `reindex`."""
        lost = unrecorded_end(run_id, event, reason)
        with self.write() as conn:
            HANDLERS["status"](conn, run_id, lost)
            conn.execute("INSERT OR REPLACE INTO unrecorded_ends (run, status, error, t) "
                         "VALUES (?, ?, ?, ?)", (run_id, event["status"], lost["error"], lost["t"]))

    def heartbeat(self, run_id: str, when: float | None = None) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE id = ?", (when or time.time(), run_id)
            )

    def set_status(self, run_id: str, status: str, **fields: Any) -> None:
        self.apply(run_id, {"type": "status", "status": status, "t": time.time(), **fields})

    # ── rebuilding ──────────────────────────────────────────────────────────────────────────

    def reindex(self, runs_dir: str | Path, only: str | None = None) -> ReindexReport:
        """Rebuild the rows from runs/*/events.jsonl (or those of the run `only`).

        Any bytes in any events file are survived: a line that is not a valid event is skipped
        and counted in the report, never applied half-way, never fatal for the other runs.
        """
        report = ReindexReport()
        folders = _run_folders(Path(runs_dir), report, only)
        with self.write() as conn:
            if only is None:
                for table in ("lineage", "checkpoints", "metrics", "epochs", "runs"):
                    conn.execute(f"DELETE FROM {table}")
            else:
                _delete_run(conn, only)
            for folder in folders:
                _placeholder(conn, folder)
            # all runs' events in time order, as they were written live, so rows come back in
            # the same order (metric ids included, up to events of one instant)
            logs = {folder.name: EventLog(folder / "events.jsonl") for folder in folders}
            streams = [_timed(n, name, log) for n, (name, log) in enumerate(logs.items())]
            for _t, _n, run_id, event in heapq.merge(*streams, key=lambda item: item[:2]):
                problem = apply_guarded(conn, run_id, event)
                if problem:
                    logs[run_id].skipped.append((0, problem))
            _keep_unrecorded_ends(conn, only)
            for folder in folders:
                _last_seen(conn, folder)
            report.runs = len(folders)
            report.skipped = {name: log.skipped for name, log in logs.items() if log.skipped}
        return report


class ReindexReport:
    """What a reindex did: runs indexed, lines skipped per run, folders left out and why. (A
    plain class: every process that opens the store imports this module, and a run's worker
    starts sooner without the dataclasses module.)"""

    def __init__(self) -> None:
        self.runs = 0
        self.skipped: dict[str, list[tuple[int, str]]] = {}
        self.ignored: list[str] = []

    @property
    def skipped_lines(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def lines(self) -> list[str]:
        """One line per problem, for the user."""
        out = []
        for run_id, problems in sorted(self.skipped.items()):
            line, reason = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            where = f"line {line}: " if line else ""
            out.append(f"runs/{run_id}/events.jsonl: skipped {len(problems)} bad "
                       f"line{'s' if len(problems) > 1 else ''}; {where}{reason}{more}")
        return out + self.ignored


def _run_folders(runs_dir: Path, report: ReindexReport, only: str | None) -> list[Path]:
    from core.util.names import NAME

    try:
        entries = sorted(runs_dir.iterdir()) if only is None else [runs_dir / only]
    except OSError as exc:
        raise StoreError(f"{runs_dir}: cannot read the runs folder ({exc.strerror})") from None
    folders = []
    for entry in entries:
        events = entry / "events.jsonl"
        if entry.is_symlink() or events.is_symlink():
            report.ignored.append(f"{entry}: a symbolic link; not indexed")
        elif not NAME.fullmatch(entry.name):
            if (entry / "events.jsonl").is_file():
                report.ignored.append(f"{entry}: not a valid run folder name; not indexed")
        elif entry.is_dir() and events.is_file():
            folders.append(entry)
    return folders


def _delete_run(conn: sqlite3.Connection, run_id: str) -> None:
    conn.execute(
        "DELETE FROM lineage WHERE child IN (SELECT id FROM checkpoints WHERE run = ?)", (run_id,)
    )
    for table, column in (("checkpoints", "run"), ("metrics", "run"), ("epochs", "run"),
                          ("runs", "id")):
        conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (run_id,))


def _placeholder(conn: sqlite3.Connection, folder: Path) -> None:
    """A row from config.json, so a run whose first line was lost still appears (its `run`
    event, when readable, replaces it)."""
    try:
        with open(folder / "config.json", encoding="utf-8") as fh:
            config = json.load(fh)
        experiment = str(config["experiment"])
        created = float(config.get("created_at") or 0)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return
    conn.execute(
        "INSERT OR IGNORE INTO runs (id, experiment, recipe, status, params, run_dir, created_at,"
        " epoch) VALUES (?, ?, ?, 'queued', '{}', ?, ?, 0)",
        (folder.name, experiment, config.get("recipe") or "command", str(folder), created),
    )


def unrecorded_end(run_id: str, event: dict[str, Any], reason: str) -> dict[str, Any]:
    """The `lost` status the store records for a final status the run's events.jsonl could not
    take: what the worker meant to record, and why the folder does not hold it."""
    said = f"; {event['error']}" if event.get("error") else ""
    error = (f"ended {event['status']}, but its end could not be written to "
             f"runs/{run_id}/events.jsonl ({reason}); the run folder does not record it{said}")
    return {"type": "status", "status": "lost", "t": event["t"], "error": error[:8000],
            **({"exit_code": event["exit_code"]} if "exit_code" in event else {})}


def _keep_unrecorded_ends(conn: sqlite3.Connection, only: str | None) -> None:
    """After a replay: a run whose last status in its file is older than an end its worker
    could not write is `lost` again with that reason (not "worker vanished"); one that has
    moved on since (restarted) drops it."""
    rows = conn.execute("SELECT run, error, t FROM unrecorded_ends").fetchall()
    for run_id, error, t in rows:
        if only is not None and run_id != only:
            continue
        seen = conn.execute("SELECT status_at FROM runs WHERE id = ?", (run_id,)).fetchone()
        if seen is None:
            continue  # its folder is not indexed (now): the note waits
        if (seen[0] or 0.0) > t:
            conn.execute("DELETE FROM unrecorded_ends WHERE run = ?", (run_id,))
            continue
        HANDLERS["status"](conn, run_id, {"type": "status", "status": "lost", "t": t,
                                          "error": error})


def _last_seen(conn: sqlite3.Connection, folder: Path) -> None:
    """heartbeat_at is not an event: the newest write to the run folder stands in for it."""
    times = []
    for name in ("events.jsonl", "output.log"):
        try:
            times.append((folder / name).stat().st_mtime)
        except OSError:
            pass
    if times:
        conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (max(times), folder.name))


def _timed(
    n: int, run_id: str, log: EventLog
) -> Iterator[tuple[float, int, str, dict[str, Any]]]:
    for event in log:
        yield event["t"], n, run_id, event


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Valid events of one run; bad or torn lines are skipped."""
    yield from EventLog(path)


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _problem(path: Path, exc: BaseException) -> str:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError) and "readonly" not in reason:
        return (f"{path}: not a usable run database ({reason}); `nkd reindex` moves it aside "
                f"and rebuilds it from the run folders")
    return f"{path}: cannot open the run database ({reason})"


__all__ = ["ACTIVE", "FINAL", "BadEvent", "ReindexReport", "Store", "read_events"]
