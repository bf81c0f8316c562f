"""A loaded registry: its experiments, data sources, queue, sweeps and backends; `--set`
overrides; a data source named by a folder path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import RegistryError
from core.registry import folders
from core.registry.build import build_experiments
from core.registry.experiment import DataSource, Experiment
from core.registry.keys import KEYS
from core.registry.queue import QueueConfig
from core.registry.validate import parse_override, suggest

if TYPE_CHECKING:
    from core.registry.slurm import SlurmConfig
    from core.registry.sweeps import Sweep


def data_source(registry: Registry, value: str) -> DataSource:
    """The named source, or a folder given as a path with its kind detected."""
    if value in registry.data:
        return registry.data[value]
    root = folders.resolve(value, registry.root).resolve()
    found = folders.detect(root) if root.is_dir() else None
    if found is None:
        raise RegistryError(f"{registry.path}: data folder {root} {folders.why_not(root)}")
    settings, detected = found
    return DataSource(value, root, {**settings, "root": str(root), "detected": detected})


@dataclass
class Registry:
    path: Path
    defaults: dict[str, Any]
    data: dict[str, DataSource]
    raw: dict[str, dict[str, Any]]  # experiment name -> its own keys, as written
    experiments: dict[str, Experiment]
    queue: QueueConfig = field(default_factory=QueueConfig)
    sweeps: dict[str, Sweep] = field(default_factory=dict)
    backends: dict[str, SlurmConfig] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.path.parent

    def get(self, name: str) -> Experiment:
        if name not in self.experiments:
            raise RegistryError(
                f"{self.path}: unknown experiment '{name}'{suggest(name, self.experiments)}"
            )
        return self.experiments[name]

    def resolve(self, name: str, overrides: Iterable[str] = ()) -> Experiment:
        """The experiment with `--set key=value` overrides applied and validated."""
        self.get(name)
        return self.resolve_values(name, [parse_override(self.path, name, item)
                                          for item in overrides])

    def resolve_values(self, name: str, values: Iterable[tuple[str, Any]]) -> Experiment:
        """The experiment with (key, value) overrides applied and validated, as `--set` would
        (`nkd rerun` gives a run's recorded values this way)."""
        base = self.get(name)
        own = dict(self.raw[name])
        params_table = dict(own.get("params", base.params.get("params", {})))
        changed = False
        given: set[str] = set()
        for key, value in values:
            given.add(key)
            if key.startswith("params."):
                params_table[key.removeprefix("params.")] = value
            elif key not in KEYS and key in params_table:
                params_table[key] = value
            else:
                own[key] = value
            changed = True
        if not changed:
            return base
        if params_table:
            own["params"] = params_table
        raw = dict(self.raw)
        raw[name] = own
        built = build_experiments(self.path, self.defaults, self.data, raw, only=name)[name]
        return replace(built, overridden=frozenset(given))

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for exp in self.experiments.values():
            out.setdefault(exp.group, []).append(exp.name)
        return out


def named_files(registry: Registry, exp: Experiment) -> tuple[list[tuple[str, Path]], list[Path]]:
    """The checkpoint files a run names: (key, path) for `pretrained` / `teacher`, and a
    blend's file sources; relative paths are the registry folder's."""
    def path_of(target: str) -> Path:
        path = Path(target).expanduser()
        return path if path.is_absolute() else registry.root / path

    named = [(key, path_of(ref.target)) for key, ref in exp.references.items()
             if ref.kind == "file"]
    return named, [path_of(ref.target) for ref in exp.sources if ref.kind == "file"]
