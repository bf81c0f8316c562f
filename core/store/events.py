"""The event schema: what a line of `runs/<id>/events.jsonl` may hold before it reaches the store.

Every event is checked here, live (the reporter) and when the store is rebuilt (`nkd reindex`),
so a hand-edited or damaged line is skipped and counted instead of breaking the store for every
run. What a command experiment's script may report is narrower still: `core/capture/records.py`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.registry.keys import KEYS
from core.store.states import ACTIVE, FINAL, HOLDING, STATUSES, Status

__all__ = ["ACTIVE", "FINAL", "HOLDING", "STATUSES", "BadEvent", "EventLog", "check",
           "final_status", "last_status", "parse_line"]
NAME_MAX = 100  # metric names, stems, splits, roles
TEXT_MAX = 2000  # error messages, paths
MAX_LINE_BYTES = 1 << 20  # a longer line is refused before it is parsed


class BadEvent(ValueError):
    """A line that is not a valid event; its message says which key and why."""


def finite(value: Any, key: str) -> float | None:
    """A finite number (or None); bools, strings, NaN and infinities are refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadEvent(f"'{key}' must be a number or null, got {_show(value)}")
    if not math.isfinite(value):
        raise BadEvent(f"'{key}' must be finite, got {value}")
    return float(value)


def integer(value: Any, key: str, minimum: int | None = 0) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadEvent(f"'{key}' must be an integer, got {_show(value)}")
    if minimum is not None and value < minimum:
        raise BadEvent(f"'{key}' must be ≥ {minimum}, got {value}")
    return value


