"""A run's resolved settings: every key its recipe reads, each with the value it uses and where
that value came from, computed once at launch and saved in the run's config.json.

Precedence, highest first (the README's "Where a value comes from"):

1. the experiment itself: its own keys, its `extends` chain and `--set` (`experiment`);
2. what the run finds when it starts: a checkpoint's inference settings for an evaluation,
   blend or fine-tune (`checkpoint`), the device's rule for loader workers (`rule`);
3. the registry's `[defaults]` table (`[defaults]`);
4. the key's default in the schema (`default`, `core/registry/keys.py`).

Steps 1, 3 and 4 are known at launch; step 2 is applied by the worker, which records it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.registry.keys import KEYS, NO_DEFAULT

EXPERIMENT, DEFAULTS, DEFAULT, CHECKPOINT, RULE = (
    "experiment", "[defaults]", "default", "checkpoint", "rule")
EXPLICIT = (EXPERIMENT,)  # origins a run-time rule or a checkpoint never overrides


def family_of(recipe: str | None) -> str:
    """`noise`, `separation` or `command` (a script of the researcher's own)."""
    return (recipe or "command").partition(".")[0] if recipe else "command"


def gpus_of(params: dict[str, Any]) -> int:
    """How many GPUs a run is given: its `gpus`, else the key's default for its family."""
    family = family_of(None if params.get("command") else params.get("recipe"))
    return int(params.get("gpus", KEYS["gpus"].default_for(params, family)) or 0)


def reads(recipe: str | None) -> list[str]:
    """The keys a recipe (or a command experiment) reads, in the schema's order."""
    name = recipe or "command"
    return [key for key, spec in KEYS.items() if spec.read_by(name)]


def resolve(
    recipe: str | None, params: dict[str, Any], from_defaults: Iterable[str] = ()
) -> tuple[dict[str, Any], dict[str, str]]:
    """(settings, origin): the experiment's params with every default its recipe reads filled
    in, and where each key's value came from."""
    registry_defaults = set(from_defaults)
    origin = {k: DEFAULTS if k in registry_defaults else EXPERIMENT for k in params
              if k in KEYS}
    settings = _filled(params, family_of(recipe), reads(recipe))
    origin |= {k: DEFAULT for k in settings if k not in params}
    return settings, origin


def with_defaults(family: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` with the schema's default for `family` filled in for every key it lacks (for code
    that builds features or an STFT outside a run: benches, data preparation)."""
    return _filled(params, family, KEYS)


def _filled(params: dict[str, Any], family: str, keys: Iterable[str]) -> dict[str, Any]:
    """`params` and the default of each of `keys` it lacks (a list default copied, so a run
    never shares the schema's own)."""
    out = dict(params)
    for key in keys:
        if key not in out:
            value = KEYS[key].default_for(out, family)
            if value is not NO_DEFAULT:
                out[key] = list(value) if isinstance(value, list) else value
    return out


def of_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A run's resolved settings from its config.json; a run recorded before settings were
    saved gets them resolved now from its params (its [defaults] origin is then unknown)."""
    if isinstance(config.get("settings"), dict):
        return dict(config["settings"]), dict(config.get("settings_origin") or {})
    return resolve(config.get("recipe"), dict(config.get("params") or {}))


def explicit(origin: dict[str, str], key: str) -> bool:
    """Whether the experiment (or `--set`) chose this value, so nothing found later wins."""
    return origin.get(key) in EXPLICIT
