"""What a researcher says of a run after the fact: tags, a note, and archiving.

Each change is an `annotate` event in the run's own events.jsonl (so `nkd reindex` keeps it) and
carries the whole new value of what it changes. Archiving hides an ended run from `nkd ps` and the
TUI; nothing of it is deleted, and `nkd archive --undo` (or `a` again in the TUI) shows it again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from core.errors import NkdError, RunError
from core.registry.workspace import Workspace
from core.store import Store
from core.store.events import FINAL, TEXT_MAX
from core.store.reporter import record

TAG = re.compile(r"[\w.:/+=@-]{1,100}")


def tags_of(row: dict[str, Any]) -> list[str]:
    return json.loads(row["tags"]) if row.get("tags") else []


def check_tag(tag: str) -> str:
    if not TAG.fullmatch(tag):
        raise NkdError(f"tag '{tag}': use 1 to 100 ASCII letters, digits or _ . : / + = @ - "
                       "(no spaces or commas)")
    return tag


def _record(store: Store, ws: Workspace, run_id: str, event: dict[str, Any]) -> None:
    record(run_id, ws.run_dir(run_id), store, "annotate", **event)


def tag(store: Store, ws: Workspace, run_id: str, add: Iterable[str] = (),
        remove: Iterable[str] = ()) -> list[str]:
    """Add and remove tags; returns the run's tags after. Removing a tag it lacks is no error."""
    add, remove = [check_tag(t) for t in add], [check_tag(t) for t in remove]
    before = tags_of(store.require_run(run_id))
    after = [t for t in before if t not in remove]
    after += [t for t in dict.fromkeys(add) if t not in after]
    if after != before:
        _record(store, ws, run_id, {"tags": after})
    return after


def set_tags(store: Store, ws: Workspace, run_id: str, tags: Iterable[str]) -> list[str]:
    """Replace the run's tags (the TUI's tag line: the tags it shows, edited)."""
    wanted = list(dict.fromkeys(check_tag(t) for t in tags))
    if wanted != tags_of(store.require_run(run_id)):
        _record(store, ws, run_id, {"tags": wanted})
    return wanted


def parse_tags(text: str) -> list[str]:
    """`best, kd-sweep  mark2` -> the tags (commas or spaces between them)."""
    return [t for t in re.split(r"[,\s]+", text.strip()) if t]


def note(store: Store, ws: Workspace, run_id: str, text: str) -> None:
    """Set (or with "" clear) the run's note: one paragraph of the researcher's own words."""
    text = " ".join(text.split())
    if len(text) > TEXT_MAX:
        raise NkdError(f"note for {run_id}: {len(text)} characters; at most {TEXT_MAX}")
    if text != (store.require_run(run_id).get("note") or ""):
        _record(store, ws, run_id, {"note": text})


def archive(store: Store, ws: Workspace, run_id: str, archived: bool = True) -> str:
    """Hide an ended run from listings (or show it again); nothing is deleted."""
    row = store.require_run(run_id)
    if archived and row["status"] not in FINAL:
        raise RunError(f"run '{run_id}' is {row['status']}; archive it once it has ended")
    if bool(row.get("archived")) != archived:
        _record(store, ws, run_id, {"archived": archived})
    if archived:
        return f"{run_id}: archived (nkd archive --undo shows it again)"
    return f"{run_id}: shown again"


def experiments_matching(store: Store, text: str) -> set[str]:
    """Experiments with a shown (not archived) run whose tags or note match `text`, as
    `matches` reads it: what the TUI's `/` finds beside experiment names."""
    text = text.strip().lower()
    if not text or text == "#":
        return set()

    def like(s: str) -> str:
        return "%" + s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

    if text.startswith("#"):
        sql, args = "lower(tags) LIKE ? ESCAPE '\\'", [like(json.dumps(text[1:],
                                                                        ensure_ascii=False))]
    else:
        sql = "(lower(tags) LIKE ? ESCAPE '\\' OR lower(note) LIKE ? ESCAPE '\\')"
        args = [like(text)] * 2
    rows = store.conn.execute(
        f"SELECT DISTINCT experiment FROM runs WHERE archived IS NULL AND {sql}", args)
    return {r[0] for r in rows}


def matches(row: dict[str, Any], text: str) -> bool:
    """Whether a search finds the run: `#tag` matches a tag exactly, anything else any part of
    the id, a tag or the note (case-insensitive)."""
    text = text.strip().lower()
    if not text:
        return True
    tags = [t.lower() for t in tags_of(row)]
    if text.startswith("#"):
        return text[1:] in tags
    return any(text in field for field in (row["id"].lower(), (row.get("note") or "").lower(),
                                           *tags))