def text(value: Any, key: str, limit: int = NAME_MAX) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit or "\x00" in value:
        raise BadEvent(f"'{key}' must be a string of 1 to {limit} characters, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    shown = json.dumps(value) if not isinstance(value, float) else repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


_NUMBERS = {
    "epoch": ("train_loss", "val_loss", "lr", "seconds", "train_seconds"),
    "checkpoint": ("value",),
}


def check(event: Any) -> dict[str, Any]:
    """The event if it is valid, else BadEvent naming the key. Unknown types pass unchanged
    (the store ignores them), so a newer nkd's events do not break an older reindex."""
    if not isinstance(event, dict):
        raise BadEvent("an event must be a JSON object")
    kind = event.get("type")
    text(kind, "type", 40)
    finite(event.get("t"), "t")
    if event.get("t") is None:
        raise BadEvent("'t' is missing")
    for key in _NUMBERS.get(kind, ()):
        finite(event.get(key), key)
    if kind == "run":
        text(event.get("experiment"), "experiment", 200)
        if event.get("status", Status.QUEUED) not in ACTIVE:
            raise BadEvent(f"a run starts in one of {', '.join(ACTIVE)}")
        integer(event.get("epochs_total"), "epochs_total")
        integer(event.get("seed"), "seed", None)
        if not isinstance(event.get("params", {}), dict):
            raise BadEvent("'params' must be a table")
        integer(event.get("priority"), "priority", None)
        integer(event.get("gpus"), "gpus")
        finite(event.get("gpu_memory"), "gpu_memory")
        text(event.get("sweep"), "sweep", 200)
        if event.get("backend") not in (None, *KEYS["backend"].choices):
            raise BadEvent(f"'backend' must be {' or '.join(KEYS['backend'].choices)}")
        after = event.get("after", [])
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise BadEvent("'after' must be a list of run ids")
    elif kind == "status":
        if event.get("status") not in STATUSES:
            raise BadEvent(f"'status' must be one of {', '.join(STATUSES)}")
        _check_process(event)
        integer(event.get("exit_code"), "exit_code", None)
        integer(event.get("resume"), "resume")
        integer(event.get("requeue"), "requeue")
        text(event.get("node"), "node", 200)
        text(event.get("gpus"), "gpus", 400)
        if not isinstance(event.get("error", ""), str | None):
            raise BadEvent("'error' must be a string")
        text(event.get("device"), "device")
        finite(event.get("peak_rss_mb"), "peak_rss_mb")
        finite(event.get("cpu_s"), "cpu_s")
    elif kind == "worker":
        _check_process(event)
        text(event.get("gpus"), "gpus", 400)
    elif kind == "queue":
        integer(event.get("priority"), "priority", None)
    elif kind == "job":
        if text(event.get("job_id"), "job_id", 40) is None:
            raise BadEvent("'job_id' is missing")
    elif kind == "annotate":
        tags = event.get("tags", [])
        if not isinstance(tags, list) or not all(
                isinstance(t, str) and t and len(t) <= NAME_MAX and t.strip() == t for t in tags):
            raise BadEvent("'tags' must be a list of non-empty tags without spaces at their ends")
        if not isinstance(event.get("note", ""), str) or len(event.get("note", "")) > TEXT_MAX:
            raise BadEvent(f"'note' must be a string of at most {TEXT_MAX} characters")
        if not isinstance(event.get("archived", False), bool):
            raise BadEvent("'archived' must be true or false")
    elif kind == "progress":
        if integer(event.get("step"), "step") is None:
            raise BadEvent("'step' is missing")
        integer(event.get("epoch"), "epoch")
        integer(event.get("steps"), "steps")
        finite(event.get("loss"), "loss")
    elif kind == "epoch":
        if event.get("epoch") is None:
            raise BadEvent("'epoch' is missing")
        integer(event.get("epoch"), "epoch")
    elif kind == "metric":
        text(event.get("name"), "name")
        if "value" not in event:
            raise BadEvent("'value' is missing")
        finite(event.get("value"), "value")
        for key in ("stem", "track", "split", "definition", "gains"):
            text(event.get(key), key, TEXT_MAX if key == "track" else NAME_MAX)
        integer(event.get("epoch"), "epoch")
    elif kind == "checkpoint":
        text(event.get("path"), "path", TEXT_MAX)
        for key in ("role", "sha256"):
            text(event.get(key), key)
        text(event.get("id"), "id", TEXT_MAX)
        integer(event.get("epoch"), "epoch")
        parents = event.get("parents", [])
        if not isinstance(parents, list):
            raise BadEvent("'parents' must be a list")
        for parent in parents:
            if not isinstance(parent, dict):
                raise BadEvent("each parent must be a table")
            text(parent.get("checkpoint"), "parents.checkpoint", TEXT_MAX)
            text(parent.get("relation"), "parents.relation")
            finite(parent.get("weight"), "parents.weight")
    elif kind == "reference":  # which run a reference resolved to (the worker's own record)
        for key in ("key", "ref", "run"):
            text(event.get(key), key, TEXT_MAX)
    elif kind == "resume":
        integer(event.get("epoch"), "epoch")
    return event


def _check_process(event: dict[str, Any]) -> None:
    integer(event.get("pid"), "pid", 1)
    finite(event.get("pid_start"), "pid_start")
    integer(event.get("pid_ticks"), "pid_ticks")


def parse_line(line: str | bytes) -> dict[str, Any]:
    """One line of events.jsonl as a checked event; BadEvent for anything else (never another
    exception: deep nesting, bad UTF-8 and huge lines are all just bad lines)."""
    if len(line) > MAX_LINE_BYTES:
        raise BadEvent(f"line longer than {MAX_LINE_BYTES} bytes")
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            raise BadEvent("not UTF-8 text") from None
    try:
        event = json.loads(line)
    except RecursionError:
        raise BadEvent("JSON nested too deeply") from None
    except ValueError as exc:
        raise BadEvent(f"not JSON ({str(exc).splitlines()[0][:80]})") from None
    return check(event)


class EventLog:
    """Reads a run's events.jsonl, counting the lines it had to skip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.skipped: list[tuple[int, str]] = []  # (line number, reason)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            self.skipped.append((0, f"unreadable: {exc.strerror or exc}"))
            return
        with fh:
            for n, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    yield parse_line(raw.strip())
                except BadEvent as exc:
                    self.skipped.append((n, str(exc)))


def final_status(path: Path) -> dict[str, Any] | None:
    """The last status event of a run if it is a final one."""
    last = last_status(path)
    return last if last is not None and last["status"] in FINAL else None


def last_status(path: Path) -> dict[str, Any] | None:
    """The last status event of a run (read from the end of the file)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            tail = fh.read().splitlines()
    except OSError:
        return None
    for raw in reversed(tail):
        try:
            event = parse_line(raw)
        except BadEvent:
            continue
        if event.get("type") == "status":
            return event
    return None
