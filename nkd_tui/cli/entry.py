"""The `nkd` command line: run experiments headless, list and follow runs, control them."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, NkdError
from core.store.recover import open_store
from core.util.text import visible
from nkd_tui.cli import (
    capture,
    compare,
    control,
    data,
    disk,
    experiments,
    lineage,
    made,
    notes,
    queue,
    results,
    runs,
    sweeps,
)
from nkd_tui.cli.context import close_all, registry_path
from nkd_tui.cli.early import named_command

if TYPE_CHECKING:
    from core.backends.prestart import Prestarted


def cmd_tui(args: argparse.Namespace) -> int:
    from nkd_tui.app import make_app

    app = make_app(registry_path(args), message=getattr(args, "message", None))
    warnings: list[str] = []  # said in the interface: it covers what is printed before it
    open_store(app.workspace, warnings).close()  # a broken database: one line; missing: rebuilt
    if warnings:
        app.message = "\n".join(filter(None, [app.message, *(f"warning: {w}" for w in warnings)]))
    app.run()
    return 0


class _Unused:
    """The parser of a command the command line does not name, when it names one: each
    definition is read and dropped (building every command's parser was a tenth of the time
    `nkd run` adds to a script)."""

    def __getattr__(self, name: str) -> Any:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _Unused:
        return self


class _Only:
    """The commands' group, passing on only the named command's parser (and whether it came)."""

    def __init__(self, sub: Any, command: str) -> None:
        self.sub, self.command, self.named = sub, command, False

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if name != self.command and self.command not in kwargs.get("aliases", ()):
            return _Unused()
        self.named = True
        return self.sub.add_parser(name, **kwargs)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """nkd's parser; with `command`, that command's alone (None if there is no such command:
    the whole parser says so)."""
    parser = argparse.ArgumentParser(
        prog="nkd", description="Experiment manager for audio distillation and separation runs."
    )
    registry_help = "experiments.toml (default ./experiments.toml or $NKD_REGISTRY)"
    parser.add_argument("--registry", "-r", help=registry_help)
    # the same option after the command too (`nkd ps --registry X`); SUPPRESS keeps a value
    # given before the command when none is given after it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", "-r", default=argparse.SUPPRESS, help=registry_help)

    def add(group: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return group.add_parser(name, parents=[common], **kwargs)

    sub: Any = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command is not None:
        sub = _Only(sub, command)
    p = add(sub, "tui", help="the terminal interface (also: nkd with no command)")
    p.add_argument("--message", help="text shown in a notice when the interface opens (what a "
                   "script printed before it, which the interface would otherwise cover)")
    p.set_defaults(func=cmd_tui)


    # in this order in --help
    experiments.add_parsers(add, sub)
    queue.add_parsers(add, sub)
    notes.add_parsers(add, sub)
    capture.add_parser(add, sub)
    capture.add_import_parser(add, sub)
    runs.add_parsers(add, sub)
    compare.add_parsers(add, sub)
    made.add_parsers(add, sub)
    control.add_parsers(add, sub)
    lineage.add_parsers(add, sub)
    results.add_parsers(add, sub)
    data.add_parsers(add, sub)
    disk.add_parsers(add, sub)
    sweeps.add_parsers(add, sub)
    if command is not None and not sub.named:
        return build_parser()
    return parser


def main(argv: Sequence[str] | None = None, prestarted: Prestarted | None = None) -> int:
    """`prestarted`: the worker the `nkd` command started for what looked like `nkd run`
    (nkd_tui.cli.console); `nkd run` takes it if the run is what it looked like."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(named_command(argv))
    args, extra = parser.parse_known_args(argv)
    args.prestarted = prestarted
    if extra:  # argparse ends a `nargs="*"` positional at the first option; a command may say
        spill = getattr(args, "more_positionals", None)  # which list takes the words after it
        if not spill or any(word.startswith("-") for word in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        getattr(args, spill).extend(extra)  # `nkd tag RUN -d OLD NEW`: NEW is a tag to add
    if not getattr(args, "func", None):
        args.func = cmd_tui
    try:
        return int(args.func(args))
    except NkdError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"nkd: {visible(line, keep='')}", file=sys.stderr)  # it may echo the input
        return exc.exit_code
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        print("nkd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except sqlite3.Error as exc:  # a database that broke under us: one line and the way out
        where = args.registry if getattr(args, "registry", None) else "the workspace"
        print(f"nkd: run database of {where}: {exc}; `nkd reindex` rebuilds it from the run "
              f"folders", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        print(visible(f"nkd: {exc.filename or 'a file'}: {exc.strerror or exc}", keep=""),
              file=sys.stderr)
        return EXIT_REFUSED
    finally:
        close_all()


if __name__ == "__main__":
    sys.exit(main())
