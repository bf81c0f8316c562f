"""One sweep as `nkd sweep show` and the TUI's sweep view show it: its trials, the settings that
differ between them, each trial's metric at each rung of its halving, its status, the best so
far, and the one value per trial a parallel-coordinates chart sets against its settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from core.backends.queue.halving import Halver
from core.backends.queue.sweep_hold import paused_sweeps
from core.errors import RunError
from core.registry.keys import KEYS, SELECT_BY
from core.registry.workspace import Workspace
from core.store import Store


@dataclass
class TrialRow:
    run_id: str
    settings: dict[str, Any]  # every param it was given (the swept ones differ)
    status: str
    epoch: int
    epochs_total: int | None
    at_rungs: dict[int, float] = field(default_factory=dict)  # rung epoch -> metric there
    best_value: float | None = None  # by the run's own select_by (a sweep without halving)
    backend: str | None = None  # where it runs (None: this box)


@dataclass
class SweepSummary:
    sweep: str
    experiment: str
    trials: list[TrialRow]
    swept: list[str]  # the settings that differ between trials, by name
    halving: dict[str, Any] | None  # {metric, mode, rungs, keep}
    select_by: str  # what a sweep without halving is judged by
    paused: bool

    @property
    def metric(self) -> str:
        return str(self.halving["metric"]) if self.halving else self.select_by

    @property
    def maximize(self) -> bool:
        if self.halving:
            return self.halving["mode"] == "max"
        return bool(SELECT_BY.get(self.select_by, ("", False))[1])

    def value(self, trial: TrialRow) -> float | None:
        """The trial's metric for the chart: at the highest rung it reached (halving), else
        its best value by select_by."""
        if self.halving:
            return trial.at_rungs[max(trial.at_rungs)] if trial.at_rungs else None
        return trial.best_value

    def best(self) -> tuple[str, int | None, float] | None:
        """(trial, rung or None, value): the best at the highest rung any trial reached, or the
        best value of a sweep without halving."""
        pick = max if self.maximize else min
        if self.halving:
            for rung in sorted(self.halving["rungs"], reverse=True):
                there = [(t.at_rungs[rung], t.run_id) for t in self.trials if rung in t.at_rungs]
                if there:
                    value, run_id = pick(there)
                    return run_id, rung, value
            return None
        scored = [(t.best_value, t.run_id) for t in self.trials if t.best_value is not None]
        if not scored:
            return None
        value, run_id = pick(scored)
        return run_id, None, value


def sweep_summary(store: Store, ws: Workspace, sweep: str) -> SweepSummary:
    """The sweep's trials in the order they were made; RunError naming the known sweeps when
    there is none of that id."""
    rows = store.conn.execute(
        "SELECT id, experiment, status, epoch, epochs_total, params, best_value, select_by, "
        "backend FROM runs WHERE sweep = ? ORDER BY created_at, id", (sweep,)).fetchall()
    if not rows:
        known = [s for (s,) in store.conn.execute(
            "SELECT DISTINCT sweep FROM runs WHERE sweep IS NOT NULL ORDER BY sweep")]
        raise RunError(f"no sweep '{sweep}' in {store.path}"
                       + (f" (sweeps: {', '.join(known[-5:])})" if known else ""))
    trials, spec = Halver(ws, store).trials(sweep)
    values = {t.run_id: t.values for t in trials}
    out = [TrialRow(run_id, json.loads(params or "{}"), status, int(epoch or 0), total,
                    dict(values.get(run_id, {})), best, backend)
           for run_id, _exp, status, epoch, total, params, best, _sel, backend in rows]
    swept = sorted(k for k in set().union(*(t.settings for t in out))
                   if len({json.dumps(t.settings.get(k), sort_keys=True) for t in out}) > 1)
    select_by = rows[0][7] or KEYS["select_by"].default
    return SweepSummary(sweep, rows[0][1], out, swept, spec, select_by,
                        sweep in paused_sweeps(ws))


__all__ = ["SweepSummary", "TrialRow", "sweep_summary"]
