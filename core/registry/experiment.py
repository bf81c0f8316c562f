"""An experiment as resolved from the registry: its settings, what it refers to, its command."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.registry.keys import PLACEHOLDER


@dataclass(frozen=True)
class DataSource:
    name: str
    root: Path
    settings: dict[str, Any]


@dataclass(frozen=True)
class Reference:
    """A pointer to weights: an experiment's latest run, one run, or a file."""

    kind: str  # experiment | run | file
    target: str
    weight: float | None = None

    def __str__(self) -> str:
        return {"experiment": self.target, "run": f"run:{self.target}",
                "best": f"best:{self.target}"}.get(self.kind, self.target)


@dataclass(frozen=True)
class Experiment:
    name: str
    params: dict[str, Any]  # fully resolved: defaults <- extends chain <- own keys <- overrides
    chain: tuple[str, ...]  # extends chain, this experiment first
    references: dict[str, Reference] = field(default_factory=dict)
    sources: tuple[Reference, ...] = ()
    from_defaults: frozenset[str] = frozenset()  # keys whose value is the registry's [defaults]
    overridden: frozenset[str] = frozenset()  # keys given on the command line (--set)

    @property
    def group(self) -> str:
        return str(self.params.get("group", "other"))

    @property
    def recipe(self) -> str | None:
        return self.params.get("recipe")

    @property
    def command(self) -> list[str] | None:
        return self.params.get("command")

    @property
    def reported(self) -> dict[str, Any]:
        return dict(self.params.get("reported", {}))


# placeholders that become checkpoint files when the run starts (core/capture/references.py)
PATH_PLACEHOLDERS = ("pretrained", "teacher", "sources")


def substitute_command(exp: Experiment) -> list[str]:
    """The command line of a command experiment, placeholders replaced by resolved values.
    `{pretrained}`, `{teacher}` and `{sources}` are left for the worker: they become the
    checkpoint files of the runs they name, which may not have finished yet."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in PATH_PLACEHOLDERS:
            return match.group(0)
        found = exp.params[key] if key in exp.params else exp.params["params"][key]
        return str(found).lower() if isinstance(found, bool) else str(found)

    return [PLACEHOLDER.sub(value, arg) for arg in exp.command or []]
