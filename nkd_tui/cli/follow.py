"""A run followed in the foreground: a line per epoch (and the step inside one on a terminal),
Ctrl-C stops it, a second kills it; its end said with its headline scores."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from core.backends import backend_of
from core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, NkdError
from core.registry.keys import SELECT_BY
from core.registry.workspace import Workspace
from core.store import FINAL, Store
from core.store.states import ENDED_AS_ASKED
from nkd_tui.cli.context import say_skipped, sync_slurm
from nkd_tui.format import best_text, fmt_num, scored_on

SLURM_SYNC_S = 1.0  # how often a foreground Slurm run is ingested and asked about
# The run's record (events.jsonl) is looked at every TICK_S, a stat and nothing more; the store
# is read when the record has grown within the last SETTLE_S (the store follows its record by a
# moment), and at least every POLL_S whatever the record does.
TICK_S, SETTLE_S, POLL_S = 0.005, 0.1, 0.3


def _record_mark(row: dict[str, Any]) -> tuple[int, int] | None:
    """The run's record file's size and change time: what tells a step of the run happened."""
    try:
        st = os.stat(Path(row["run_dir"]) / "events.jsonl")
    except (OSError, KeyError, TypeError):
        return None
    return st.st_size, st.st_mtime_ns


def follow_run(store: Store, ws: Workspace, run_id: str) -> int:
    """Show per-epoch progress until the run ends; Ctrl-C stops it, a second Ctrl-C kills it."""
    from core.runs.actions import kill, send
    from core.runs.progress import progress_text
    from core.runs.status import current_status

    tty = sys.stdout.isatty()
    shown: int | None = None  # the last epoch printed
    interrupts = 0
    synced = 0.0
    stepped = None
    row: dict[str, Any] = {}
    mark: tuple[int, int] | None = None  # the record as last seen, and when it last changed
    changed = read = 0.0
    while True:
        try:
            now = time.monotonic()
            if read and now - changed > SETTLE_S and now - read < POLL_S:
                time.sleep(TICK_S)  # the record is still: look again at it, not at the store
                seen = _record_mark(row)
                if seen != mark:
                    mark, changed = seen, time.monotonic()
                continue
            read = now
            row = store.get_run(run_id)
            assert row is not None
            if not backend_of(row).writes_store and time.monotonic() - synced >= SLURM_SYNC_S:
                synced = time.monotonic()
                sync_slurm(store, ws)  # a compute node writes only its folder: ingest it
                row = store.get_run(run_id) or row
            for ep in store.epochs(run_id, after=shown):
                line = epoch_line(ep, row.get("epochs_total"), row.get("select_by"))
                print(("\r\033[K" if tty else "") + line, end="" if tty else "\n", flush=True)
                shown = ep["epoch"]
            if tty and row.get("step_at") != stepped:  # inside an epoch: step k/n and the ETA
                stepped = row.get("step_at")
                text = progress_text(store.conn, run_id, time.time())
                if text:
                    print(f"\r\033[K{text}", end="", flush=True)
            status = current_status(store, ws, row)
            if status in FINAL:
                if tty:
                    print()
                code = report_end(store, run_id)
                return EXIT_INTERRUPTED if interrupts else code
            time.sleep(TICK_S)
            seen = _record_mark(row)
            if seen != mark:
                mark, changed = seen, time.monotonic()
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                print("\nstopping the run (Ctrl-C again to kill it) ...", flush=True)
                try:
                    send(store, ws, run_id, "stop")
                except NkdError as exc:
                    print(f"nkd: {exc}", file=sys.stderr)
            else:
                print(kill(store, ws, run_id, grace=0), flush=True)


def epoch_line(ep: dict[str, Any], total: int | None, select_by: str | None = None) -> str:
    """One epoch as the foreground run prints it; a run whose best epoch is chosen by another
    value than its losses (val_sdr, val_accuracy) shows that value too."""
    n = ep["epoch"]
    bar = ""
    if total:
        filled = int(20 * min(n, total) / total)
        bar = f"[{'#' * filled}{'.' * (20 - filled)}] "
    parts = [f"epoch {n}{f'/{total}' if total else ''}", bar.strip()]
    parts.append(f"train {fmt_num(ep['train_loss'])}")
    if ep["val_loss"] is not None:
        parts.append(f"val {fmt_num(ep['val_loss'])}")
    field = SELECT_BY.get(select_by or "", ("",))[0]
    if field and field not in ep:  # a value kept in the epoch's extra, not a loss column
        value = json.loads(ep.get("extra") or "{}").get(field)
        if isinstance(value, int | float):
            parts.append(f"{field} {fmt_num(value)}")
    if ep["lr"] is not None:
        parts.append(f"lr {ep['lr']:.2g}")
    if ep.get("seconds"):
        parts.append(f"{ep['seconds']:.1f} s/epoch")
    return "  ".join(p for p in parts if p)


HEADLINE = {("accuracy", None), ("macro_f1", None), ("sdr", "mean")}  # said when a run ends


def report_end(store: Store, run_id: str) -> int:
    row = store.get_run(run_id)
    assert row is not None
    best = f", {best_text(row)}" if best_text(row) else ""
    error = f": {row['error']}" if row.get("error") else ""
    print(f"{run_id}: {row['status']}{best}{error}")
    if row.get("early_stop"):
        print(f"  stopped early {row['early_stop']}")
    headline = [m for m in store.metrics(run_id) if not m["track"] and m["epoch"] is None
                and ((m["name"], m["stem"]) in HEADLINE)]
    if headline:  # an evaluation has no epochs to show: its scores, by split
        print("  " + ", ".join(f"{m['name']}{' ' + m['stem'] if m['stem'] else ''} "
                               f"{fmt_num(m['value'])} ({scored_on(m)})" for m in headline))
    return EXIT_OK if row["status"] in ENDED_AS_ASKED else EXIT_RUN_FAILED


def started(store: Store, ws: Workspace, launched: Any, detach: bool, what: str = "",
            notes: list[str] | tuple[str, ...] = ()) -> int:
    """A run just launched: its skipped parts and notices (one `nkd:` line each), the line
    that names it and its folder, then its progress followed unless `detach`."""
    say_skipped(launched)
    for line in notes:
        print(f"nkd: {launched.run_id}: {line}", file=sys.stderr)
    if launched.notice:
        print(f"nkd: {launched.notice}", file=sys.stderr)
    on = f" on GPU {launched.gpus}" if launched.gpus else ""
    how = f"started (pid {launched.pid}){on}" if launched.pid else "submitted"
    print(f"{launched.run_id}: {what}{how}, folder {launched.run_dir}")
    return 0 if detach else follow_run(store, ws, launched.run_id)
