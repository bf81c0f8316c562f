"""`nkd eval REF --data SOURCE|FOLDER`: an ad-hoc evaluation run of any checkpoint on any data
(no torch here: the worker does the scoring).

REF is a run id (or run:<id>), an experiment (its newest finished run), best:EXP, EXP@key=value,
or a checkpoint file. The family comes from what REF's run trained (separation.* or noise.*), or,
for a file, from the data's kind. The run is named after both, e.g.
`eval_crnn_long_on_test`, and records the checkpoint it scored as its lineage parent.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core.errors import NkdError, RegistryError
from core.registry import (
    KEYS,
    Experiment,
    Reference,
    Registry,
    data_source,
    parse_override,
    reference_form,
)
from core.store import Store
from core.util.names import NAME_MAX

SPLITS = ("test", "val")


def _reference(registry: Registry, store: Store, ref: str) -> tuple[Reference, str | None]:
    """The reference and the recipe of the run or experiment it names (None for a file)."""
    run = store.get_run(ref.removeprefix("run:"))
    if ref.startswith("run:") or run is not None:
        if run is None:
            raise NkdError(f"eval: no run '{ref.removeprefix('run:')}'")
        return Reference("run", run["id"]), run.get("recipe")
    kind, target = reference_form(ref)
    experiment = target.partition("@")[0]
    if kind != "file" and experiment in registry.experiments:
        return Reference(kind, target), registry.experiments[experiment].recipe or "command"
    path = Path(ref).expanduser()
    path = path if path.is_absolute() else registry.root / path
    if path.is_file():
        return Reference("file", str(path.resolve())), None
    raise NkdError(f"eval: '{ref}' is not a run, an experiment (best:EXP, EXP@key=value) or a "
                   f"checkpoint file")


def eval_experiment(
    registry: Registry, store: Store, ref: str, data: str, split: str = "test",
    overrides: list[str] | None = None,
) -> Experiment:
    if split not in SPLITS:
        raise NkdError(f"eval: --split must be one of {', '.join(SPLITS)}")
    settings: dict[str, Any] = {}
    for item in overrides or []:  # every input checked before anything is looked up
        k, v = parse_override(registry.path, "eval", item)
        if k not in KEYS:
            raise NkdError(f"eval: --set {item}: unknown key '{k}' (`nkd keys` lists them)")
        settings[k] = v
    reference, recipe = _reference(registry, store, ref)
    try:
        source = data_source(registry, data)
    except RegistryError as exc:
        raise NkdError(f"eval: --data {data}: {exc}".replace(f"{registry.path}: ", "")) from None
    kind = source.settings.get("kind", "noise")
    family = (recipe or "").partition(".")[0] or kind
    if family not in ("noise", "separation"):
        raise NkdError(f"eval: {ref} was trained by a script of its own, not a built-in recipe; "
                       f"score it with its own evaluation (an experiment with `evaluates`)")
    if family != kind:
        raise NkdError(f"eval: {ref} is a {family} model but {data} holds {kind} data")
    key = "pretrained" if family == "separation" else "teacher"
    params: dict[str, Any] = {
        "group": "evaluation",
        "recipe": f"{family}.evaluate",
        key: str(reference),
        f"{split}_data": data,
        "description": f"{ref} scored on {data} ({split})",
    }
    inherited: set[str] = set()  # copied values that were the registry's [defaults]
    if reference.kind in ("experiment", "best", "where"):
        scored_exp = registry.experiments[reference.target.partition("@")[0]]
        base = scored_exp.params
        for setting in ("classes", "stems", "device", "seed", "num_workers", "threads", "env"):
            if setting in base:
                params[setting] = base[setting]
                if setting in scored_exp.from_defaults:
                    inherited.add(setting)
    params.update(settings)
    inherited -= set(settings)
    # the experiment's (or run's) own name, dots kept: mark2.5 is not mark2; a file by its stem
    scored = Path(reference.target).stem if reference.kind == "file" else reference.target
    short = re.sub(r"[^A-Za-z0-9._-]", "_", f"eval_{scored}_on_"
                   f"{Path(data.rstrip('/')).name or data}").strip("._")
    return Experiment(short[:NAME_MAX], params, (short[:NAME_MAX],), {key: reference},
                      from_defaults=frozenset(inherited))


RUN_SUFFIX = re.compile(r"_\d{8}_\d{6}(_\d{1,3})?$")


def scored_experiment(params: dict[str, Any]) -> str | None:
    """The experiment an evaluation scores (or a blend's first source): what its `teacher` or
    `pretrained` names, a run id read as its experiment; None for a checkpoint file."""
    ref = params.get("teacher") or params.get("pretrained")
    if not isinstance(ref, str):
        sources = params.get("sources")
        ref = next(iter(sources), None) if isinstance(sources, dict) and sources else None
    if not isinstance(ref, str):
        return None
    kind, target = reference_form(ref)
    if kind == "file":
        return None
    if kind == "run":
        return RUN_SUFFIX.sub("", target)
    return target.partition("@")[0]
