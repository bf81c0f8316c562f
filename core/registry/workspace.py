"""Where a registry's runs, checkpoints and database live: beside the registry file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from core.registry.include import workspace_table

DB_NAME = "nkd.db"


def registry_file(given: str | None) -> Path:
    """The registry a command reads: `--registry`, else $NKD_REGISTRY, else ./experiments.toml."""
    return Path(given or os.environ.get("NKD_REGISTRY") or "experiments.toml")


class Workspace(NamedTuple):
    """Where a registry's runs, checkpoints, database and caches are: beside the registry file,
    or where its [workspace] table says (paths relative to the registry). A named tuple, not
    a dataclass: `nkd run` reads it before anything else, and dataclasses costs a tenth of
    what `nkd run` may add to a script's start."""

    registry_path: Path
    places: tuple[tuple[str, str], ...] = ()  # the [workspace] table: runs, checkpoints, db, cache

    @classmethod
    def at(cls, registry_path: str | Path) -> Workspace:
        path = Path(registry_path).resolve()
        return cls(path, tuple(sorted(workspace_table(path).items())))

    @property
    def root(self) -> Path:
        return self.registry_path.parent

    def _place(self, key: str, default: str) -> Path:
        given = dict(self.places).get(key)
        if not given:
            return self.root / default
        path = Path(given).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def runs_dir(self) -> Path:
        return self._place("runs", "runs")

    @property
    def checkpoints_dir(self) -> Path:
        return self._place("checkpoints", "checkpoints")

    @property
    def db_path(self) -> Path:
        return self._place("db", DB_NAME)

    @property
    def cache_dir(self) -> Path:
        """Derived files: prepared audio, clip indexes, features."""
        return self._place("cache", "cache")

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id


def index_dir(cache_dir: Path, name: str) -> Path:
    """`<cache>/index/<name>` in the workspace: a source named by a folder path gets a short,
    stable folder name of its own."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._")[-60:] or "source"
    if safe != name:
        from core.util.checksum import sha256

        safe = f"{safe}-{sha256(name.encode()).hexdigest()[:10]}"
    return cache_dir / "index" / safe
