"""How runs read on screen, shared by the command line and the TUI."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from core.store.states import Status
from core.util.text import fmt_bytes  # noqa: F401 - the TUI's size cells

S = Status
STATUS_SYMBOL: dict[str, str] = {
    S.QUEUED: "…", S.STARTING: "…", S.RUNNING: "▶", S.PAUSED: "⏸", S.STOPPING: "■",
    S.SUSPENDING: "■", S.SUSPENDED: "⏾", S.FINISHED: "✓", S.STOPPED: "■", S.FAILED: "✗",
    S.KILLED: "✗", S.LOST: "?", S.BLOCKED: "⊘", S.CANCELLED: "■", S.PRUNED: "✂",
}


def status_text(status: str) -> str:
    """`▶ running`; a queued run's status may carry its position (`queued #2`)."""
    return f"{STATUS_SYMBOL.get(status.split(' ', 1)[0], ' ')} {status}"


def fmt_time(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%m-%d %H:%M") if t else "-"


def fmt_num(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def best_text(row: dict[str, Any]) -> str:
    """`best epoch 38 (val_sdr 7.145)`: the epoch whose weights are in the run's best
    checkpoint, and what it was selected by; "" before a first epoch."""
    from core.store.apply import best_of

    epoch, select_by, value = best_of(row)
    if epoch is None:
        return ""
    return f"best epoch {epoch} ({select_by} {fmt_num(value)})"


def duration(row: dict[str, Any], now: float | None = None) -> str:
    if not row.get("started_at"):
        return "-"
    seconds = int((row.get("ended_at") or now or time.time()) - row["started_at"])
    h, rest = divmod(max(seconds, 0), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def middle(name: str, width: int) -> str:
    """`name` in at most `width` characters, shortened in the middle so that names differing
    only at their ends (…_0_8_0_2 and …_0_8_0_2_gain) stay distinct."""
    if len(name) <= width or width < 5:
        return name
    tail = (width - 1) // 2
    return name[: width - 1 - tail] + "…" + name[-tail:]


def epochs_text(done: int | None, total: int | None) -> str:
    """`12/40`; `-` for a run that trains no epochs (an evaluation, a blend)."""
    if not done and not total:
        return "-"
    return f"{done or 0}/{total or '?'}"


def fit_number(text: str, width: int) -> str:
    """A number (or `done/total`) in at most `width` characters, rounded, never cut: 0.7037
    becomes 0.704, -2.702 -2.7, 3000/3000 3k/3k. Text that is no number is shortened in the
    middle as names are."""
    if len(text) <= width:
        return text
    if text.endswith(CAVEAT_MARK) and len(text) > 1:  # a marked score keeps its mark
        return fit_number(text[:-1], width - 1) + CAVEAT_MARK
    if "/" in text:
        parts = [_thousands(p) for p in text.split("/")]
        joined = "/".join(parts)
        if len(joined) <= width:
            return joined
        return fit_number(parts[0], width)  # how far it got matters most
    try:
        value = float(text)
    except ValueError:
        return middle(text, width)
    for digits in range(6, 0, -1):
        shown = f"{value:.{digits}g}"
        if len(shown) <= width:
            return shown
    shown = f"{value:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return shown if len(shown) <= width else "#" * width


def _thousands(text: str) -> str:
    """`12000` as `12k`, `3500` as `3.5k`; other text unchanged."""
    if not text.isdigit() or int(text) < 1000:
        return text
    value = int(text)
    for unit, size in (("M", 1_000_000), ("k", 1000)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return text


def short_duration(row: dict[str, Any], now: float | None = None) -> str:
    """`duration` in at most 7 characters, for a table cell: 1:05:00, then 23h59m, 4d03h."""
    if not row.get("started_at"):
        return "-"
    seconds = max(0, int((row.get("ended_at") or now or time.time()) - row["started_at"]))
    if seconds < 36_000:
        return duration(row, now)
    hours = seconds // 3600
    if hours < 100:
        return f"{hours}h{seconds % 3600 // 60:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


CAVEAT_MARK = "*"  # beside a score whose run has a caveat (`nkd ps` lists it under the table)


def in_sample(metric: dict[str, Any]) -> bool:
    """A validation value whose gain correction was fitted on those same tracks."""
    return metric.get("split") == "val" and str(metric.get("gains") or "").startswith("val:")


def scored_on(metric: dict[str, Any]) -> str:
    """Where a value was scored, in words: its split, `in-sample` where its gains were fitted
    on it (it does not compare with test), and why it means less than it looks."""
    parts = [metric.get("split") or "-"]
    if in_sample(metric):
        parts.append("in-sample: its gains were fitted on it")
    if metric.get("caveat"):
        parts.append(str(metric["caveat"]))
    return "; ".join(parts)


def score_cell(value: float | None, caveat: str | None) -> str:
    return fmt_num(value) + (CAVEAT_MARK if caveat and value is not None else "")


def run_bytes(row: dict[str, Any]) -> int | None:
    """A run's size on disk: its live checkpoints and its folder (as of its end)."""
    parts = [row.get("checkpoint_bytes"), row.get("folder_bytes")]
    return None if all(p is None for p in parts) else sum(p or 0 for p in parts)


def settings_text(settings: dict[str, Any], keys: list[str]) -> str:
    """`lr=0.0003162 hidden_size=256`: the named settings of a run, as a sweep's trial shows
    them."""
    return " ".join(f"{k}={_setting(settings.get(k))}" for k in keys)


def _setting(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def sweep_head(summary: Any) -> str:
    """A sweep's line: its experiment, trials, halving and whether it is paused."""
    spec = summary.halving
    head = f"sweep {summary.sweep}: {summary.experiment}, {len(summary.trials)} trials"
    if spec:
        head += (f"; halving by {spec['metric']} ({spec['mode']}), rungs "
                 f"{list(spec['rungs'])}, keep {spec['keep']:g}")
    if summary.paused:
        head += f"; paused (nkd sweep resume {summary.sweep})"
    return head


def sweep_table(summary: Any) -> tuple[list[str], list[list[str]]]:
    """A sweep's trials as `nkd sweep show` and the TUI's sweep view lay them out: the header
    and a row per trial (its settings, the metric at each rung, or its best value without
    halving, its epoch and status)."""
    rungs = list(summary.halving["rungs"]) if summary.halving else []
    header = ["TRIAL", "SETTINGS", *(f"RUNG {r}" for r in rungs),
              *([] if rungs else [summary.metric.upper()]), "EPOCH", "STATUS"]
    rows = [[t.run_id, settings_text(t.settings, summary.swept),
             *(fmt_num(t.at_rungs.get(r)) for r in rungs),
             *([] if rungs else [fmt_num(t.best_value)]),
             f"{t.epoch}/{t.epochs_total or '-'}", status_text(t.status)]
            for t in summary.trials]
    return header, rows


def best_trial_text(summary: Any, best: tuple[str, int | None, float] | None) -> str | None:
    """`crnn_long_…_8, val_sdr 2.583 at rung 3`: the sweep's best trial so far, or None."""
    if best is None:
        return None
    run_id, rung, value = best
    return f"{run_id}, {summary.metric} {value:.4g}" + (f" at rung {rung}" if rung is not None
                                                         else "")
