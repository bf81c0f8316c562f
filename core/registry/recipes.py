"""Built-in recipes by name: the table the registry checks `recipe = ...` against (no imports of
the recipes themselves). A recipe is `run(ctx: RunContext) -> None` in a module of its family;
`core.runs.context.load` imports it for the worker.

Recipes named in experiments.toml before their family is built are refused with a clear message
when a run is asked for, before anything is written.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from core.errors import RunError

# family.step -> "module:function". A family's module is added here when it is built.
RECIPES: dict[str, str] = {
    "noise.index": "core.noise.teacher:index",
    "noise.teacher": "core.noise.teacher:teacher",
    "noise.soft_labels": "core.noise.soft_labels:soft_labels",
    "noise.student": "core.noise.student:student",
    "noise.ensemble": "core.noise.student:ensemble",
    "noise.hybrid_kd": "core.noise.hybrid:hybrid_kd",
} | {
    "noise.evaluate": "core.noise.evaluation:evaluate",
} | {
    f"separation.{step}": f"core.separation.recipes:{step}"
    for step in ("train", "evaluate", "blend")
}

PLANNED: dict[str, str] = {}  # families named in a registry before their recipes are built

# family -> "module:function(registry, experiment, store)": what a run of it names, checked at
# launch as its recipes will read it (checkpoint files, the labels of its folders, its teacher's
# classes); RunError, naming the key, refuses the run before anything is recorded
LAUNCH_CHECKS: dict[str, str] = {
    "noise": "core.noise.launch_checks:check",
    "separation": "core.separation.launch_checks:check",
}


def launch_check(recipe: str | None) -> Callable[[Any, Any, Any], None] | None:
    """The family's launch check for `recipe` (None for a command experiment)."""
    target = LAUNCH_CHECKS.get((recipe or "").split(".", 1)[0])
    if target is None:
        return None
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


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
