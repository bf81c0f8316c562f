"""`nkd tag`, `nkd note` and `nkd archive`: what a researcher says of a run after it ran."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from core.errors import EXIT_OK


def cmd_tag(args: argparse.Namespace) -> int:
    from core.runs.annotate import tag
    from core.runs.status import resolve_run
    from nkd_tui.cli.context import open_workspace

    ws, store = open_workspace(args)
    run_id = resolve_run(store, args.run)
    tags = tag(store, ws, run_id, add=args.tags, remove=args.remove or [])
    print(f"{run_id}: {' '.join('#' + t for t in tags) if tags else 'no tags'}")
    return EXIT_OK


def cmd_note(args: argparse.Namespace) -> int:
    from core.runs.annotate import note
    from core.runs.status import resolve_run
    from nkd_tui.cli.context import open_workspace

    ws, store = open_workspace(args)
    run_id = resolve_run(store, args.run)
    if args.text is None:  # no text: the note as it is
        print(store.get_run(run_id).get("note") or f"{run_id}: no note")
        return EXIT_OK
    note(store, ws, run_id, args.text)
    print(f"{run_id}: note {'cleared' if not args.text.strip() else 'saved'}")
    return EXIT_OK


def cmd_archive(args: argparse.Namespace) -> int:
    from core.runs.annotate import archive
    from core.runs.status import resolve_run
    from nkd_tui.cli.context import open_workspace

    ws, store = open_workspace(args)
    run_ids = [resolve_run(store, ref) for ref in args.runs]  # all found before any is changed
    for run_id in run_ids:
        print(archive(store, ws, run_id, archived=not args.undo))
    return EXIT_OK


def add_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    p = add(sub, "tag", help="add (or --remove) tags of a run; shown in ps, the TUI and compare")
    p.add_argument("run", help="run id, unique prefix, or experiment (its latest run)")
    p.add_argument("tags", nargs="*", help="tags to add: letters, digits, _ . : / + = @ -")
    p.add_argument("--remove", "-d", action="append", metavar="TAG", help="a tag to take off")
    p.set_defaults(func=cmd_tag, more_positionals="tags")  # nkd tag RUN -d OLD NEW

    p = add(sub, "note", help="a run's note: set it, clear it with '', or print it")
    p.add_argument("run")
    p.add_argument("text", nargs="?", help="the note (omit it to print the note)")
    p.set_defaults(func=cmd_note)

    p = add(sub, "archive", help="hide ended runs from ps and the TUI (never deleted)")
    p.add_argument("runs", nargs="+", metavar="run")
    p.add_argument("--undo", action="store_true", help="show the runs again")
    p.set_defaults(func=cmd_archive)
