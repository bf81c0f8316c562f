"""Disk, on the command line: `nkd du` (sizes, largest first, and the disk's free space) and
`nkd gc` (the checkpoints of ended runs that nothing needs: a dry run unless --yes)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from core.errors import EXIT_OK


def cmd_du(args: argparse.Namespace) -> int:
    from nkd_tui.cli.context import open_workspace, text_table
    from nkd_tui.format import fmt_bytes

    ws, store = open_workspace(args)
    shares = store.cache_shares()
    runs = store.conn.execute(
        "SELECT id, experiment, status, COALESCE(checkpoint_bytes, 0), COALESCE(folder_bytes, 0) "
        "FROM runs").fetchall()
    # run or experiment -> [runs, checkpoints, folder, share of the caches]
    sums: dict[str, list[int]] = {}
    about: dict[str, tuple[str, str]] = {}
    for run, experiment, status, ckpt, folder in runs:
        key = run if args.by == "run" else experiment
        about[key] = (experiment, status)
        got = sums.setdefault(key, [0, 0, 0, 0])
        for i, value in enumerate((1, ckpt, folder, shares.get(run, (0,))[0])):
            got[i] += value
    order = sorted(sums, key=lambda k: (-sum(sums[k][1:]), k))
    if args.by == "run":
        table = [[k, *about[k], *(fmt_bytes(v) for v in sums[k][1:]), fmt_bytes(sum(sums[k][1:]))]
                 for k in order]
        header = ["RUN", "EXPERIMENT", "STATUS", "CHECKPOINTS", "FOLDER", "CACHES", "SIZE"]
    else:
        table = [[k, str(sums[k][0]), *(fmt_bytes(v) for v in sums[k][1:]),
                  fmt_bytes(sum(sums[k][1:]))] for k in order]
        header = ["EXPERIMENT", "RUNS", "CHECKPOINTS", "FOLDERS", "CACHES", "SIZE"]
    print(text_table(table, header) if table else "no runs yet")
    total = sum(sum(v[1:]) for v in sums.values())
    where = ws.checkpoints_dir if ws.checkpoints_dir.exists() else ws.root
    import shutil  # on use: every command imports this module to build its parser

    free = shutil.disk_usage(where).free
    print(f"\nworkspace: {fmt_bytes(total)} in {len(sums)} "
          f"{'runs' if args.by == 'run' else 'experiments'} (CACHES: each run's share of the "
          f"prepared audio and features it used); {fmt_bytes(free)} free on the disk of {where}")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    from core.runs import gc
    from nkd_tui.cli.context import open_workspace, text_table
    from nkd_tui.format import fmt_bytes

    ws, store = open_workspace(args)
    statuses = [s.strip() for s in args.status.split(",") if s.strip()] if args.status else None
    keep = [s.strip() for s in args.keep.split(",") if s.strip()] if args.keep else None
    chosen = gc.plan(store, ws, args.older, args.experiment, statuses, keep)
    if chosen.delete:
        print(text_table([[c.run, c.path.name, c.role, fmt_bytes(c.bytes), c.why]
                          for c in chosen.delete], ["RUN", "CHECKPOINT", "ROLE", "SIZE", "WHY"]))
    kept = len(chosen.kept)
    if not args.yes:
        print(f"would free {fmt_bytes(chosen.bytes)} in {len(chosen.delete)} checkpoints; "
              f"{kept} kept (a lineage edge needs them, #keep, live runs, --keep); dry run: "
              f"nothing deleted, --yes deletes")
        return EXIT_OK
    freed = gc.run(store, ws, chosen)
    print(f"deleted {len(chosen.delete)} checkpoints, freed {fmt_bytes(freed)}; {kept} kept")
    return EXIT_OK


def add_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    p = add(sub, "du", help="sizes on disk, largest first, and the disk's free space")
    p.add_argument("--by", choices=("experiment", "run"), default="experiment")
    p.set_defaults(func=cmd_du)
    p = add(sub, "gc", help="delete ended runs' checkpoints that no lineage edge needs "
            "(a dry run unless --yes)")
    p.add_argument("--older", metavar="AGE", help="runs that ended more than AGE ago (30d, 12h)")
    p.add_argument("--experiment", metavar="NAME", help="only this experiment's runs")
    p.add_argument("--status", metavar="S,...", help="only runs that ended so (failed,stopped)")
    p.add_argument("--keep", metavar="ROLE,...",
                   help="keep these roles of each run (best,last,epoch)")
    p.add_argument("--yes", action="store_true", help="delete (the default only lists)")
    p.set_defaults(func=cmd_gc)
