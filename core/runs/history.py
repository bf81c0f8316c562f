"""`nkd import`: the checkpoints made before nkd, brought into the store as imported runs, with
their settings, the values the researcher reported and how they came from each other.

A manifest (TOML, one `[[checkpoint]]` per file; or CSV with the same columns):

    [[checkpoint]]
    file = "checkpoints/crnn_large_finetune_ver1_20251227_171118_best.pth"
    experiment = "crnn_large_finetune_ver1"      # default: from the file name
    settings = { hidden_size = 512, num_layers = 4 }
    reported = { sdr_db = 3.7966 }
    parents = ["crnn_large_finetune_20251226_231234_best.pth"]   # or { "a.pth" = 0.8, ... }
    relation = "pretrained"                      # pretrained | blend | teacher
    stamp = "20251227_171118"                    # default: from the file name

or a folder scanned by a file-name pattern (`{exp}_{date}_{time}_best.pth`). Each checkpoint
becomes a finished run `<experiment>_<date>_<time>` (recipe `imported`) whose folder holds the
same events as any run, so `nkd reindex` keeps it; a file that no longer exists is imported
without its sha256. Importing again skips what is already there.
"""

from __future__ import annotations

import csv
import re
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import NkdError
from core.registry.workspace import Workspace
from core.store import Store
from core.store.reporter import Reporter
from core.store.states import Status
from core.util.checksum import sha256_file
from core.util.names import name_problem

STAMP = re.compile(r"(?P<exp>.+?)_(?P<date>\d{8})_(?P<time>\d{6})(?:_(?P<role>best|last))?$")
RELATIONS = ("pretrained", "blend", "teacher", "merged")
REPORTED = {"sdr_db": ("sdr", "mean"), "sdr": ("sdr", "mean"), "accuracy": ("accuracy", None)}


class ManifestError(NkdError):
    """A manifest entry that cannot be imported; the message names the file and the entry."""


@dataclass
class Entry:
    file: Path
    experiment: str
    stamp: datetime | None
    settings: dict[str, Any] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)
    parents: dict[str, float | None] = field(default_factory=dict)  # file name -> weight
    relation: str = "pretrained"

    @property
    def run_id(self) -> str:
        when = self.stamp or datetime.fromtimestamp(0)
        return f"{self.experiment}_{when:%Y%m%d_%H%M%S}"


def _entry(raw: dict[str, Any], root: Path, where: str) -> Entry:
    if not isinstance(raw.get("file"), str) or not raw["file"]:
        raise ManifestError(f"{where}: needs 'file'")
    path = Path(raw["file"])
    path = path if path.is_absolute() else root / path
    m = STAMP.match(path.stem)
    experiment = raw.get("experiment") or (m.group("exp") if m else path.stem)
    problem = name_problem(experiment)
    if problem:
        raise ManifestError(f"{where}: experiment {experiment!r}: {problem}")
    stamp = None
    when = raw.get("stamp") or (m.group("date") + "_" + m.group("time") if m else None)
    if when:
        try:
            stamp = datetime.strptime(str(when), "%Y%m%d_%H%M%S")
        except ValueError:
            raise ManifestError(f"{where}: 'stamp' {when!r} is not YYYYMMDD_HHMMSS") from None
    parents = raw.get("parents", [])
    if isinstance(parents, list):
        parents = {str(p): None for p in parents}
    elif not isinstance(parents, dict):
        raise ManifestError(f"{where}: 'parents' must be a list of files or a table file -> "
                           f"weight")
    relation = raw.get("relation", "blend" if any(v is not None for v in parents.values())
                       else "pretrained")
    if relation not in RELATIONS:
        raise ManifestError(f"{where}: 'relation' must be one of {', '.join(RELATIONS)}")
    for key in ("settings", "reported"):
        if not isinstance(raw.get(key, {}), dict):
            raise ManifestError(f"{where}: '{key}' must be a table")
    return Entry(path, experiment, stamp, dict(raw.get("settings", {})),
                 dict(raw.get("reported", {})), parents, relation)


