"""Successive halving of a sweep's trials, run by the queue's scheduler (asynchronous, as ASHA).

Each trial of a halving sweep trains to its rung (`rung.json` in its run folder says until
which epoch; the training loop suspends the trial there, its state saved). A trial waiting at a
rung is promoted as soon as enough trials have reported for it to be sure of a place in the
best `keep` share (`decide`): its rung moves to the next (or to the end after the last) and it
goes back to the queue to resume from its saved state, on whichever GPU is free. A trial sure
not to be among them ends `pruned`, keeping its record and checkpoints. A promotion is a status
change under the store's write lock from `suspended`, so a restarted scheduler never promotes a
trial twice.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.backends import backend_named, backend_of
from core.backends.base import Backend
from core.errors import NkdError
from core.registry.workspace import Workspace
from core.store import Store
from core.store.states import ACTIVE, FINAL, LIVE, MAY, Status
from core.store.transition import transition
from core.util.files import atomic_write_json, read_json

RUNG_FILE = "rung.json"


def rung_until(run_dir: Path) -> int | None:
    """The epoch at which the trial is to be suspended for its sweep to decide, or None."""
    try:
        until = read_json(run_dir / RUNG_FILE).get("until")
    except (OSError, ValueError, AttributeError):
        return None
    return int(until) if isinstance(until, int) and not isinstance(until, bool) else None


def set_rung(run_dir: Path, until: int | None) -> None:
    atomic_write_json(run_dir / RUNG_FILE, {"until": until})


@dataclass
class Trial:
    run_id: str
    status: str
    epoch: int  # epochs trained
    until: int | None  # the rung it trains to now (None: to the end)
    values: dict[int, float] = field(default_factory=dict)  # rung epoch -> metric there


@dataclass
class Decisions:
    promote: list[tuple[str, int | None]] = field(default_factory=list)  # run, its next rung
    prune: list[tuple[str, str]] = field(default_factory=list)  # run, why


def decide(trials: list[Trial], rungs: tuple[int, ...], keep: float, maximize: bool
           ) -> Decisions:
    """What to promote and what to prune now (pure: the store is read and written elsewhere).

    At each rung the quota is the `keep` share (rounded, at least one) of the trials that
    reached it or still may. A trial waiting there is promoted as soon as it is sure to be
    within the quota (those already better, and those yet to report, are fewer than the quota),
    and pruned as soon as it is sure not to be (as many already better): no trial waits for the
    slowest unless its place depends on it, and exactly the quota goes on."""
    out = Decisions()
    for k, rung in enumerate(rungs):
        nxt = rungs[k + 1] if k + 1 < len(rungs) else None
        for t in trials:  # waiting at the rung without its value: nothing would ever decide
            if t.status == Status.SUSPENDED and t.epoch == rung and rung not in t.values:
                out.prune.append((t.run_id, f"pruned at rung {rung}: it recorded no value of "
                                            f"the sweep's metric there"))
        reached = [t for t in trials if rung in t.values]
        pending = [t for t in trials if rung not in t.values and t.status not in FINAL]
        quota = max(1, round((len(reached) + len(pending)) * keep))
        ranked = sorted(reached, key=lambda t: (-t.values[rung] if maximize
                                                else t.values[rung], t.run_id))
        for place, t in enumerate(ranked):  # `place` trials are better than this one
            if t.status != Status.SUSPENDED or t.epoch != rung:
                continue  # promoted already, or not waiting here
            if place + len(pending) < quota:
                out.promote.append((t.run_id, nxt))
            elif place >= quota:
                out.prune.append((t.run_id, f"pruned at rung {rung}: {place + 1} of "
                                            f"{len(reached) + len(pending)} (the best {quota} "
                                            f"go on)"))
    return out


class Halver:
    """The scheduler's view of the workspace's halving sweeps."""

    def __init__(self, ws: Workspace, store: Store) -> None:
        self.ws, self.store = ws, store
        self._specs: dict[str, dict[str, Any] | None] = {}  # sweep -> its halving, or None

    def spec(self, sweep: str, run_dir: Path) -> dict[str, Any] | None:
        if sweep not in self._specs:
            try:
                self._specs[sweep] = read_json(run_dir / "config.json").get("halving")
            except (OSError, ValueError):
                return None
        return self._specs[sweep]

    def busy(self) -> bool:
        """Whether a sweep's trial is live, here or waiting on another backend's queue: it may
        reach a rung the scheduler must act on."""
        marks = ", ".join("?" * len(LIVE))
        return self.store.conn.execute(
            f"SELECT 1 FROM runs WHERE sweep IS NOT NULL AND status IN ({marks}) LIMIT 1",
            tuple(LIVE)).fetchone() is not None or bool(self.remote())

    def remote(self) -> list[Backend]:
        """The backends (Slurm) whose halving trials are active and reach the store only when
        their events are ingested: the scheduler syncs them, to see those trials at their
        rungs."""
        marks = ", ".join("?" * len(ACTIVE))
        found: dict[str, Backend] = {}
        for sweep, name, run_dir, run_id in self.store.conn.execute(
                f"SELECT sweep, backend, run_dir, id FROM runs WHERE sweep IS NOT NULL AND "
                f"backend IS NOT NULL AND status IN ({marks}) GROUP BY sweep, backend",
                tuple(ACTIVE)):
            backend = backend_named(name)
            if not backend.writes_store and self.spec(sweep, Path(run_dir or
                                                                  self.ws.run_dir(run_id))):
                found[name] = backend
        return list(found.values())

    def cycle(self) -> list[str]:
        """Promote and prune what can be now; one line per change."""
        rows = self.store.conn.execute(
            "SELECT DISTINCT sweep FROM runs WHERE status = ? AND sweep IS NOT NULL",
            (Status.SUSPENDED,)).fetchall()
        said = []
        for (sweep,) in rows:
            said += self.sweep(sweep)
        return said

    def trials(self, sweep: str) -> tuple[list[Trial], dict[str, Any] | None]:
        """The sweep's trials with their metric at each rung, and its halving."""
        if sweep in self._specs and self._specs[sweep] is None:
            return [], None  # a sweep without halving (a trial of it suspended by hand)
        rows = self.store.conn.execute(
            "SELECT id, status, epoch, run_dir FROM runs WHERE sweep = ? ORDER BY created_at",
            (sweep,)).fetchall()
        if not rows:
            return [], None
        spec = self.spec(sweep, Path(rows[0][3] or self.ws.run_dir(rows[0][0])))
        if not spec:
            return [], None
        metric, rungs = spec["metric"], tuple(spec["rungs"])
        trials = {run: Trial(run, status, int(epoch or 0), rung_until(
            Path(run_dir or self.ws.run_dir(run)))) for run, status, epoch, run_dir in rows}
        marks = ", ".join("?" * len(rungs))
        for run, epoch, train, val, extra in self.store.conn.execute(
                f"SELECT e.run, e.epoch, e.train_loss, e.val_loss, e.extra FROM epochs e "
                f"JOIN runs r ON r.id = e.run WHERE r.sweep = ? AND e.epoch IN ({marks})",
                (sweep, *rungs)):
            value = {"train_loss": train, "val_loss": val}.get(metric)
            if value is None and extra:
                value = json.loads(extra).get(metric)
            if isinstance(value, int | float) and math.isfinite(value):
                trials[run].values[int(epoch)] = float(value)
        return list(trials.values()), spec

    def sweep(self, sweep: str) -> list[str]:
        trials, spec = self.trials(sweep)
        if not spec:
            return []
        chosen = decide(trials, tuple(spec["rungs"]), float(spec["keep"]),
                        spec["mode"] == "max")
        said = []
        for run_id, nxt in chosen.promote:
            run_dir = self.ws.run_dir(run_id)
            set_rung(run_dir, nxt)
            if transition(self.store, self.ws, run_id, MAY["resume_saved"],
                          {"type": "status", "status": Status.QUEUED, "resume": 1,
                           "by": f"halving: promoted to {f'rung {nxt}' if nxt else 'the end'}"}):
                said.append(f"{run_id}: promoted to {f'rung {nxt}' if nxt else 'the end'}"
                            + _backend_done(self.store, self.ws, run_id, True))
        for run_id, why in chosen.prune:
            said += prune(self.store, self.ws, run_id, why)
        return said


def _backend_done(store: Store, ws: Workspace, run_id: str, promoted: bool) -> str:
    """What the trial's backend did once it was promoted or pruned (Slurm: its held job
    released or cancelled), as the end of the line that says so."""
    row = store.get_run(run_id)
    try:
        done = backend_of(row).rung_decided(store, ws, row, promoted) if row else ""
    except NkdError as exc:
        done = f"but {exc}"
    return f" ({done})" if done else ""


def prune(store: Store, ws: Workspace, run_id: str, why: str) -> list[str]:
    """A trial suspended at its rung ends `pruned` (its record and checkpoints kept), and its
    backend lets go of it; the line that says so, or none when it was not suspended."""
    if not transition(store, ws, run_id, MAY["prune"],
                      {"type": "status", "status": Status.PRUNED, "error": why,
                       "t": time.time()}):
        return []
    return [f"{run_id}: {why}" + _backend_done(store, ws, run_id, False)]


__all__ = ["RUNG_FILE", "Decisions", "Halver", "Trial", "decide", "prune", "rung_until",
           "set_rung"]
