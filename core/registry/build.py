"""Resolving experiments: defaults <- extends chain <- own keys, each validated; a problem
inherited through `extends` is told once, at the experiment that wrote it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from core.errors import RegistryError
from core.registry.experiment import DataSource, Experiment
from core.registry.keys import KEYS
from core.registry.validate import check_keys, suggest, validate_experiment


def build_experiments(
    path: Path,
    defaults: dict[str, Any],
    data: dict[str, DataSource],
    raw: dict[str, dict[str, Any]],
    only: str | None = None,
) -> dict[str, Experiment]:
    names = [only] if only else list(raw)
    out: dict[str, Experiment] = {}
    problems: list[str] = []
    told: dict[str, list[str]] = {}  # experiment -> its problems, without the "where" part
    for name in names:
        where = f"experiment '{name}'"
        before = len(problems)
        check_keys(path, where, raw[name], KEYS, problems)
        if len(problems) > before:
            continue
        chain: tuple[str, ...] = (name,)
        try:
            chain = _extends_chain(path, name, raw)
            params: dict[str, Any] = dict(defaults)
            for ancestor in reversed(chain):
                own = dict(raw[ancestor])
                own.pop("extends", None)
                # what an experiment *reported* belongs to that experiment alone
                if ancestor != name:
                    own.pop("reported", None)
                    own.pop("description", None)
                if "params" in own and "params" in params:
                    own["params"] = {**params["params"], **own["params"]}
                params.update(own)
            exp = validate_experiment(path, name, params, chain, data, raw)
            # keys whose value is the registry's [defaults] one (its origin in the settings)
            inherited = frozenset(k for k in defaults if not any(k in raw[a] for a in chain))
            out[name] = dataclasses.replace(exp, from_defaults=inherited)
        except RegistryError as exc:
            prefix = f"{path}: {where}: "
            own = [line.removeprefix(prefix) for line in str(exc).splitlines()]
            told[name] = own
            # a problem inherited through `extends` is told at the experiment that wrote it
            inherited = {p for ancestor in chain[1:] for p in _own_problems(
                path, ancestor, defaults, data, raw, told)}
            problems += [prefix + line if not line.startswith(str(path)) else line
                         for line in own if line not in inherited]
    if problems:
        raise RegistryError("\n".join(dict.fromkeys(problems)))
    return out


def _own_problems(
    path: Path,
    name: str,
    defaults: dict[str, Any],
    data: dict[str, DataSource],
    raw: dict[str, dict[str, Any]],
    told: dict[str, list[str]],
) -> list[str]:
    """An ancestor's problems (validated now if it was not yet)."""
    if name not in told:
        try:
            build_experiments(path, defaults, data, raw, only=name)
            told[name] = []
        except RegistryError as exc:
            prefix = f"{path}: experiment '{name}': "
            told[name] = [line.removeprefix(prefix) for line in str(exc).splitlines()]
    return told[name]


def _extends_chain(path: Path, name: str, raw: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    chain = [name]
    current = name
    while "extends" in raw[current]:
        parent = raw[current]["extends"]
        if parent not in raw:
            raise RegistryError(
                f"{path}: experiment '{current}': key 'extends': unknown experiment "
                f"'{parent}'{suggest(parent, raw)}"
            )
        if parent in chain:
            # told once, from its alphabetically first member, however it was reached
            members = chain[chain.index(parent) :]
            start = members.index(min(members))
            loop = " -> ".join([*members[start:], *members[:start], min(members)])
            raise RegistryError(f"{path}: experiment '{min(members)}': 'extends' cycle: {loop}")
        chain.append(parent)
        current = parent
    return tuple(chain)