def read_manifest(path: Path) -> list[Entry]:
    root = path.parent
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot be read ({exc.strerror})") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        return [_entry(_csv_row(r), root, f"{path}: row {n}") for n, r in enumerate(rows, 2)]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: TOML syntax error: {exc}") from None
    entries = doc.get("checkpoint")
    if not isinstance(entries, list) or not entries:
        raise ManifestError(f"{path}: no [[checkpoint]] entries")
    return [_entry(e if isinstance(e, dict) else {}, root, f"{path}: checkpoint {n}")
            for n, e in enumerate(entries, 1)]


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    """CSV columns: file, experiment, parents ('a.pth*0.8;b.pth*0.2'), relation, settings
    ('k=v;k=v', values read as TOML), and reported values as any other column."""
    out: dict[str, Any] = {"file": row.get("file", ""), "experiment": row.get("experiment")}
    if row.get("relation"):
        out["relation"] = row["relation"]
    parents: dict[str, float | None] = {}
    for item in filter(None, (row.get("parents") or "").split(";")):
        name, _, weight = item.partition("*")
        parents[name.strip()] = float(weight) if weight else None
    out["parents"] = parents
    settings = {}
    for item in filter(None, (row.get("settings") or "").split(";")):
        key, _, value = item.partition("=")
        try:
            settings[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            settings[key.strip()] = value.strip()
    out["settings"] = settings
    known = {"file", "experiment", "parents", "relation", "settings"}
    out["reported"] = {k: float(v) for k, v in row.items() if k not in known and v}
    return out


def scan(folder: Path, pattern: str) -> list[Entry]:
    """Checkpoint files in `folder` whose names fit `pattern` ({exp}, {date}, {time})."""
    regex = re.escape(pattern)
    for field_, part in (("exp", r"(?P<exp>.+?)"), ("date", r"(?P<date>\d{8})"),
                         ("time", r"(?P<time>\d{6})")):
        regex = regex.replace(re.escape("{" + field_ + "}"), part)
    compiled = re.compile(regex + "$")
    out = []
    for path in sorted(folder.iterdir()):
        m = compiled.match(path.name)
        if m and path.is_file():
            out.append(_entry({"file": str(path), "experiment": m.groupdict().get("exp")},
                              folder, str(path)))
    return out


def import_entries(ws: Workspace, store: Store, entries: list[Entry]) -> list[str]:
    """Write each entry as an imported run; returns what was done, a line per entry."""
    by_name = {e.file.name: e for e in entries}
    done = []
    for entry in entries:
        for parent in entry.parents:
            if parent not in by_name and not _known_checkpoint(store, parent):
                raise ManifestError(f"{entry.file.name}: parent {parent!r} is neither in the "
                                   f"manifest nor a recorded checkpoint")
    for entry in sorted(entries, key=lambda e: (e.stamp or datetime.min, e.run_id)):
        run_dir = ws.run_dir(entry.run_id)
        if store.get_run(entry.run_id) is not None or run_dir.exists():
            done.append(f"{entry.run_id}: already imported")
            continue
        run_dir.mkdir(parents=True)
        t = entry.stamp.timestamp() if entry.stamp else time.time()
        with Reporter(entry.run_id, run_dir, store) as rep:
            rep.event({"type": "run", "experiment": entry.experiment, "recipe": "imported",
                       "status": Status.STARTING, "params": entry.settings, "run_dir": str(run_dir),
                       "t": t})
            digest = sha256_file(entry.file) if entry.file.is_file() else None
            parents = [{"checkpoint": _checkpoint_id(by_name, store, p), "relation":
                        entry.relation, "weight": w} for p, w in entry.parents.items()]
            rep.event({"type": "checkpoint", "path": str(entry.file), "role": "best",
                       "id": f"{entry.run_id}/{entry.file.name}", "sha256": digest,
                       "parents": parents, "t": t})
            for key, value in entry.reported.items():
                name, stem = REPORTED.get(key, (key, None))
                if isinstance(value, int | float) and not isinstance(value, bool):
                    rep.event({"type": "metric", "name": name, "value": float(value),
                               "definition": "reported", **({"stem": stem} if stem else {}),
                               "t": t})
            rep.event({"type": "status", "status": Status.FINISHED, "t": t})
        missing = "" if digest else " (file not found: imported without its sha256)"
        done.append(f"{entry.run_id}: imported{missing}")
    return done


def _known_checkpoint(store: Store, name: str) -> bool:
    return store.conn.execute("SELECT 1 FROM checkpoints WHERE id = ? OR id LIKE ?",
                              (name, f"%/{name}")).fetchone() is not None


def _checkpoint_id(by_name: dict[str, Entry], store: Store, name: str) -> str:
    if name in by_name:
        entry = by_name[name]
        return f"{entry.run_id}/{entry.file.name}"
    row = store.conn.execute("SELECT id FROM checkpoints WHERE id = ? OR id LIKE ?",
                             (name, f"%/{name}")).fetchone()
    return row[0]
