"""Checking an experiment's keys: types, ranges, references, recipes; `--set` values; the
closest known name for a misspelt one."""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from core.errors import RegistryError, RunError
from core.registry import folders
from core.registry.experiment import DataSource, Experiment, Reference
from core.registry.key import RECORDED_BY
from core.registry.keys import (
    DATA_REF_KEYS,
    KEYS,
    ON_FINISH_FIELDS,
    PLACEHOLDER,
    REFERENCE_KEYS,
    REQUIRED,
    Key,
)
from core.registry.queue import parse_memory
from core.registry.retention import FORM as KEEP_FORM
from core.registry.retention import parse_keep


def validate_experiment(
    path: Path,
    name: str,
    params: dict[str, Any],
    chain: tuple[str, ...],
    data: dict[str, DataSource],
    raw: dict[str, dict[str, Any]],
) -> Experiment:
    where = f"{path}: experiment '{name}'"
    has_recipe, has_command = "recipe" in params, "command" in params
    if has_recipe == has_command:
        what = "both" if has_recipe else "neither"
        raise RegistryError(f"{where}: has {what} of 'recipe' and 'command'; give exactly one")
    if has_command:
        command = params["command"]
        if not command:
            raise RegistryError(f"{where}: key 'command': must not be empty")
        for arg in command:
            for placeholder in PLACEHOLDER.findall(arg):
                if not _has_param(params, placeholder):
                    raise RegistryError(
                        f"{where}: key 'command': placeholder '{{{placeholder}}}' names no "
                        f"setting of this experiment{suggest(placeholder, _param_names(params))}"
                    )
    for key in DATA_REF_KEYS:
        if key in params and params[key] not in data:
            value = str(params[key])
            if folders.looks_like_folder(value):
                root = folders.resolve(value, path.parent)
                if not root.is_dir() or folders.detect(root) is None:
                    raise RegistryError(f"{where}: key '{key}': folder {root} "
                                        f"{folders.why_not(root)}")
                continue
            raise RegistryError(
                f"{where}: key '{key}': unknown data source '{params[key]}'"
                f"{suggest(params[key], data)} (a folder path works too: ./clips)"
            )
    references = {}
    for key in REFERENCE_KEYS:
        if key in params:
            references[key] = _reference(where, key, params[key], raw, name)
    sources: tuple[Reference, ...] = ()
    if "sources" in params:
        weights = params["sources"]
        if len(weights) < 2:
            raise RegistryError(f"{where}: key 'sources': a blend needs at least two sources")
        for src, weight in weights.items():
            if not 0 < weight <= 1:
                raise RegistryError(
                    f"{where}: key 'sources': weight of '{src}' is {weight}; must be in (0, 1]"
                )
        total = sum(weights.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise RegistryError(
                f"{where}: key 'sources': weights sum to {total:g}, not 1 "
                f"({', '.join(f'{k}={v:g}' for k, v in weights.items())})"
            )
        sources = tuple(
            Reference(r.kind, r.target, float(w))
            for r, w in (
                (_reference(where, "sources", src, raw, name), w) for src, w in weights.items()
            )
        )
    classes = params.get("classes")
    if isinstance(classes, dict):
        seen: dict[str, str] = {}
        for new, originals in classes.items():
            for original in originals:
                if original in seen:
                    raise RegistryError(
                        f"{where}: key 'classes': '{original}' is mapped to both "
                        f"'{seen[original]}' and '{new}'"
                    )
                seen[original] = new
    if isinstance(classes, list) and len(set(classes)) != len(classes):
        raise RegistryError(f"{where}: key 'classes': a class is listed twice")
    if classes is not None and len(classes) < 2:
        raise RegistryError(f"{where}: key 'classes': a classifier needs at least two classes")
    if "on_finish" in params and not params["on_finish"]:
        raise RegistryError(f"{where}: key 'on_finish': must not be empty")
    for arg in params.get("on_finish", []):
        for placeholder in PLACEHOLDER.findall(arg):
            if placeholder not in ON_FINISH_FIELDS:
                raise RegistryError(
                    f"{where}: key 'on_finish': placeholder '{{{placeholder}}}' is not one of "
                    f"{', '.join('{' + f + '}' for f in ON_FINISH_FIELDS)}")
    for pattern in params.get("output_scalars", []):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise RegistryError(f"{where}: key 'output_scalars': {pattern!r} is not a regular "
                                f"expression ({exc})") from None
    if has_recipe:  # last, so a specific problem of a key is told before a missing one
        _check_recipe(where, params)
    return Experiment(name, params, chain, references, sources)


def _check_recipe(where: str, params: dict[str, Any]) -> None:
    from core.registry import recipes  # the table of built-in recipes (no heavy imports)

    recipe = params["recipe"]
    try:
        recipes.check(recipe, where)
    except RunError as exc:
        raise RegistryError(str(exc)) from None
    missing = [k for k in REQUIRED.get(recipe, ()) if k not in params]
    if missing:
        raise RegistryError(
            f"{where}: recipe '{recipe}' needs key{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(k) for k in missing)}"
        )
    select_by = params.get("select_by")
    if select_by in RECORDED_BY and recipe not in RECORDED_BY[select_by]:
        raise RegistryError(
            f"{where}: key 'select_by': {select_by} is recorded each epoch only by "
            f"{', '.join(RECORDED_BY[select_by])}, not by '{recipe}' (val_loss or train_loss "
            f"work for every recipe)"
        )


def reference_form(value: str) -> tuple[str, str]:
    """(kind, target) that a reference names by its form alone: `run:<id>`, `best:EXP`,
    `EXP@key=value`, a file path, else an experiment name. The one parser of reference strings
    (the registry, `nkd eval` and the compare screen's parents all read them through it)."""
    if value.startswith("run:"):
        return "run", value.removeprefix("run:")
    if value.startswith("best:"):
        return "best", value.removeprefix("best:")
    is_file = "/" in value or value.endswith((".pth", ".pt", ".safetensors"))
    if is_file:
        return "file", value
    return ("where" if "@" in value else "experiment"), value


def _reference(where: str, key: str, value: str, raw: dict[str, Any], name: str) -> Reference:
    kind, target = reference_form(value)
    if kind == "run":
        if not target:
            raise RegistryError(f"{where}: key '{key}': 'run:' needs a run id")
        return Reference("run", target)
    if kind in ("best", "where"):
        experiment = target.partition("@")[0]
        if experiment not in raw:
            raise RegistryError(f"{where}: key '{key}': unknown experiment '{experiment}' in "
                                f"'{value}'{suggest(experiment, raw)}")
        if experiment == name:
            raise RegistryError(f"{where}: key '{key}': an experiment cannot refer to itself")
        if kind == "where" and not all(
            "=" in part and part.partition("=")[0].strip()
            for part in re.split(r"[,@]", target.partition("@")[2])
        ):
            raise RegistryError(f"{where}: key '{key}': '{value}' needs EXP@key=value "
                                f"(several: EXP@a=1@b=2)")
        return Reference(kind, target)
    if value in raw:
        if value == name:
            raise RegistryError(f"{where}: key '{key}': an experiment cannot refer to itself")
        return Reference("experiment", value)
    if kind == "file":
        return Reference("file", value)
    raise RegistryError(
        f"{where}: key '{key}': unknown reference '{value}' (not an experiment, run:<id>, "
        f"best:EXP, EXP@key=value or a file path){suggest(value, raw)}"
    )


def _has_param(params: dict[str, Any], name: str) -> bool:
    return name in params or name in params.get("params", {})


def _param_names(params: dict[str, Any]) -> list[str]:
    return [*params, *params.get("params", {})]


_KIND_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list[str]": "a list of strings",
    "classes": "a list of class names or a table of class -> [classes]",
    "weights": "a table of source -> weight",
    "table": "a table",
    "memory": 'a size such as "10GiB" or "512MiB"',
    "globs": "a list of glob patterns, or a table of role (best, last) -> glob",
    "device": "auto, cpu, cuda or cuda:N",
    "keep": KEEP_FORM,
}
DEVICE = re.compile(r"auto|cpu|cuda(?::\d+)?")  # the names a run's `device` may take


