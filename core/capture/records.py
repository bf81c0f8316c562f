"""`@nkd {json}` lines from the researcher's script: input from an untrusted program.

The schema: an epoch and a step are integers ≥ 0; losses, learning rate and metric values are
finite numbers or null; names are short strings; a checkpoint is a path inside the run's own
folders; other keys of an epoch record are kept as its extra values (scalars only);
`{"step": k, "steps": n}` says where the script is inside its epoch. Anything else is refused with a
RecordError whose message says why; the worker prints it as one warning line and goes on. A script
can never set a run's status or identity: those keys are refused outright.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.store.events import BadEvent, finite, integer, text
from core.util.names import inside
from core.util.text import has_control

PREFIX = "@nkd"
MAX_RECORD_CHARS = 65536
MAX_EXTRA_KEYS = 64
# keys that would let a script write what only nkd writes
RESERVED = frozenset({
    "type", "t", "status", "run", "run_id", "experiment", "recipe", "params", "pid",
    "pid_start", "pid_ticks", "host", "exit_code", "error", "run_dir", "parents", "id",
    "created_at", "started_at", "ended_at", "seed", "device",
})
ROLES = ("best", "last")


class RecordError(BadEvent):
    """An `@nkd` line that is refused; the message says why."""


def is_record(line: str) -> bool:
    return line.startswith(PREFIX) and (len(line) == len(PREFIX) or line[len(PREFIX)].isspace())


def parse_record(line: str, cwd: Path, folders: tuple[Path, ...]) -> dict[str, Any] | None:
    """The event a line carries, None for an ordinary log line, RecordError for a refused one.

    `cwd` is where the script runs (relative checkpoint paths start there); `folders` are the
    run's own folders, the only places a reported checkpoint may be.
    """
    if not is_record(line):
        return None
    payload_text = line[len(PREFIX):].strip()
    if len(payload_text) > MAX_RECORD_CHARS:
        raise RecordError(f"longer than {MAX_RECORD_CHARS} characters")
    try:
        payload = json.loads(payload_text)
    except RecursionError:
        raise RecordError("JSON nested too deeply") from None
    except ValueError:
        raise RecordError("not a JSON object") from None
    if not isinstance(payload, dict):
        raise RecordError("an @nkd line must carry a JSON object")
    try:
        return _event(payload, cwd, folders)
    except RecordError:
        raise
    except BadEvent as exc:
        raise RecordError(str(exc)) from None


def _event(payload: dict[str, Any], cwd: Path, folders: tuple[Path, ...]) -> dict[str, Any]:
    forged = sorted(RESERVED & payload.keys())
    if forged:
        raise RecordError(f"a script cannot set {', '.join(repr(k) for k in forged)}")
    # a checkpoint or metric line may name its epoch too, so those are recognised first
    if "checkpoint" in payload:
        return _checkpoint(payload, cwd, folders)
    if "name" in payload or "value" in payload:
        return _metric(payload)
    if "step" in payload:
        return _progress(payload)
    if "epoch" in payload:
        return _epoch(payload)
    if "epochs_total" in payload:
        total = integer(payload["epochs_total"], "epochs_total")
        return {"type": "meta", "epochs_total": total}
    raise RecordError("an @nkd line needs 'epoch', 'step', 'checkpoint', 'epochs_total' or "
                      "name/value")


def _progress(payload: dict[str, Any]) -> dict[str, Any]:
    """`{"step": k, "steps": n}`: where the script is inside its epoch (for the ETA)."""
    unknown = sorted(payload.keys() - {"step", "steps", "epoch", "loss"})
    if unknown:
        raise RecordError(f"a step record has no key {unknown[0]!r}")
    step = integer(payload["step"], "step")
    if step is None:
        raise RecordError("'step' must be an integer, got null")
    return {"type": "progress", "step": step, "steps": integer(payload.get("steps"), "steps"),
            "epoch": integer(payload.get("epoch"), "epoch"),
            "loss": finite(payload.get("loss"), "loss")}


def _checkpoint(payload: dict[str, Any], cwd: Path, folders: tuple[Path, ...]) -> dict[str, Any]:
    unknown = sorted(payload.keys() - {"checkpoint", "role", "epoch", "value"})
    if unknown:
        raise RecordError(f"a checkpoint record has no key {unknown[0]!r}")
    raw = text(payload["checkpoint"], "checkpoint", 4096)
    assert raw is not None
    role = payload.get("role", "last")
    if role not in ROLES:
        raise RecordError(f"'role' must be one of {', '.join(ROLES)}, got {json.dumps(role)[:40]}")
    path = Path(raw) if Path(raw).is_absolute() else cwd / raw
    if not inside(path, *folders):
        raise RecordError(f"checkpoint {raw!r} is outside the run's folders "
                          f"({', '.join(str(f) for f in folders)})")
    return {
        "type": "checkpoint",
        "path": str(path),
        "role": role,
        "epoch": integer(payload.get("epoch"), "epoch"),
        "value": finite(payload.get("value"), "value"),
    }


def _name(value: Any, key: str) -> str:
    """A name a script gives (a metric, a stem, a split): a short string without control
    characters, which would reach every terminal that shows it."""
    checked = text(value, key)
    if checked is not None and has_control(checked):
        raise RecordError(f"'{key}' holds control characters")
    return checked


def _metric(payload: dict[str, Any]) -> dict[str, Any]:
    if "name" not in payload or "value" not in payload:
        raise RecordError("a metric record needs both 'name' and 'value'")
    unknown = sorted(payload.keys() - {"name", "value", "stem", "track", "split", "epoch",
                                       "definition"})
    if unknown:
        raise RecordError(f"a metric record has no key {unknown[0]!r}")
    event: dict[str, Any] = {
        "type": "metric",
        "name": _name(payload["name"], "name"),
        "value": finite(payload["value"], "value"),
    }
    for key in ("stem", "track", "split", "definition"):
        if payload.get(key) is not None:
            event[key] = _name(payload[key], key)
    if payload.get("epoch") is not None:
        event["epoch"] = integer(payload["epoch"], "epoch")
    return event


def _epoch(payload: dict[str, Any]) -> dict[str, Any]:
    epoch = integer(payload["epoch"], "epoch")
    if epoch is None:
        raise RecordError("'epoch' must be an integer, got null")
    event: dict[str, Any] = {"type": "epoch", "epoch": epoch}
    for key in ("train_loss", "val_loss", "lr", "seconds"):
        if key in payload:
            event[key] = finite(payload[key], key)
    extra = {k: v for k, v in payload.items() if k not in event and k != "epochs_total"}
    if len(extra) > MAX_EXTRA_KEYS:
        raise RecordError(f"more than {MAX_EXTRA_KEYS} extra values")
    for key, value in extra.items():
        _name(key, "an extra key")
        if isinstance(value, str):
            text(value, key, 200)
        elif not isinstance(value, bool):
            finite(value, key)
        event[key] = value
    return event
