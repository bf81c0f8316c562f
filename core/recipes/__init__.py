"""Built-in recipes by name. A recipe is `run(ctx: RunContext) -> None` in a module of its family.

Recipes named in experiments.toml before their family is built are refused with a clear message
when a run is asked for, before anything is written.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.control import Control
from core.errors import RunError
from core.reporter import Reporter

# family.step -> "module:function". A family's module is added here when it is built.
RECIPES: dict[str, str] = {
    f"noise.{step}": f"core.noise.recipes:{step}"
    for step in ("index", "teacher", "soft_labels", "student", "ensemble", "hybrid_kd")
} | {
    "noise.evaluate": "core.noise.evaluation:evaluate",
} | {
    f"separation.{step}": f"core.separation.recipes:{step}"
    for step in ("train", "evaluate", "blend")
}

PLANNED: dict[str, str] = {}  # families named in a registry before their recipes are built


@dataclass
class RunContext:
    """What a recipe gets: its settings, where to write, how to report, when to stop."""

    run_id: str
    params: dict[str, Any]
    run_dir: Path
    checkpoints_dir: Path
    root: Path
    reporter: Reporter
    control: Control
    resume: bool = False
    config: dict[str, Any] = field(default_factory=dict)  # the run's config.json

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


def available() -> list[str]:
    return sorted(RECIPES)


def check(recipe: str, where: str) -> None:
    """Refuse a recipe that does not exist (yet), naming the experiment."""
    if recipe in RECIPES:
        return
    family = recipe.split(".", 1)[0]
    if family in PLANNED:
        raise RunError(
            f"{where}: recipe '{recipe}' is not built yet ({PLANNED[family]} recipes are "
            f"planned); nothing was started"
        )
    known = ", ".join(available()) or "none yet; use a command experiment"
    raise RunError(f"{where}: unknown recipe '{recipe}' (available: {known})")


def load(recipe: str) -> Callable[[RunContext], None]:
    module, _, func = RECIPES[recipe].partition(":")
    return getattr(importlib.import_module(module), func)
