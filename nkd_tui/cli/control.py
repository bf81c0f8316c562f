"""`nkd pause/resume/suspend/stop`, `nkd restart`, `nkd kill` and `nkd reindex`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from core.errors import NkdError
from core.registry.workspace import Workspace
from nkd_tui.cli.context import open_workspace, registry_path
from nkd_tui.cli.follow import follow_run


def cmd_control(args: argparse.Namespace) -> int:
    from core.runs.actions import send
    from core.runs.status import resolve_run

    ws, store = open_workspace(args)
    print(send(store, ws, resolve_run(store, args.run), args.command))
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    from core.runs.actions import restart
    from core.runs.status import resolve_run

    ws, store = open_workspace(args)
    run_id = resolve_run(store, args.run)
    print(restart(store, ws, run_id))
    if args.detach:
        return 0
    return follow_run(store, ws, run_id)


def cmd_kill(args: argparse.Namespace) -> int:
    from core.runs.actions import kill
    from core.runs.status import resolve_run

    ws, store = open_workspace(args)
    print(kill(store, ws, resolve_run(store, args.run), grace=args.grace))
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from core.store.recover import rebuild

    path = registry_path(args)
    if not path.is_file():
        raise NkdError(f"{path}: registry file not found")
    ws = Workspace.at(path)
    report, moved = rebuild(ws)
    if moved:
        print(f"{ws.db_path}: damaged or not a run database; moved aside to {moved.name}")
    skipped = f", {report.skipped_lines} bad lines skipped" if report.skipped_lines else ""
    print(f"{ws.db_path}: rebuilt from {report.runs} run folders{skipped}")
    for line in report.lines():
        print(f"  {line}")
    return 0


def add_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    for action, text in (
        ("pause", "pause at the next batch boundary"),
        ("resume", "resume a paused or suspended run"),
        ("suspend", "checkpoint, exit and free the GPU; resume later"),
        ("stop", "finish the step, save the last checkpoint, status stopped"),
    ):
        p = add(sub, action, help=text)
        p.add_argument("run")
        p.set_defaults(func=cmd_control)
    p = add(sub, "restart", help="continue a stopped, failed or lost run from its last state")
    p.add_argument("run")
    p.add_argument("--detach", "-d", action="store_true")
    p.set_defaults(func=cmd_restart)
    p = add(sub, "kill", help="stop, then SIGKILL after a grace period")
    p.add_argument("run")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to wait for stop")
    p.set_defaults(func=cmd_kill)

    add(sub, "reindex", help="rebuild the database from runs/*/events.jsonl").set_defaults(
        func=cmd_reindex
    )
