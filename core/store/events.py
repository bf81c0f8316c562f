"""The event schema: what a line of `runs/<id>/events.jsonl` may hold before it reaches the store.

Every event is checked here, live (the reporter) and when the store is rebuilt (`nkd reindex`),
so a hand-edited or damaged line is skipped and counted instead of breaking the store for every
run. What a command experiment's script may report is narrower still: `core/capture/records.py`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from core.registry.keys import KEYS, SELECT_BY
from core.store.states import ACTIVE, FINAL, HOLDING, STATUSES

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


# ── the events, declared once ───────────────────────────────────────────────────────────────
# Each kind of event: its fields, their types and whether they must be there. `check` validates
# by this table (live and on reindex), `apply` reads which fields set which columns from it, and
# the writers build events through `event(kind, ...)`, which checks them against it.


class Field(NamedTuple):
    kind: str  # number | int | text | table | list | ids | tags | parents | choice | flag | status
    required: bool = False
    minimum: int | None = 0  # ints
    limit: int = NAME_MAX  # texts
    choices: tuple[str, ...] = ()  # choice, status
    column: bool = False  # a status event's field kept on the run's row as it is


def _n(required: bool = False) -> Field:
    return Field("number", required)


def _i(minimum: int | None = 0, required: bool = False, column: bool = False) -> Field:
    return Field("int", required, minimum, column=column)


def _t(limit: int = NAME_MAX, required: bool = False, column: bool = False) -> Field:
    return Field("text", required, limit=limit, column=column)


_PROCESS = {"pid": _i(1, column=True), "pid_start": Field("number", column=True),
            "pid_ticks": _i(column=True)}

# what a recorded checkpoint is to its run: the best epoch's weights, the last ones, an epoch
# kept in its own file (`keep_checkpoints`), the soft labels or evaluation a recipe wrote
CHECKPOINT_ROLES = ("best", "last", "epoch", "soft_labels", "evaluation")

EVENTS: dict[str, dict[str, Field]] = {
    "run": {  # a run recorded: what it is and what it needs
        "experiment": _t(200), "recipe": _t(), "run_dir": _t(TEXT_MAX),
        "status": Field("status", choices=ACTIVE), "params": Field("table"),
        "defaults": Field("table"), "select_by": Field("choice", choices=tuple(SELECT_BY)),
        "seed": _i(None), "host": _t(200), "epochs_total": _i(), "gpus": _i(),
        "gpu_memory": _n(), "priority": _i(None), "after": Field("ids"), "sweep": _t(200),
        "backend": Field("choice", choices=KEYS["backend"].choices),
        "rerun_of": _t(TEXT_MAX),  # `nkd rerun`: the run this one repeats
        "made": Field("table"),  # code, data and environment in short (provenance.json)
    },
    "status": {  # a change of status, with what the run's row keeps of it
        "status": Field("status", required=True, choices=STATUSES), **_PROCESS,
        "exit_code": _i(None, column=True), "error": Field("error", column=True),
        "device": _t(column=True), "seed": _i(None, column=True),
        "resume": _i(column=True), "requeue": _i(), "node": _t(200, column=True),
        "gpus": _t(400, column=True), "peak_rss_mb": Field("number", column=True),
        "cpu_s": Field("number", column=True), "by": _t(),
        "folder_bytes": _i(column=True),  # the run folder's size when it ended
        # the derived-cache entries it used (core/util/cache_use.py): bytes, and the key of
        # that set, which the runs that used the same entries share
        "cache_bytes": _i(column=True), "cache_key": _t(40, column=True),
    },
    "worker": {**_PROCESS, "gpus": _t(400)},  # the process a launcher started
    "queue": {"priority": _i(None)},
    "job": {"job_id": _t(40, required=True),
            "backend": Field("choice", choices=KEYS["backend"].choices)},
    "annotate": {"tags": Field("tags"), "note": Field("note"), "archived": Field("flag")},
    "progress": {"step": _i(required=True), "epoch": _i(), "steps": _i(), "loss": _n()},
    "epoch": {"epoch": _i(required=True), "train_loss": _n(), "val_loss": _n(), "lr": _n(),
              "seconds": _n(), "train_seconds": _n()},  # other keys: the epoch's extra values
    "metric": {"name": _t(), "value": Field("number", required=True),
               "stem": _t(), "track": _t(TEXT_MAX), "split": _t(), "definition": _t(),
               "gains": _t(), "epoch": _i(), "caveat": _t(200)},
    "checkpoint": {"path": _t(TEXT_MAX), "role": _t(), "sha256": _t(), "id": _t(TEXT_MAX),
                   "epoch": _i(), "value": _n(), "parents": Field("parents"), "bytes": _i()},
    # `nkd gc` deleted a checkpoint file: the record keeps it, marked gone
    "checkpoint_deleted": {"id": _t(TEXT_MAX, required=True), "path": _t(TEXT_MAX),
                           "bytes": _i(), "sha256": _t(), "by": _t()},
    "reference": {"key": _t(TEXT_MAX), "ref": _t(TEXT_MAX), "run": _t(TEXT_MAX)},
    "resume": {"epoch": _i()},
    # the inference settings a run found as it ran, each with where it came from
    "settings": {"used": Field("table", required=True), "origin": Field("table")},
    "early_stop": {"epoch": _i(required=True), "select_by": Field(
        "choice", True, choices=tuple(SELECT_BY)), "patience": _i(required=True),
        "best_epoch": _i(required=True), "best_value": _n(required=True)},
}


def _field(value: Any, key: str, spec: Field) -> None:
    kind = spec.kind
    if kind == "number":
        finite(value, key)
    elif kind == "int":
        integer(value, key, spec.minimum)
    elif kind == "text":
        text(value, key, spec.limit)
    elif kind in ("status", "choice"):
        if value is not None and value not in spec.choices:
            raise BadEvent(f"'{key}' must be one of {', '.join(spec.choices)}")
    elif kind == "table":
        if not isinstance(value, dict):
            raise BadEvent(f"'{key}' must be a table")
    elif kind == "ids":
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise BadEvent(f"'{key}' must be a list of run ids")
    elif kind == "tags":
        if not isinstance(value, list) or not all(
                isinstance(t, str) and t and len(t) <= NAME_MAX and t.strip() == t
                for t in value):
            raise BadEvent(f"'{key}' must be a list of non-empty tags without spaces at their "
                           f"ends")
    elif kind == "note":
        if not isinstance(value, str) or len(value) > TEXT_MAX:
            raise BadEvent(f"'{key}' must be a string of at most {TEXT_MAX} characters")
    elif kind == "error":
        if not isinstance(value, str | None):
            raise BadEvent(f"'{key}' must be a string")
    elif kind == "flag":
        if not isinstance(value, bool):
            raise BadEvent(f"'{key}' must be true or false")
    elif kind == "parents":
        if not isinstance(value, list):
            raise BadEvent(f"'{key}' must be a list")
        for parent in value:
            if not isinstance(parent, dict):
                raise BadEvent("each parent must be a table")
            text(parent.get("checkpoint"), "parents.checkpoint", TEXT_MAX)
            text(parent.get("relation"), "parents.relation")
            finite(parent.get("weight"), "parents.weight")


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
    for key, spec in EVENTS.get(kind, {}).items():
        if key not in event:
            if spec.required:
                raise BadEvent(f"'{key}' is missing")
            continue
        _field(event[key], key, spec)
    return event


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """A new event of a declared kind, checked now (a writer's mistake is found where it is
    made, not at the next reindex), stamped with the time."""
    if kind not in EVENTS:
        raise BadEvent(f"no event kind '{kind}' (declared: {', '.join(EVENTS)})")
    return check({"type": kind, "t": time.time(), **fields})


def row_fields(kind: str) -> tuple[str, ...]:
    """The fields of an event kind that the run's row keeps as they are."""
    return tuple(k for k, spec in EVENTS[kind].items() if spec.column)


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
