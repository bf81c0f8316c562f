"""What made a run, on the command line: `nkd diff RUN_A RUN_B` (settings, code, data and
environment side by side) and `nkd rerun RUN` (the same experiment and settings again, refused
when the code or the data differ unless `--anyway`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from core.errors import EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from core.runs.run_diff import diff_lines
    from core.runs.status import resolve_run
    from core.util.text import visible
    from nkd_tui.cli.context import open_workspace

    _ws, store = open_workspace(args)
    a, b = (store.get_run(resolve_run(store, ref)) for ref in (args.run_a, args.run_b))
    assert a is not None and b is not None
    for line in diff_lines(a, b):
        print(visible(line, keep="\t"))  # a diff's text as it is, never a control sequence
    return EXIT_OK


def cmd_rerun(args: argparse.Namespace) -> int:
    from core.runs.rerun import rerun
    from core.runs.status import resolve_run
    from nkd_tui.cli.context import open_registry
    from nkd_tui.cli.follow import started

    registry, ws, store = open_registry(args)
    run = store.get_run(resolve_run(store, args.run))
    assert run is not None
    launched, found = rerun(registry, store, run, anyway=args.anyway)
    # with --anyway, what differed (the new run records it too)
    return started(store, ws, launched, args.detach, f"rerun of {run['id']}, ", found)


def add_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    p = add(sub, "diff", help="what differs between two runs: settings, code, data, environment")
    p.add_argument("run_a", metavar="RUN_A", help="run id, unique prefix, or experiment")
    p.add_argument("run_b", metavar="RUN_B", help="run id, unique prefix, or experiment")
    p.set_defaults(func=cmd_diff)
    p = add(sub, "rerun", help="the same experiment with a run's recorded settings, again; "
            "refused when the code or data differ unless --anyway")
    p.add_argument("run", help="run id, unique prefix, or experiment (its latest run)")
    p.add_argument("--anyway", action="store_true",
                   help="start it even when the code or data differ (the new run records how)")
    p.add_argument("--detach", "-d", action="store_true",
                   help="start it and return instead of following it")
    p.set_defaults(func=cmd_rerun)
