"""`nkd compare RUN RUN ...` (or `--sweep ID`): the compare screen's table on the command
line, one column per run (headline metrics, the test split in columns of its own, so an
evaluation's test SDR or accuracy stands beside the runs it scored), then the settings that
differ; `--csv` for a spreadsheet."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from nkd_tui.cli.context import open_workspace, text_table


def cmd_compare(args: argparse.Namespace) -> int:
    from core.runs.status import resolve_run
    from nkd_tui.compare import compare, fmt, param_text

    _ws, store = open_workspace(args)
    ids = list(dict.fromkeys(resolve_run(store, ref) for ref in args.runs or []))
    if args.sweep:  # the sweep's trials, in the order they were drawn
        from core.errors import RunError

        trials = [r for (r,) in store.conn.execute(
            "SELECT id FROM runs WHERE sweep = ? ORDER BY created_at, id", (args.sweep,))]
        if not trials:
            raise RunError(f"no sweep '{args.sweep}' in {store.path}")
        ids += [r for r in trials if r not in ids]
    if not ids:
        from core.errors import RunError

        raise RunError("nkd compare: which runs? (run ids, experiments, or --sweep ID)")
    table = compare(store, ids)
    if args.csv:
        print(table.to_csv(), end="")
        return 0
    header = ["", *[f"#{i}" for i in range(1, len(ids) + 1)]]
    rows = [[column, *[fmt(row[i], signed=column.startswith("Δ")) for row in table.rows]]
            for i, column in enumerate(table.columns)
            if any(row[i] is not None for row in table.rows)]
    print(text_table(rows, header))
    differ = [[key, *[param_text(v) for v in values]] for key, values, d in table.params if d]
    if differ and len(ids) > 1:
        print()
        print(text_table(differ, ["settings that differ", *header[1:]]))
    if table.made:  # code, data, environment: what differs first, marked
        print()
        made = [[f"{key} (differs)" if d else key, *[param_text(v) for v in values]]
                for key, values, d in table.made]
        print(text_table(made, ["made by", *header[1:]]))
    return 0


def add_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    p = add(sub, "compare", help="runs side by side: status, scores (val and test), settings")
    p.add_argument("runs", nargs="*", metavar="run",
                   help="run ids, unique prefixes, or experiments (their latest runs)")
    p.add_argument("--sweep", metavar="ID", help="every trial of a sweep")
    p.add_argument("--csv", action="store_true", help="the whole table as CSV")
    p.set_defaults(func=cmd_compare)