def _is_kind(kind: str, value: Any) -> bool:
    checks: dict[str, Callable[[Any], bool]] = {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "table": lambda v: isinstance(v, dict),
        "device": lambda v: isinstance(v, str) and DEVICE.fullmatch(v) is not None,
        "memory": lambda v: parse_memory(v) is not None,
        "keep": lambda v: parse_keep(v) is not None,
        "globs": lambda v: (isinstance(v, list) and all(isinstance(x, str) and x for x in v))
        or (isinstance(v, dict) and bool(v) and set(v) <= {"best", "last"}
            and all(isinstance(x, str) and x for x in v.values())),
        "weights": lambda v: isinstance(v, dict)
        and all(isinstance(w, int | float) and not isinstance(w, bool) for w in v.values()),
        "classes": lambda v: (isinstance(v, list) and all(isinstance(x, str) for x in v) and v)
        or (
            isinstance(v, dict)
            and bool(v)
            and all(
                isinstance(x, list) and x and all(isinstance(s, str) for s in x)
                for x in v.values()
            )
        ),
    }
    return bool(checks[kind](value))


def _check_key(path: Path, where: str, key: str, value: Any, schema: dict[str, Key]) -> None:
    if key not in schema:
        raise RegistryError(f"{path}: {where}: unknown key '{key}'{suggest(key, schema)}")
    spec = schema[key]
    if not _is_kind(spec.kind, value):
        raise RegistryError(
            f"{path}: {where}: key '{key}' must be {_KIND_NAMES[spec.kind]}, "
            f"got {type(value).__name__} {value!r}"
        )
    if spec.choices and value not in spec.choices:
        raise RegistryError(
            f"{path}: {where}: key '{key}' must be one of {', '.join(spec.choices)}; got {value!r}"
        )
    if spec.kind == "float" and not math.isfinite(value):
        raise RegistryError(f"{path}: {where}: key '{key}' must be a finite number, got {value}")
    if spec.kind in ("int", "float") and spec.out_of_range(value):
        raise RegistryError(
            f"{path}: {where}: key '{key}' must be {spec.range_text()}, got {value}"
        )
    if spec.kind == "weights":
        for src, weight in value.items():
            if not math.isfinite(weight):
                raise RegistryError(f"{path}: {where}: key '{key}': weight of '{src}' is {weight}")


def check_keys(
    path: Path, where: str, table: dict[str, Any], schema: dict[str, Key], problems: list[str]
) -> None:
    """Every bad key of one table, each as its own line in `problems`."""
    for key, value in table.items():
        try:
            _check_key(path, where, key, value, schema)
        except RegistryError as exc:
            problems.append(str(exc))


def parse_override(path: Path, name: str, item: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is read as TOML, else as a string."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RegistryError(f"{path}: experiment '{name}': --set '{item}' is not key=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    if isinstance(value, float) and key in KEYS and KEYS[key].kind == "int" and value.is_integer():
        value = int(value)
    return key, value


def suggest(word: str, known: Iterable[str]) -> str:
    import difflib  # only on the error path

    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
