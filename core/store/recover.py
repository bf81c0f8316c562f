"""Opening a workspace's store so that it can always be trusted or repaired: a missing or empty
database is rebuilt from the run folders, a broken one is moved aside (never deleted) by
`nkd reindex` and rebuilt."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

from core.errors import StoreError
from core.registry.workspace import Workspace
from core.store.db import ReindexReport, Store


def _has_run_folders(runs_dir: Path) -> bool:
    try:
        return any((p / "events.jsonl").is_file() for p in runs_dir.iterdir())
    except OSError:
        return False


def open_store(ws: Workspace, warnings: list[str] | None = None) -> Store:
    """The workspace's store. When the database is missing (or holds no run) while run folders
    exist, it is rebuilt from them first, with one line saying so. A warning (a runs folder
    another registry's store indexes too) is printed, or added to `warnings` when given."""
    store = Store(ws.db_path)
    try:
        empty = store.conn.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is None
    except Exception as exc:
        store.close()
        raise StoreError(f"{ws.db_path}: cannot read the run database ({exc})") from None
    if empty and _has_run_folders(ws.runs_dir):
        try:
            report = store.reindex(ws.runs_dir)
        except Exception as exc:  # a read-only database: say what to do, show what there is
            print(f"nkd: {ws.db_path} holds no runs but {ws.runs_dir} does; `nkd reindex` "
                  f"rebuilds it ({exc})", file=sys.stderr)
            return store
        what = "was missing" if store.created else "held no runs"
        print(f"nkd: {ws.db_path} {what}; rebuilt from {report.runs} run folders",
              file=sys.stderr)
        for line in report.lines():
            print(f"nkd: {line}", file=sys.stderr)
    shared = shared_runs(ws)
    if shared and warnings is not None:
        warnings.append(shared)
    elif shared:
        print(f"nkd: warning: {shared}", file=sys.stderr)
    return store


OWNER_NAME = ".nkd-store"  # in a runs folder: which store indexes it (JSON: runs, db)


def shared_runs(ws: Workspace) -> str | None:
    """A line when this workspace's runs folder is another registry's too: two stores would
    each list only the runs started through them. The first store to open a runs folder is
    noted in it; a folder copied or moved elsewhere, or whose first store is gone, is not
    another's."""
    import json

    from core.util.files import atomic_write_json

    runs, db = ws.runs_dir.resolve(), ws.db_path.resolve()
    marker = runs / OWNER_NAME
    try:
        noted = json.loads(marker.read_text(encoding="utf-8"))
        other_runs, other_db = Path(str(noted["runs"])), Path(str(noted["db"]))
    except FileNotFoundError:
        if runs.is_dir() and not marker.is_symlink():
            try:
                atomic_write_json(marker, {"runs": str(runs), "db": str(db)})
            except OSError:
                pass  # a read-only folder: nothing noted, nothing lost
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if other_runs != runs or other_db == db or not other_db.is_file():
        return None
    return (f"{runs} is also the runs folder of the store {other_db} (another registry's "
            f"[workspace] runs): each store lists only the runs started through it until "
            f"`nkd reindex`; give each registry a runs folder of its own")


def move_aside(db_path: Path) -> Path:
    """Rename a broken database (and its -wal/-shm files) to `<name>.broken-<time>`."""
    stamp = time.strftime("%Y%m%d_%H%M%S")
    target = db_path.with_name(f"{db_path.name}.broken-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = db_path.with_name(f"{db_path.name}.broken-{stamp}_{n}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{db_path}{suffix}")
        if src.exists() or src.is_symlink():
            os.replace(src, Path(f"{target}{suffix}"))
    return target


def rebuild(ws: Workspace) -> tuple[ReindexReport, Path | None]:
    """`nkd reindex`: rebuild the store from runs/*/events.jsonl. A database that cannot be
    opened, fails SQLite's own check, or turns out damaged while it is rebuilt is moved aside
    first (never deleted), whatever SQLite says of it. Returns the report and where the broken
    file went (if it did)."""
    moved = None
    try:
        store = Store(ws.db_path)
    except StoreError as exc:
        if "not a usable run database" not in str(exc):
            raise  # permissions, a read-only folder: moving the file would not help
        moved = move_aside(ws.db_path)
        store = Store(ws.db_path)
    else:
        if _damage(store) is not None:
            store.close()
            moved = move_aside(ws.db_path)
            store = Store(ws.db_path)
    try:
        if not ws.runs_dir.is_dir():
            return ReindexReport(), moved
        try:
            return store.reindex(ws.runs_dir), moved
        except (sqlite3.DatabaseError, StoreError) as exc:
            if moved is not None or not _corrupt(exc):
                raise
            store.close()  # damage the check did not see: aside with it, and again
            moved = move_aside(ws.db_path)
            store = Store(ws.db_path)
            return store.reindex(ws.runs_dir), moved
    finally:
        store.close()


def _corrupt(exc: BaseException) -> bool:
    """A damaged file (not a busy or read-only one, which moving aside would not mend)."""
    if isinstance(exc, StoreError):
        return "not a usable run database" in str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


def _damage(store: Store) -> str | None:
    """What SQLite's quick check finds wrong with the file, or None when it is whole."""
    try:
        rows = store.conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError):
            raise StoreError(f"{store.path}: cannot check the run database ({exc})") from None
        return str(exc)
    bad = [str(r[0]) for r in rows if r[0] != "ok"]
    return bad[0] if bad else None
