"""The experiment registry: `experiments.toml` parsed, validated and resolved.

The public names are here (`from core.registry import load_registry, Experiment`); the modules
inside import each other directly, never this package:

keys        the schema: every key, its type, range, meaning and the recipes that need it
experiment  an experiment as resolved, its references and command line
validate    one experiment's keys, references and recipe checked; `--set` values parsed
build       defaults <- extends chain <- own keys, each experiment validated
model       the loaded registry: experiments, data sources, `--set` overrides
load        a registry file read: TOML, includes, every problem told at once
include     `include = [...]` and the `[workspace]` table;  workspace: where runs and caches live
folders     a folder path given where a data source is expected;  recipes: the recipe table
queue, slurm  the `[queue]`, `[sweeps]` and `[backends.slurm]` tables
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that declares it; imported on first use, so that a module needing only
# the key schema (the store, the backends) does not load the whole registry
_HOME = {
    **dict.fromkeys(("PATH_PLACEHOLDERS", "DataSource", "Experiment", "Reference",
                     "substitute_command"), "core.registry.experiment"),
    **dict.fromkeys(("DATA_KEYS", "DATA_REF_KEYS", "KEYS", "ON_FINISH_FIELDS", "PLACEHOLDER",
                     "REFERENCE_KEYS", "REQUIRED", "TOP_LEVEL", "Key"), "core.registry.keys"),
    **dict.fromkeys(("load_registry", "parse_registry"), "core.registry.load"),
    **dict.fromkeys(("Registry", "data_source"), "core.registry.model"),
    **dict.fromkeys(("parse_override", "reference_form"), "core.registry.validate"),
}

if TYPE_CHECKING:
    from core.registry.experiment import (
        PATH_PLACEHOLDERS,
        DataSource,
        Experiment,
        Reference,
        substitute_command,
    )
    from core.registry.keys import (
        DATA_KEYS,
        DATA_REF_KEYS,
        KEYS,
        ON_FINISH_FIELDS,
        PLACEHOLDER,
        REFERENCE_KEYS,
        REQUIRED,
        TOP_LEVEL,
        Key,
    )
    from core.registry.load import load_registry, parse_registry
    from core.registry.model import Registry, data_source
    from core.registry.validate import parse_override, reference_form


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'core.registry' has no attribute '{name}'")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "DATA_KEYS", "DATA_REF_KEYS", "KEYS", "ON_FINISH_FIELDS", "PATH_PLACEHOLDERS", "PLACEHOLDER",
    "REFERENCE_KEYS", "REQUIRED", "TOP_LEVEL", "DataSource", "Experiment", "Key", "Reference",
    "Registry", "data_source", "load_registry", "parse_registry", "parse_override",
    "reference_form", "substitute_command",
]
