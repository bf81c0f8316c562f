"""`nkd sweep show ID` (a sweep's trials, what each was given, its metric at each rung, promoted,
pruned or running, and the best so far), `nkd sweep pause ID` (its live trials paused, its
queued ones held), `nkd sweep resume ID` (those paused or held going on, its scheduler started
again after a restart or a reboot, and what can be promoted or pruned done now), and `nkd sweep
cancel | stop ID` (all its trials at once)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from core.errors import EXIT_OK, RunError


def cmd_sweep(args: argparse.Namespace) -> int:
    from core.backends.queue.halving import Halver
    from core.backends.queue.scheduler import ensure_running
    from core.runs.status import reconcile
    from core.runs.sweep_summary import sweep_summary
    from nkd_tui.cli.context import open_workspace

    ws, store = open_workspace(args)
    summary = sweep_summary(store, ws, args.id)
    trials = [(t.run_id, t.status) for t in summary.trials]
    if args.action in ("stop", "cancel"):
        return _end(store, ws, args.id, args.action, trials, summary.halving is not None)
    if args.action == "pause":
        from core.backends import backend_named

        # a trial waits in this box's queue, where the hold applies, or in Slurm's
        return _pause(store, ws, args.id, [(t.run_id, t.status,
                                            not backend_named(t.backend).starts_queued)
                                           for t in summary.trials])
    if args.action == "resume":
        reconcile(store, ws)
        went_on = _unpause(store, ws, args.id, trials)
        said = Halver(ws, store).sweep(args.id)
        for line in said:
            print(line)
        started = ensure_running(ws)
        print(f"sweep {args.id}: {went_on} paused trial(s) resumed, {len(said)} promoted or "
              f"pruned now; scheduler {'started' if started else 'running'}")
        return EXIT_OK
    print(show_text(summary))
    return EXIT_OK


def show_text(summary: Any) -> str:
    """`nkd sweep show`: the head line, trials × rungs, and the best so far."""
    from nkd_tui.cli.context import text_table
    from nkd_tui.format import best_trial_text, sweep_head, sweep_table

    header, rows = sweep_table(summary)
    lines = [sweep_head(summary), text_table(rows, header)]
    best = best_trial_text(summary, summary.best())
    if best:
        lines.append(f"best so far: {best}")
    return "\n".join(lines)


def _end(store: Any, ws: Any, sweep: str, action: str, trials: list[tuple[str, str]],
         halving: bool) -> int:
    """`cancel`: every queued trial out of the queue; `stop`: those, and the live ones stopped,
    so that nothing of the sweep trains on (its ended trials keep their records). A halving
    trial waiting at its rung ends `pruned` either way: nothing promotes it later."""
    from core.backends.queue.halving import prune
    from core.runs.actions import cancel, send
    from core.store.states import LIVE, MAY, Status

    done = 0
    for run_id, status in trials:
        if status in MAY["cancel"]:
            print(cancel(store, ws, run_id))
            done += 1
        elif action == "stop" and status in LIVE:
            print(send(store, ws, run_id, "stop"))
            done += 1
        elif halving and status == Status.SUSPENDED:
            ended = "stopped" if action == "stop" else "cancelled"
            for line in prune(store, ws, run_id, f"pruned: its sweep was {ended}"):
                print(line)
                done += 1
    what = "cancelled or stopped" if action == "stop" else "cancelled"
    print(f"sweep {sweep}: {done} trial(s) {what}")
    return EXIT_OK


def _pause(store: Any, ws: Any, sweep: str, trials: list[tuple[str, str, bool]]) -> int:
    """Every live trial paused where it is (its GPU kept), and those queued here held: nothing
    of the sweep starts until `nkd sweep resume`. A trial pending in Slurm's queue is not held
    (`nkd sweep cancel` takes it out)."""
    from core.backends.queue.sweep_hold import set_sweep_paused
    from core.runs.actions import send
    from core.store.states import MAY, WAITING, Status

    set_sweep_paused(ws, sweep, True)
    paused = 0
    for run_id, status, _here in trials:
        if status in MAY["pause"] and status not in (Status.PAUSED, Status.STOPPING,
                                                     Status.SUSPENDING):
            try:
                print(send(store, ws, run_id, "pause"))
                paused += 1
            except RunError as exc:  # ended meanwhile: the others are paused all the same
                print(f"nkd: {exc}")
    held = sum(status in WAITING and here for _, status, here in trials)
    pending = sum(status in WAITING and not here for _, status, here in trials)
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


def add_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    p = add(sub, "sweep", help="a sweep's trials by rung (show); its live trials paused and "
            "queued ones held (pause); those going on, and its halving after a restart "
            "(resume); its queued trials cancelled (cancel), and its running ones stopped too "
            "(stop)")
    p.add_argument("action", choices=("show", "pause", "resume", "cancel", "stop"))
    p.add_argument("id", help="the sweep's id (nkd run prints it; nkd ps --sweep lists runs)")
    p.set_defaults(func=cmd_sweep)
