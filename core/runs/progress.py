"""Where a running run is inside its epoch, and when it will end: for the TUI and `nkd run`."""

from __future__ import annotations

import sqlite3

from core.store.states import Status


def _hms(seconds: float) -> tuple[int, int, int]:
    h, rest = divmod(int(seconds + 0.5), 3600)
    return h, rest // 60, rest % 60


def fmt_eta(seconds: float) -> str:
    """Time left in full, in the units the run table's ETA uses: `45s`, `13m17s`, `1h05m12s`
    (the table's `ETA 13m` is this, cut to its first unit or two)."""
    h, m, s = _hms(seconds)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def cost_text(conn: sqlite3.Connection, run_id: str) -> str:
    """`peak 986 MiB · CPU 8.3 s` for a run whose worker has ended, else ""."""
    row = conn.execute("SELECT peak_rss_mb, cpu_s FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None or row[0] is None:
        return ""
    return f"peak {row[0]:.0f} MiB · CPU {row[1]:.1f} s"


def per_epoch_text(seconds: float) -> str:
    """An epoch's length in at most 6 characters: `12.3s`, `2.5m`, `1.2h`."""
    if seconds < 100:
        return f"{seconds:.1f}s"
    if seconds < 6000:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def mean_epoch_seconds(conn: sqlite3.Connection, run_id: str) -> float | None:
    """The mean length of a run's finished epochs (validation included), or None."""
    row = conn.execute("SELECT avg(seconds) FROM epochs WHERE run = ?", (run_id,)).fetchone()
    return row[0] if row else None


def eta_short(seconds: float) -> str:
    """Time left in at most 8 characters, for a table cell: `ETA 45s`, `ETA 12m`, `ETA 1h05`:
    `fmt_eta`'s units, its first one or two."""
    h, m, s = _hms(seconds)
    if h >= 10:
        return f"ETA {h}h"
    if h:
        return f"ETA {h}h{m:02d}"
    return f"ETA {m}m" if m else f"ETA {s}s"


def progress_text(conn: sqlite3.Connection, run_id: str, now: float) -> str:
    """`epoch 4/100 · step 120/480 · ETA 1h12m05s` for a running run that reports steps, else
    ""."""
    found = progress(conn, run_id, now)
    if found is None:
        return ""
    text, left = found
    return text if left is None else f"{text} · ETA {fmt_eta(left)}"


def progress(conn: sqlite3.Connection, run_id: str, now: float) -> tuple[str, float | None] | None:
    """(`epoch 4/100 · step 120/480 · 12.3s/epoch`, seconds left or None) for a running run
    that reports steps, else None. The time left: this epoch's remaining steps at its pace so
    far, plus the remaining epochs at the mean length of the finished ones (validation
    included), less the time since the last step was reported."""
    row = conn.execute(
        "SELECT status, epoch, epochs_total, step, steps, step_at, status_at FROM runs "
        "WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    status, epoch, total, step, steps, step_at, status_at = row
    if status != Status.RUNNING or not steps or not step or step_at is None:
        return None
    epoch = epoch or 0
    last_at, mean_s, done = conn.execute(
        "SELECT max(at), avg(seconds), count(*) FROM epochs WHERE run = ?", (run_id,)
    ).fetchone()
    began = max(last_at or 0.0, status_at or 0.0)
    text = f"epoch {epoch + 1}/{total or '?'} · step {step}/{steps}"
    if done and mean_s:
        text += f" · {per_epoch_text(mean_s)}/epoch"
    if step_at <= began:
        return text, None
    per_step = (step_at - began) / step
    left = per_step * (steps - step) - (now - step_at)
    if total:
        per_epoch = mean_s if done and mean_s else per_step * steps
        left += per_epoch * max(0, total - epoch - 1)
    return text, max(0.0, left)
