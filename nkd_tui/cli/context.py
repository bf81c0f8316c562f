"""What every sub-command shares: the registry path (`--registry`, $NKD_REGISTRY), the registry,
workspace and store it opens, a plain text table, and a Slurm sync before reading runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import NkdError
from core.registry.workspace import Workspace, registry_file
from core.store import Store
from core.store.recover import open_store
from core.util.text import has_control_but_newline, visible

if TYPE_CHECKING:  # the registry's modules load only for a command that reads the registry
    from core.registry import Registry


_OPENED: list[Store] = []  # the stores this command opened, closed when it returns (close_all)


def close_all() -> None:
    """Close the stores the command opened: `main` called as a function (a test, a script) leaves
    no connection for the garbage collector to close at a random moment later."""
    while _OPENED:
        _OPENED.pop().close()


def _opened(store: Store) -> Store:
    _OPENED.append(store)
    return store


def registry_path(args: argparse.Namespace) -> Path:
    return registry_file(args.registry)


def open_registry(args: argparse.Namespace) -> tuple[Registry, Workspace, Store]:
    from core.registry import load_registry

    registry = load_registry(registry_path(args))
    ws = Workspace.at(registry.path)
    return registry, ws, _opened(open_store(ws))


def open_workspace(args: argparse.Namespace) -> tuple[Workspace, Store]:
    """The store beside the registry file; the registry itself need not be valid to read runs."""
    path = registry_path(args)
    if not path.is_file():
        raise NkdError(f"{path}: registry file not found")
    ws = Workspace.at(path)
    return ws, _opened(open_store(ws))


def text_table(rows: list[list[str]], header: list[str]) -> str:
    """Columns padded to their widest cell; a cell's control characters made visible (a tag or
    note as given, never a control sequence)."""
    table = _aligned(rows, header)
    if "\t" in table or has_control_but_newline(table):  # looked for once; usually none
        table = _aligned([[visible(str(c), keep="") for c in r] for r in rows], header)
    return table


def _aligned(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def sync_slurm(store: Store, ws: Workspace) -> None:
    """Runs held elsewhere brought up to date (Slurm: new events and states, when there are
    any; no Slurm call otherwise)."""
    from core.backends import sync_all

    sync_all(store, ws)


def say_skipped(launched: Any) -> None:
    """The optional parts a launch left out (demo data not on disk), one `nkd:` line each."""
    for line in launched.skipped:
        print(f"nkd: {launched.run_id}: {line}", file=sys.stderr)
