"""What a recipe gets (`RunContext`), and the recipe function a run's `recipe` names, imported
by its "module:function" entry in the registry's table only when a worker runs it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import RunError
from core.registry.recipes import RECIPES
from core.registry.settings import explicit, family_of, with_defaults
from core.runs.control import Control
from core.store.reporter import Reporter


@dataclass
class RunContext:
    """What a recipe gets: its settings, where to write, how to report, when to stop."""

    run_id: str
    params: dict[str, Any]  # the resolved settings: every key the recipe reads, defaults filled
    run_dir: Path
    checkpoints_dir: Path
    root: Path
    reporter: Reporter
    control: Control
    resume: bool = False
    config: dict[str, Any] = field(default_factory=dict)  # the run's config.json
    origin: dict[str, str] = field(default_factory=dict)  # where each setting came from

    def __post_init__(self) -> None:
        # a context made outside a worker (tests, benches) takes the schema's defaults for the
        # keys it is not given; a worker's are its config.json's settings, as recorded
        if "settings" not in self.config:
            self.params = with_defaults(family_of(self.config.get("recipe")), self.params)

    def explicit(self, key: str) -> bool:
        """Whether the experiment (or `--set`) chose this setting: a checkpoint's or a run-time
        rule's value never overrides it."""
        return explicit(self.origin, key)

    def data_source(self, key: str) -> tuple[str, dict[str, Any]]:
        """The named data source a data key (data, val_data, eval_data) points at."""
        name = self.params.get(key)
        if not name:
            raise RunError(f"run '{self.run_id}': key '{key}' is not set")
        return name, self.config.get("data_sources", {})[name]

    @property
    def cache_dir(self) -> Path:
        """The workspace's derived files: prepared audio, clip indexes, features."""
        return Path(self.config.get("cache_dir") or self.root / "cache")

    @property
    def db_path(self) -> Path:
        return Path(self.config["db"])


def load(recipe: str) -> Callable[[RunContext], None]:
    module, _, func = RECIPES[recipe].partition(":")
    return getattr(importlib.import_module(module), func)
