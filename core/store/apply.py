"""How each event changes the store: one handler per event type, run inside a transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.registry.key import SELECT_FALLBACK
from core.registry.keys import KEYS
from core.store.best import FIELDS, record_epochs
from core.store.events import FINAL, row_fields
from core.store.states import Status


def _on_run(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO runs (id, experiment, recipe, status, params, run_dir, seed, "
        "host, created_at, epochs_total, epoch, needs_gpus, gpu_memory, priority, after, sweep, "
        "queued_at, status_at, backend, select_by, defaults) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run_id,
            ev["experiment"],
            ev.get("recipe"),
            ev.get("status", Status.QUEUED),
            json.dumps(ev.get("params", {}), sort_keys=True),
            ev.get("run_dir"),
            ev.get("seed"),
            ev.get("host"),
            ev["t"],
            ev.get("epochs_total"),
            ev.get("gpus"),
            ev.get("gpu_memory"),
            ev.get("priority") or 0,
            json.dumps(ev["after"]) if ev.get("after") else None,
            ev.get("sweep"),
            ev["t"] if ev.get("status") == Status.QUEUED else None,
            ev["t"],
            ev.get("backend"),
            ev.get("select_by"),
            json.dumps(ev["defaults"], sort_keys=True) if ev.get("defaults") else None,
        ),
    )


def _on_job(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    """A run submitted to Slurm: its job id."""
    conn.execute("UPDATE runs SET job_id = ?, backend = coalesce(?, backend) WHERE id = ?",
                 (ev["job_id"], ev.get("backend"), run_id))


def _on_queue(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    """A change to a queued run: its priority."""
    if "priority" in ev:
        conn.execute("UPDATE runs SET priority = ? WHERE id = ?", (ev["priority"], run_id))


_STATUS_FIELDS = row_fields("status")  # what a status event sets on the run's row as it is
_PROCESS_FIELDS = row_fields("worker")


def _on_status(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    status = ev["status"]
    sets = ["status = ?", "status_at = ?"]
    args: list[Any] = [status, ev["t"]]
    for key in _STATUS_FIELDS:
        if key in ev:
            sets.append(f"{key} = ?")
            args.append(ev[key])
    if status == Status.RUNNING:
        sets.append("started_at = coalesce(started_at, ?)")
        args.append(ev["t"])
    if status == Status.QUEUED:
        sets.append("queued_at = ?")
        args.append(ev["t"])
    if ev.get("requeue"):  # a Slurm job put back in its queue (time limit, preemption)
        sets.append("requeues = coalesce(requeues, 0) + 1")
    if status == Status.QUEUED:  # back in the queue: it holds no GPU (an ended run keeps its record
        sets.append("gpus = NULL")  # of which GPUs it used; only active runs hold a lease)
    if status in FINAL:
        sets.append("ended_at = ?")
        args.append(ev["t"])
    elif status in (Status.STARTING, Status.RUNNING):
        sets.append("ended_at = NULL")
    conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*args, run_id))


def _on_worker(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    """The launcher's note of the worker it started: which process to watch and the GPUs it
    was given (its lease), status unchanged."""
    conn.execute(
        f"UPDATE runs SET {', '.join(f'{k} = ?' for k in _PROCESS_FIELDS)}, gpus = ? WHERE id = ?",
        (*(ev.get(k) for k in _PROCESS_FIELDS), ev.get("gpus"), run_id),
    )


def _on_progress(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    """Where the run is inside its epoch (rate-limited by the training loop)."""
    conn.execute("UPDATE runs SET step = ?, steps = ?, step_at = ? WHERE id = ?",
                 (ev.get("step"), ev.get("steps"), ev["t"], run_id))


_EPOCH_INSERT = ("INSERT OR REPLACE INTO epochs (run, epoch, train_loss, val_loss, lr, extra, "
                 "seconds, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_EPOCH_KNOWN = frozenset({"type", "t", "epoch", "train_loss", "val_loss", "lr", "seconds"})


def _on_epoch(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    on_epochs(conn, run_id, [ev])


def on_epochs(conn: sqlite3.Connection, run_id: str, evs: list[dict[str, Any]]) -> None:
    """Epochs in order, as many statements as one epoch takes (a script's burst of records):
    each epoch's row, then the epoch reached and the best epoch by the run's own select_by (the
    loop keeps the same one's weights), as core.store.best keeps it."""
    rows, updates = [], []
    for ev in evs:
        extra = {k: v for k, v in ev.items() if k not in _EPOCH_KNOWN}
        epoch = int(ev["epoch"])
        rows.append((run_id, epoch, ev.get("train_loss"), ev.get("val_loss"), ev.get("lr"),
                     json.dumps(extra) if extra else None, ev.get("seconds"), ev["t"]))
        updates.append({**{field: _number(ev.get(field)) for field in FIELDS}, "epoch": epoch})
    conn.executemany(_EPOCH_INSERT, rows)
    record_epochs(conn, run_id, updates)


def _number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def best_of(row: dict[str, Any]) -> tuple[int | None, str, float | None]:
    """(best epoch, what it was selected by, its value) of a run row: its select_by, or that
    value's fallback where the run had none of it (the rule of core.store.best)."""
    select_by = row.get("select_by") or KEYS["select_by"].default
    fallback = SELECT_FALLBACK.get(select_by)
    if fallback and row.get(f"best_{select_by}") is None \
            and row.get(f"best_{fallback}") is not None:
        select_by = fallback
    return row.get("best_epoch"), select_by, row.get("best_value")


def settings_of(row: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """key -> (value, where it came from) of a run row: the experiment's own params, the
    schema defaults its recipe took, and the settings found only as it ran (a checkpoint's)."""
    out: dict[str, tuple[Any, str]] = {k: (v, "default") for k, v in
                                       (row.get("defaults") or {}).items()}
    out |= {k: (v, "experiment") for k, v in (row.get("params") or {}).items()}
    for k, pair in (row.get("settings_used") or {}).items():
        if isinstance(pair, list) and len(pair) == 2:
            out[k] = (pair[0], pair[1] or "experiment")
    return out


def _on_settings(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    """The settings a run used that were found only when it ran (a checkpoint's inference
    settings), each with where it came from; merged over what earlier events said."""
    row = conn.execute("SELECT settings_used FROM runs WHERE id = ?", (run_id,)).fetchone()
    used = json.loads(row[0]) if row and row[0] else {}
    origin = ev.get("origin", {})
    used |= {k: [v, origin.get(k)] for k, v in ev["used"].items()}
    conn.execute("UPDATE runs SET settings_used = ? WHERE id = ?",
                 (json.dumps(used, sort_keys=True), run_id))


def _on_early_stop(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    conn.execute("UPDATE runs SET early_stop = ? WHERE id = ?", (early_stop_text(ev), run_id))


def early_stop_text(ev: dict[str, Any]) -> str:
    """`after epoch 45: no better val_sdr for 5 epochs (best 7.1448 at epoch 38)`."""
    return (f"after epoch {ev['epoch']}: no better {ev['select_by']} for {ev['patience']} "
            f"epochs (best {ev['best_value']:.4f} at epoch {ev['best_epoch']})")


# Metrics whose best value is kept on the run row for listings.
# (name, stem, split) -> column. Accuracy is the noise recipes' held-out score, whichever split
# holds it out; the validation SDR and the test SDR each have their own column, never mixed.
_ROW_METRICS = {
    **{("accuracy", None, split): "accuracy" for split in (None, "val", "test")},
    ("sdr", "mean", None): "sdr", ("sdr", "mean", "val"): "sdr",
    ("sdr", "mean", "test"): "test_sdr",
}


def _on_metric(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO metrics (run, name, value, stem, track, split, epoch, definition,"
        " gains, caveat, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run_id,
            ev["name"],
            ev["value"],
            ev.get("stem"),
            ev.get("track"),
            ev.get("split"),
            ev.get("epoch"),
            ev.get("definition"),
            ev.get("gains"),
            ev.get("caveat"),
            ev["t"],
        ),
    )
    column = _ROW_METRICS.get((ev["name"], ev.get("stem"), ev.get("split")))
    if column and ev.get("track") is None:
        shown = conn.execute(
            f"UPDATE runs SET {column} = ? WHERE id = ? AND ({column} IS NULL OR {column} < ?)",
            (ev["value"], run_id, ev["value"]),
        )
        if shown.rowcount and column == "accuracy":  # the score the row shows, what it means
            conn.execute("UPDATE runs SET caveat = ? WHERE id = ?", (ev.get("caveat"), run_id))


def _on_checkpoint(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    ckpt_id = ev.get("id") or f"{run_id}/{Path(ev['path']).name}"
    conn.execute(
        "INSERT OR REPLACE INTO checkpoints (id, run, path, role, epoch, value, sha256, at, "
        "bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ckpt_id,
            run_id,
            ev["path"],
            ev.get("role"),
            ev.get("epoch"),
            ev.get("value"),
            ev.get("sha256"),
            ev["t"],
            ev.get("bytes"),
        ),
    )
    _checkpoint_bytes(conn, run_id)
    for parent in ev.get("parents", []):
        conn.execute(
            "INSERT OR REPLACE INTO lineage (child, parent, relation, weight) VALUES (?, ?, ?, ?)",
            (ckpt_id, parent["checkpoint"], parent["relation"], parent.get("weight")),
        )


def _checkpoint_bytes(conn: sqlite3.Connection, run_id: str) -> None:
    """The run's live checkpoint bytes: the sum over its checkpoints not deleted."""
    conn.execute("UPDATE runs SET checkpoint_bytes = (SELECT SUM(bytes) FROM checkpoints "
                 "WHERE run = ? AND deleted_at IS NULL) WHERE id = ?", (run_id, run_id))


def _on_checkpoint_deleted(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    """`nkd gc` (or the run's `keep_checkpoints`) deleted a checkpoint file: it stays in the
    record, marked gone, with who deleted it."""
    conn.execute("UPDATE checkpoints SET deleted_at = ?, deleted_by = ? WHERE id = ?",
                 (ev["t"], ev.get("by") or "nkd gc", ev["id"]))
    _checkpoint_bytes(conn, run_id)


def _on_annotate(conn: sqlite3.Connection, run_id: str, ev: dict[str, Any]) -> None:
    """The researcher's tags, note or archive mark: each key present replaces what was there."""
    if "tags" in ev:
        conn.execute("UPDATE runs SET tags = ? WHERE id = ?",
                     (json.dumps(ev["tags"], ensure_ascii=False) if ev["tags"] else None, run_id))
    if "note" in ev:
        conn.execute("UPDATE runs SET note = ? WHERE id = ?", (ev["note"] or None, run_id))
    if "archived" in ev:
        conn.execute("UPDATE runs SET archived = ? WHERE id = ?",
                     (1 if ev["archived"] else None, run_id))


HANDLERS: dict[str, Callable[[sqlite3.Connection, str, dict[str, Any]], None]] = {
    "run": _on_run,
    "annotate": _on_annotate,
    "status": _on_status,
    "worker": _on_worker,
    "queue": _on_queue,
    "job": _on_job,
    "epoch": _on_epoch,
    "progress": _on_progress,
    "metric": _on_metric,
    "checkpoint": _on_checkpoint,
    "checkpoint_deleted": _on_checkpoint_deleted,
    "settings": _on_settings,
    "early_stop": _on_early_stop,
}


def apply_guarded(conn: sqlite3.Connection, run_id: str, event: dict[str, Any]) -> str | None:
    """Apply one checked event inside a savepoint: an event the store cannot take (it breaks a
    constraint, names a missing row) changes nothing. Returns why it was not applied, or None.
    The one replay step of `reindex` and of the Slurm ingest."""
    handler = HANDLERS.get(event["type"])
    if handler is None:
        return None
    conn.execute("SAVEPOINT event")
    try:
        handler(conn, run_id, event)
    except (sqlite3.Error, LookupError, TypeError, ValueError) as exc:
        conn.execute("ROLLBACK TO event")
        conn.execute("RELEASE event")
        return f"{event['type']} event: {exc}"
    conn.execute("RELEASE event")
    return None
