"""`nkd run` (one run, a chain, a sweep; now or queued) and `nkd queue`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING, Any

from core.errors import EXIT_OK, NkdError
from core.registry.keys import KEYS
from core.store.states import Status

if TYPE_CHECKING:
    from core.backends.prestart import Prestarted


def cmd_run(args: argparse.Namespace) -> int:
    from nkd_tui.cli.context import registry_path
    from nkd_tui.cli.early import prestart, starts_now

    early = getattr(args, "prestarted", None)  # the `nkd` command's, for what it guessed
    if early is None and starts_now(args):  # main called as a function: started here
        early = prestart(registry_path(args), args.experiment[0])
    try:
        return _run(args, early)
    finally:
        if early is not None:
            early.cancel()  # nothing, once it was released


def _run(args: argparse.Namespace, early: Prestarted | None) -> int:
    from core.backends import backend_named
    from core.runs.launch import launch_experiment
    from core.runs.plan import make_plan, pin
    from core.runs.status import resolve_run
    from nkd_tui.cli.context import open_registry, say_skipped
    from nkd_tui.cli.follow import follow_run, started

    registry, ws, store = open_registry(args)
    after = [resolve_run(store, ref) for ref in args.after or []]
    sets = list(args.set or [])
    if args.on:
        sets.append(f"backend={args.on}")
    plan = make_plan(registry, args.experiment, sets, after, args.sweep_name, args.queue,
                     args.trials, args.draw_seed)
    if args.priority is not None:
        for planned in plan.runs:
            planned.experiment = dataclasses.replace(
                planned.experiment, params={**planned.experiment.params,
                                            "priority": args.priority})
    backend = backend_named(plan.runs[0].experiment.params.get("backend"))
    if not plan.queued and not backend.starts_queued:
        exp = plan.runs[0].experiment
        fits = early is not None and backend.prestarts and early.experiment == exp.name
        launched = launch_experiment(registry, exp, store=store,
                                     prestarted=early if fits else None)
        return started(store, ws, launched, args.detach)
    _notice_without_gpus(plan)
    ids: list[str] = []
    for planned in plan.runs:
        exp = pin(planned.experiment, {k: ids[i] for k, i in planned.pinned.items()})
        waits = plan.after + [ids[i] for i in planned.parents]
        launched = launch_experiment(registry, exp, store=store, queued=True, after=waits,
                                     sweep=planned.sweep, halving=planned.halving.as_dict()
                                     if planned.halving else None)
        ids.append(launched.run_id)
        say_skipped(launched)
        swept = " ".join(planned.overrides) if planned.sweep else ""
        wait = f" after {', '.join(waits)}" if waits else ""
        where = f" as {launched.notice}" if launched.notice else ""
        print(f"{launched.run_id}: queued{where}{wait}{'  ' + swept if swept else ''}")
    for sweep in plan.sweeps:
        print(f"sweep {sweep}: {sum(p.sweep == sweep for p in plan.runs)} runs "
              f"(nkd ps --sweep {sweep})")
    # the workspace's scheduler starts this box's queued runs, and decides halving sweeps
    # wherever their trials run
    if any(not backend_named(p.experiment.params.get("backend")).starts_queued
           or p.halving for p in plan.runs):
        from core.backends.queue.scheduler import ensure_running

        ensure_running(ws)
    if backend.starts_queued and len(ids) == 1 and not args.detach and not plan.after:
        return follow_run(store, ws, ids[0])
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    """Ingest Slurm runs' new events and ask squeue about their jobs (what `nkd ps` and the
    TUI do on their own), for scripts and cron."""
    from core.backends import sync_all
    from nkd_tui.cli.context import open_workspace

    ws, store = open_workspace(args)
    lost = sync_all(store, ws)
    print(f"synced; {len(lost)} run(s) found lost" + (f": {', '.join(lost)}" if lost else ""))
    return EXIT_OK


def _notice_without_gpus(plan: Any) -> None:
    """On a box without GPUs a run's `gpus` is ignored: said once for the whole command."""
    from core.backends.gpus import GpuError, read_gpus
    from core.errors import RunError

    asking = sorted({p.experiment.name for p in plan.runs if p.experiment.params.get("gpus")})
    if not asking:
        return
    try:
        if read_gpus():
            return
    except GpuError as exc:
        raise RunError(str(exc)) from None
    print(f"nkd: this box has no GPU: 'gpus' of {', '.join(asking)} is ignored here; queued "
          f"runs take slots ([queue] max_running)", file=sys.stderr)


