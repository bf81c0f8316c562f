"""What looks like `nkd run EXPERIMENT` (one run, now, on this box), guessed from the command
line before anything else is imported, and the worker started for it (core.backends.prestart):
its start-up overlaps the launcher's. Imported first, so it imports little."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.backends.prestart import Prestarted

# `nkd run` options that put the run in a queue, make a sweep or send it elsewhere (option ->
# its argparse name): no worker of this box starts now. A guess wrong the other way costs a
# worker that is cancelled.
NOT_NOW = {"--queue": "queue", "-q": "queue", "--after": "after", "--on": "on",
           "--sweep-name": "sweep_name", "--trials": "trials"}


def named_command(argv: list[str]) -> str | None:
    """The command word of a command line (after `--registry R`), or None."""
    at = _command_at(argv)
    return None if at is None else argv[at]


def _command_at(argv: list[str]) -> int | None:
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in ("--registry", "-r") else 1
    return i if i < len(argv) else None


def guess_run(argv: list[str]) -> tuple[Path, str] | None:
    """(registry, experiment) when argv reads as `nkd [-r R] run EXPERIMENT [options]` with
    no option of NOT_NOW; None otherwise (argparse, later, is the judge of what it means)."""
    words = list(argv)
    at = _command_at(words)
    if at is None or words[at] != "run":
        return None
    experiment = words[at + 1] if at + 1 < len(words) else "-"
    if experiment.startswith("-") or any(w.split("=", 1)[0] in NOT_NOW for w in words):
        return None
    registry: str | None = None
    for i, word in enumerate(words):
        if word in ("--registry", "-r") and i + 1 < len(words):
            registry = words[i + 1]
        elif word.startswith("--registry="):
            registry = word.split("=", 1)[1]
    from core.registry.workspace import registry_file

    return registry_file(registry), experiment


def starts_now(args: Any) -> bool:
    """`nkd run`'s parsed arguments name one experiment and no option of NOT_NOW."""
    return len(args.experiment) == 1 and not any(getattr(args, d) for d in NOT_NOW.values())


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
