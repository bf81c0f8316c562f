"""`nkd sweep show ID` (a sweep's trials, what each was given, its metric at each rung, promoted,
pruned or running, and the best so far), `nkd sweep pause ID` (its live trials paused, its
queued ones held), `nkd sweep resume ID` (those paused or held going on, its scheduler started
again after a restart or a reboot, and what can be promoted or pruned done now), and `nkd sweep
cancel | stop ID` (all its trials at once)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from core.errors import EXIT_OK, RunError


def cmd_sweep(args: argparse.Namespace) -> int:
    from core.backends.queue.halving import Halver
    from core.backends.queue.scheduler import ensure_running
    from core.runs.status import reconcile
    from nkd_tui.cli.context import open_workspace, text_table
    from nkd_tui.format import fmt_num, status_text

    ws, store = open_workspace(args)
    rows = store.conn.execute(
        "SELECT id, experiment, status, epoch, epochs_total, params, coalesce(backend, 'local') "
        "FROM runs WHERE sweep = ? ORDER BY created_at, id", (args.id,)).fetchall()
    if not rows:
        known = [s for (s,) in store.conn.execute(
            "SELECT DISTINCT sweep FROM runs WHERE sweep IS NOT NULL ORDER BY sweep")]
        raise RunError(f"no sweep '{args.id}' in {store.path}"
                       + (f" (sweeps: {', '.join(known[-5:])})" if known else ""))
    halver = Halver(ws, store)
    if args.action in ("stop", "cancel"):
        return _end(store, ws, args.id, args.action, [(r[0], r[2]) for r in rows])
    if args.action == "pause":
        return _pause(store, ws, args.id, [(r[0], r[2], r[6]) for r in rows])
    if args.action == "resume":
        reconcile(store, ws)
        went_on = _unpause(store, ws, args.id, [(r[0], r[2]) for r in rows])
        said = halver.sweep(args.id)
        for line in said:
            print(line)
        started = ensure_running(ws)
        print(f"sweep {args.id}: {went_on} paused trial(s) resumed, {len(said)} promoted or "
              f"pruned now; scheduler {'started' if started else 'running'}")
        return EXIT_OK
    trials, spec = halver.trials(args.id)
    by_id = {t.run_id: t for t in trials}
    params = {r[0]: json.loads(r[5] or "{}") for r in rows}
    swept = sorted(k for k in set().union(*params.values())
                   if len({json.dumps(p.get(k), sort_keys=True) for p in params.values()}) > 1)
    rungs = list(spec["rungs"]) if spec else []
    head = f"sweep {args.id}: {rows[0][1]}, {len(rows)} trials"
    if spec:
        head += (f"; halving by {spec['metric']} ({spec['mode']}), rungs {rungs}, "
                 f"keep {spec['keep']:g}")
    from core.backends.queue.sweep_hold import paused_sweeps

    if args.id in paused_sweeps(ws):
        head += f"; paused (nkd sweep resume {args.id})"
    print(head)
    table = []
    for run_id, _exp, status, epoch, total, _params, _backend in rows:
        values = by_id[run_id].values if run_id in by_id else {}
        table.append([run_id, " ".join(f"{k}={_show(params[run_id].get(k))}" for k in swept),
                      *(fmt_num(values.get(r)) for r in rungs),
                      f"{epoch or 0}/{total or '-'}", status_text(status)])
    print(text_table(table, ["TRIAL", "SETTINGS", *(f"RUNG {r}" for r in rungs), "EPOCH",
                             "STATUS"]))
    best = _best(trials, spec) if spec else None
    if best is not None:
        run_id, rung, value = best
        print(f"best so far: {run_id}, {spec['metric']} {value:.4g} at rung {rung}")
    return EXIT_OK


def _end(store: Any, ws: Any, sweep: str, action: str, trials: list[tuple[str, str]]) -> int:
    """`cancel`: every queued trial out of the queue; `stop`: those, and the live ones stopped,
    so that nothing of the sweep trains on (its ended trials keep their records)."""
    from core.runs.actions import cancel, send
    from core.store.states import LIVE, MAY

    done = 0
    for run_id, status in trials:
        if status in MAY["cancel"]:
            print(cancel(store, ws, run_id))
            done += 1
        elif action == "stop" and status in LIVE:
            print(send(store, ws, run_id, "stop"))
            done += 1
    what = "cancelled or stopped" if action == "stop" else "cancelled"
    print(f"sweep {sweep}: {done} trial(s) {what}")
    return EXIT_OK


def _pause(store: Any, ws: Any, sweep: str, trials: list[tuple[str, str, str]]) -> int:
    """Every live trial paused where it is (its GPU kept), and those queued here held: nothing
    of the sweep starts until `nkd sweep resume`. A trial pending in Slurm's queue is not held
    (`nkd sweep cancel` takes it out)."""
    from core.backends.queue.sweep_hold import set_sweep_paused
    from core.runs.actions import send
    from core.store.states import MAY, WAITING, Status

    set_sweep_paused(ws, sweep, True)
    paused = 0
    for run_id, status, _backend in trials:
        if status in MAY["pause"] and status not in (Status.PAUSED, Status.STOPPING,
                                                     Status.SUSPENDING):
            try:
                print(send(store, ws, run_id, "pause"))
                paused += 1
            except RunError as exc:  # ended meanwhile: the others are paused all the same
                print(f"nkd: {exc}")
    held = sum(status in WAITING and backend == "local" for _, status, backend in trials)
    pending = sum(status in WAITING and backend != "local" for _, status, backend in trials)
    print(f"sweep {sweep}: {paused} trial(s) paused, {held} queued held (nkd sweep resume "
          f"{sweep} goes on)" + (f"; {pending} pending in Slurm not held" if pending else ""))
    return EXIT_OK


def _unpause(store: Any, ws: Any, sweep: str, trials: list[tuple[str, str]]) -> int:
    """The hold lifted and every paused trial resumed; returns how many were."""
    from core.backends.queue.sweep_hold import set_sweep_paused
    from core.runs.actions import send
    from core.store.states import Status

    set_sweep_paused(ws, sweep, False)
    resumed = 0
    for run_id, status in trials:
        if status == Status.PAUSED:
            try:
                print(send(store, ws, run_id, "resume"))
                resumed += 1
            except RunError as exc:
                print(f"nkd: {exc}")
    return resumed


def _best(trials: list[Any], spec: dict[str, Any]) -> tuple[str, int, float] | None:
    """The trial with the best metric at the highest rung any trial reached."""
    for rung in sorted(spec["rungs"], reverse=True):
        there = [(t.values[rung], t.run_id) for t in trials if rung in t.values]
        if there:
            value, run_id = (max if spec["mode"] == "max" else min)(there)
            return run_id, rung, value
    return None


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def add_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    p = add(sub, "sweep", help="a sweep's trials by rung (show); its live trials paused and "
            "queued ones held (pause); those going on, and its halving after a restart "
            "(resume); its queued trials cancelled (cancel), and its running ones stopped too "
            "(stop)")
    p.add_argument("action", choices=("show", "pause", "resume", "cancel", "stop"))
    p.add_argument("id", help="the sweep's id (nkd run prints it; nkd ps --sweep lists runs)")
    p.set_defaults(func=cmd_sweep)