def cmd_queue(args: argparse.Namespace) -> int:
    from core.backends.queue.scheduler import Queue, ensure_running, is_running, paused, set_paused
    from core.runs.actions import cancel, set_priority
    from core.runs.status import resolve_run
    from nkd_tui.cli.context import open_workspace

    ws, store = open_workspace(args)
    action = args.action or "list"
    if action in ("pause", "resume"):
        set_paused(ws, action == "pause")
        print(f"queue {'held: nothing new starts' if action == 'pause' else 'resumed'}")
        if action == "resume":
            ensure_running(ws)
        return EXIT_OK
    if action != "list":
        if not args.run:
            raise NkdError(f"nkd queue {action}: which run?")
        run_id = resolve_run(store, args.run)
        if action == "cancel":
            print(cancel(store, ws, run_id))
        elif action == "top":
            print(set_priority(store, ws, run_id, None))
        else:
            if args.priority is None:
                raise NkdError("nkd queue priority RUN N: give the priority N (an integer)")
            print(set_priority(store, ws, run_id, args.priority))
        return EXIT_OK
    decisions = Queue(ws, store).decide()
    if decisions and not is_running(ws) and not paused(ws):
        ensure_running(ws)  # e.g. after the scheduler was killed: nothing queued is forgotten
    rows: list[dict[str, Any]] = []
    for n, d in enumerate(decisions, 1):
        state = {"start": "starting now", Status.BLOCKED: "blocked: " + d.reason}.get(
            d.state, d.reason)
        rows.append({"position": n, "run": d.row["id"], "priority": d.row["priority"] or 0,
                     "sweep": d.row.get("sweep"), "waits": state})
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    head = "queue held (nkd queue resume)" if paused(ws) else "queue"
    print(f"{head}: {len(rows)} queued; scheduler {'running' if is_running(ws) else 'idle'}")
    for r in rows:
        print(f"{r['position']:>3}  {r['run']:<40} p{r['priority']:<3} {r['waits']}")
    return EXIT_OK


def add_parsers(add: Any, sub: Any) -> None:
    """`run` and `queue`, for build_parser."""
    p = add(sub, "run", help="start runs: one now, or a chain or sweep through the queue")
    p.add_argument("experiment", nargs="+", help="experiments (a chain, in order) or a sweep")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a setting; a comma list or range(a,b,step) sweeps it, "
                        "loguniform(a,b) and friends draw it (--trials)")
    p.add_argument("--queue", "-q", action="store_true",
                   help="wait in the queue for free GPUs (chains and sweeps always do)")
    p.add_argument("--after", action="append", metavar="RUN",
                   help="start only after this run (or experiment's latest run) finished")
    p.add_argument("--priority", type=int, help="queue priority (higher first)")
    p.add_argument("--sweep-name", help="the sweep's id (default <experiment>_sweep_<time>)")
    p.add_argument("--trials", type=int, metavar="N",
                   help="draw N trials from the --set values that are distributions "
                        "(uniform(a,b), loguniform(a,b), int(a,b), [a list])")
    p.add_argument("--draw-seed", type=int, default=0, metavar="S",
                   help="the seed of those draws (default 0)")
    p.add_argument("--on", choices=list(KEYS["backend"].choices),
                   help="where to run (default: the experiment's backend, else this box)")
    p.add_argument("--detach", "-d", action="store_true", help="return at once")
    p.set_defaults(func=cmd_run)

    add(sub, "sync", help="ingest Slurm runs' new events and their jobs' states").set_defaults(
        func=cmd_sync)

    p = add(sub, "queue", help="queued runs and why each waits; cancel, top, priority, hold")
    p.add_argument("action", nargs="?",
                   choices=["list", "cancel", "top", "priority", "pause", "resume"])
    p.add_argument("run", nargs="?", help="run id, prefix or experiment")
    p.add_argument("priority", nargs="?", type=int, help="for `priority`: the new priority")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue)

