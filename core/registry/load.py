"""Loading a registry file: TOML, includes, top-level tables, data sources, experiments,
queue, sweeps and backends, every problem told at once."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from core.errors import RegistryError
from core.registry.build import build_experiments
from core.registry.experiment import DataSource
from core.registry.include import check_workspace, with_includes
from core.registry.keys import DATA_KEYS, KEYS, TOP_LEVEL
from core.registry.model import Registry
from core.registry.queue import parse_queue
from core.registry.validate import check_keys, suggest
from core.util.names import name_problem


def load_registry(path: str | Path) -> Registry:
    """Parse and validate a registry file; raises RegistryError with one clear line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"{path}: registry file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: cannot read registry: {exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: TOML syntax error: {exc}") from None
    return parse_registry(path, with_includes(path, doc))


def parse_registry(path: Path, doc: dict[str, Any]) -> Registry:
    """Every problem of the file is reported, one line each, not only the first."""
    problems: list[str] = []
    for top in doc:
        if top not in TOP_LEVEL:
            problems.append(f"{path}: unknown top-level table '{top}'{suggest(top, TOP_LEVEL)}")
    if "workspace" in doc:
        check_workspace(path, doc["workspace"], problems)
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        problems.append(f"{path}: [defaults] must be a table")
        defaults = {}
    check_keys(path, "[defaults]", defaults, KEYS, problems)
    data = _parse_data(path, doc.get("data", {}), problems)
    experiments = doc.get("experiments", {})
    if not isinstance(experiments, dict):
        problems.append(f"{path}: [experiments] must be a table of experiments")
        experiments = {}
    raw: dict[str, dict[str, Any]] = {}
    for name, table in experiments.items():
        problem = name_problem(name)
        if problem:
            problems.append(f"{path}: experiment '{name}': not a valid name: {problem}")
        elif not isinstance(table, dict):
            problems.append(f"{path}: experiment '{name}' must be a table")
        else:
            raw[name] = table
    built = {}
    if not problems or raw:
        try:
            built = build_experiments(path, defaults, data, raw)
        except RegistryError as exc:
            problems += str(exc).splitlines()
    queue = parse_queue(path, doc.get("queue"), problems)
    sweeps, backends = {}, {}  # their parsers load only for a registry that has them
    if doc.get("sweeps") is not None:
        from core.registry.sweeps import parse_sweeps

        sweeps = parse_sweeps(path, doc.get("sweeps"), raw, problems, built)
    if doc.get("backends") is not None:
        from core.registry.slurm import parse_backends

        backends = parse_backends(path, doc.get("backends"), problems)
    for name, exp in built.items():
        backend = exp.params.get("backend", KEYS["backend"].default)
        if backend != KEYS["backend"].default and backend not in backends:
            problems.append(f"{path}: experiment '{name}': key 'backend': '{backend}' needs a "
                            f"[backends.{backend}] table")
    if problems:
        raise RegistryError("\n".join(problems))
    return Registry(path=path, defaults=defaults, data=data, raw=raw, experiments=built,
                    queue=queue, sweeps=sweeps, backends=backends)


def _parse_data(path: Path, tables: Any, problems: list[str]) -> dict[str, DataSource]:
    if not isinstance(tables, dict):
        problems.append(f"{path}: [data] must be a table of named data sources")
        return {}
    out: dict[str, DataSource] = {}
    for name, table in tables.items():
        where = f"data source '{name}'"
        if not isinstance(table, dict):
            problems.append(f"{path}: {where} must be a table")
            continue
        before = len(problems)
        check_keys(path, where, table, DATA_KEYS, problems)
        if "root" not in table:
            problems.append(f"{path}: {where}: missing required key 'root'")
        if len(problems) > before:
            continue
        root = Path(table["root"])
        out[name] = DataSource(name, root if root.is_absolute() else path.parent / root, table)
    return out
