"""What looks like `nkd run EXPERIMENT` (one run, now, on this box), guessed from the command
line before anything else is imported, and the worker started for it (core.backends.prestart):
its start-up overlaps the launcher's. Imported first, so it imports little."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.backends.prestart import Prestarted

# `nkd run` options that put the run in a queue, make a sweep or send it elsewhere: no worker
# of this box starts now. A guess wrong the other way costs a worker that is cancelled.
NOT_NOW = ("--queue", "-q", "--after", "--on", "--sweep-name", "--trials")


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
    from core.registry.workspace import registry_file

    return registry_file(registry), experiment


def prestart(registry: Path, experiment: str) -> Prestarted | None:
    """A worker waiting in a new run folder of the registry's workspace, or None where none
    can be made now (a name that is not one) or should not be (a workspace's first run: a
    refused one leaves no runs folder behind)."""
    from core.backends.prestart import Prestarted
    from core.errors import NkdError
    from core.registry.workspace import Workspace

    try:
        runs = Workspace.at(registry).runs_dir
        if not runs.is_dir():
            return None
        return Prestarted(runs, experiment)
    except (NkdError, OSError, ValueError):
        return None
