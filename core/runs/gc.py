"""`nkd gc`: delete the checkpoints of ended runs that nothing needs, knowing the lineage.

Selects the recorded checkpoints of ended runs by age, experiment and status, optionally keeping
some roles (`best`, `last`, `epoch`: core.store.events.CHECKPOINT_ROLES). Never selects one that
a lineage edge still needs (the parent of a fine-tune, a blend source, a teacher, soft labels,
the subject of an evaluation), one of a run tagged `keep`, one of a live or queued run, a
symbolic link, or a file outside the workspace's checkpoints and runs folders. A dry run unless
told to delete.

A deletion is recorded first (a `checkpoint_deleted` event in the run's events.jsonl, then the
store), then the file is removed: a gc interrupted between the two leaves a record that says
deleted and a file still there, which the next `nkd gc --yes` removes; the store and
`nkd reindex` agree at every step.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import RunError
from core.registry.workspace import Workspace
from core.store import Store
from core.store.events import CHECKPOINT_ROLES
from core.store.reporter import record
from core.store.states import FINAL

KEEP_TAG = "keep"
UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
PAUSE_ENV = "NKD_GC_PAUSE_S"  # test seam: seconds between two deletions (the kill -9 test)


def parse_age(text: str) -> float:
    """`90m`, `12h`, `30d`, `2w` in seconds; RunError naming the value otherwise."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", text or "")
    if not found:
        raise RunError(f"--older {text!r}: an age is a number and a unit: m, h, d or w "
                       f"(30d, 12h); nothing was deleted")
    return float(found.group(1)) * UNITS[found.group(2)]


@dataclass
class Candidate:
    run: str
    id: str
    path: Path
    role: str
    bytes: int
    why: str


@dataclass
class Plan:
    delete: list[Candidate] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint id, why it stays)
    unfinished: list[Candidate] = field(default_factory=list)  # recorded deleted, still there

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.delete)


def plan(store: Store, ws: Workspace, older: str | None = None, experiment: str | None = None,
         statuses: list[str] | None = None, keep: list[str] | None = None,
         now: float | None = None) -> Plan:
    """What `nkd gc` would delete, and what it keeps and why."""
    unknown = [s for s in statuses or [] if s not in FINAL]
    if unknown:
        raise RunError(f"--status {','.join(unknown)}: gc deletes only ended runs' checkpoints "
                       f"({', '.join(sorted(FINAL))}); nothing was deleted")
    odd = [r for r in keep or [] if r not in CHECKPOINT_ROLES]
    if odd:
        raise RunError(f"--keep {','.join(odd)}: a checkpoint's role is one of "
                       f"{', '.join(CHECKPOINT_ROLES)}; nothing was deleted")
    cutoff = (now or time.time()) - parse_age(older) if older else None
    if experiment is not None and not store.conn.execute(
            "SELECT 1 FROM runs WHERE experiment = ? LIMIT 1", (experiment,)).fetchone():
        raise RunError(f"--experiment {experiment!r}: no runs of that experiment; nothing was "
                       f"deleted")
    needed = {row[0] for row in store.conn.execute("SELECT DISTINCT parent FROM lineage")}
    rows = store.conn.execute(
        "SELECT c.id, c.run, c.path, c.role, c.bytes, c.deleted_at, r.status, r.experiment, "
        "r.ended_at, r.tags FROM checkpoints c JOIN runs r ON r.id = c.run "
        "ORDER BY r.created_at, c.id").fetchall()
    out = Plan()
    within = _Within(ws.checkpoints_dir, ws.runs_dir)
    for ckpt, run, path, role, size, deleted, status, exp, ended, tags in rows:
        if experiment is not None and exp != experiment:
            continue
        file = Path(path)
        if deleted is not None:
            if _lstat(file) == "file" and within(file):
                out.unfinished.append(Candidate(run, ckpt, file, role or "", size or 0,
                                                "recorded deleted by an interrupted gc"))
            continue
        why = _kept_because(ckpt, role, status, ended, tags, needed, cutoff, statuses, keep)
        if why:
            out.kept.append((ckpt, why))
            continue
        kind = _lstat(file)
        if kind == "link":
            out.kept.append((ckpt, "a symbolic link: never followed"))
        elif not within(file):
            out.kept.append((ckpt, "outside the workspace's checkpoints and runs folders"))
        elif kind != "file":
            out.kept.append((ckpt, "its file is already gone"))
        else:
            reason = f"{status} run" + (f", ended {_age(now, ended)} ago" if ended else "")
            out.delete.append(Candidate(run, ckpt, file, role or "",
                                        size if size is not None else file.stat().st_size,
                                        reason))
    return out


class _Within:
    """Whether a file lies inside the roots, links in its folders resolved: each folder
    resolved once (a run's checkpoints share one)."""

    def __init__(self, *roots: Path) -> None:
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.seen: dict[str, bool] = {}

    def __call__(self, path: Path) -> bool:
        folder = str(path.parent)
        if folder not in self.seen:
            real = Path(os.path.realpath(folder))
            self.seen[folder] = any(real.is_relative_to(r) for r in self.roots)
        return self.seen[folder]


def _lstat(path: Path) -> str:
    """"file", "link", or "" (gone, or something else) without following a link."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return ""
    return "file" if stat.S_ISREG(mode) else "link" if stat.S_ISLNK(mode) else ""


def _kept_because(ckpt: str, role: str | None, status: str, ended: float | None,
                  tags: str | None, needed: set[str], cutoff: float | None,
                  statuses: list[str] | None, keep: list[str] | None) -> str | None:
    if status not in FINAL:
        return f"its run is {status}"
    if ckpt in needed:
        return "a lineage edge needs it (fine-tune, blend, teacher, soft labels, evaluation)"
    if KEEP_TAG in (json.loads(tags) if tags else []):
        return f"its run is tagged #{KEEP_TAG}"
    if keep and role in keep:
        return f"--keep {role}"
    if statuses and status not in statuses:
        return f"its run is {status}, not {','.join(statuses)}"
    if cutoff is not None and (ended is None or ended > cutoff):
        return "its run ended more recently than --older"
    return None


def _age(now: float | None, then: float) -> str:
    seconds = (now or time.time()) - then
    for unit, size in (("w", UNITS["w"]), ("d", UNITS["d"]), ("h", UNITS["h"])):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds / 60:.0f}m"


def run(store: Store, ws: Workspace, chosen: Plan) -> int:
    """Delete what `plan` chose (and finish an interrupted gc); the bytes freed. Each deletion
    is recorded before its file is removed."""
    pause = float(os.environ.get(PAUSE_ENV) or 0)
    freed = 0
    for c in chosen.unfinished:
        _remove(c.path)
    for c in chosen.delete:
        row = store.get_run(c.run)
        run_dir = Path(row["run_dir"]) if row and row.get("run_dir") else ws.run_dir(c.run)
        sha = store.conn.execute("SELECT sha256 FROM checkpoints WHERE id = ?",
                                 (c.id,)).fetchone()
        record(c.run, run_dir, store, "checkpoint_deleted", id=c.id, path=str(c.path),
               bytes=c.bytes, by="nkd gc", **({"sha256": sha[0]} if sha and sha[0] else {}))
        _remove(c.path)
        freed += c.bytes
        if pause:
            time.sleep(pause)
    return freed


def _remove(path: Path) -> None:
    if _lstat(path) == "file":  # never a link, never a folder
        path.unlink()
