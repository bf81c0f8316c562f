"""The `nkd` command itself: for what looks like `nkd run EXPERIMENT` (one run, now), the
run's worker is started before anything else is imported, so that its start-up overlaps the
launcher's (core.backends.prestart); then `main`, and out at once. Imported first, so it
imports little."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.backends.prestart import Prestarted

# `nkd run` options that put the run in a queue, make a sweep or send it elsewhere: no worker
# of this box starts now. A guess wrong the other way costs a worker that is cancelled.
NOT_NOW = ("--queue", "-q", "--after", "--on", "--sweep-name", "--trials")


def registry_file(given: str | None) -> Path:
    """The registry a command reads: `--registry`, else $NKD_REGISTRY, else ./experiments.toml."""
    return Path(given or os.environ.get("NKD_REGISTRY") or "experiments.toml")


def guess_run(argv: list[str]) -> tuple[Path, str] | None:
    """(registry, experiment) when argv reads as `nkd [-r R] run EXPERIMENT [options]` with
    no option of NOT_NOW; None otherwise (argparse, later, is the judge of what it means)."""
    registry: str | None = None
    words = list(argv)
    for i, word in enumerate(words):
        if word in ("--registry", "-r") and i + 1 < len(words):
            registry = words[i + 1]
        elif word.startswith("--registry="):
            registry = word.split("=", 1)[1]
    start = 0
    while start < len(words) and words[start].startswith("-"):
        start += 2 if words[start] in ("--registry", "-r") else 1
    if words[start : start + 1] != ["run"] or start + 1 >= len(words):
        return None
    experiment = words[start + 1]
    if experiment.startswith("-") or any(w.split("=", 1)[0] in NOT_NOW for w in words):
        return None
    return registry_file(registry), experiment


def prestart(registry: Path, experiment: str) -> Prestarted | None:
    """A worker waiting in a new run folder of the registry's workspace, or None where none
    can be made now (no runs folder yet, a name that is not one): the launch says why."""
    from core.backends.prestart import Prestarted
    from core.errors import NkdError
    from core.registry.workspace import Workspace

    try:
        runs = Workspace.at(registry).runs_dir
        if not runs.is_dir():  # a refused first run must leave no runs folder behind
            return None
        return Prestarted(runs, experiment)
    except (NkdError, OSError, ValueError):
        return None


def console() -> None:
    """A command's work is committed by the time main returns; tearing down the interpreter's
    modules would add tens of milliseconds to every command, so the process ends at once
    (the normal way out is kept while another non-daemon thread still runs)."""
    argv = sys.argv[1:]
    guessed = guess_run(argv)
    early = prestart(*guessed) if guessed else None
    try:
        from nkd_tui.cli.entry import main

        code = main(argv, prestarted=early)
    finally:
        if early is not None:
            early.cancel()  # nothing, once the launch released it
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)
