"""What a run reads, checked before anything of it is recorded: its data sources and the runs or
files it refers to (`teacher`, `pretrained`, a blend's `sources`, `best:EXP`, `EXP@k=v`).

A refusal is one line naming the experiment, the key and what is missing (exit status 2), and
nothing is written. An optional part whose data are absent is not a refusal: a demo-only source
(one with `synth`, which `nkd data synth` writes) that is not on disk, named by `val_data`,
`test_data` or `eval_data`, is left out of the run with one notice, so a run on a researcher's own
folder (`--set data=FOLDER`) never fails after training on a leftover of the demo registry. And a
run whose `data` is the researcher's own never scores such a demo source left on disk by `make
demo` unless the command line names it: it is left out with one notice too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from core.errors import RunError
from core.registry import DATA_REF_KEYS, Experiment, Reference, Registry, data_source
from core.runs.lookup import find_run
from core.store import ACTIVE, Store
from core.store.states import Status

# what leaving out an optional data key means, said in its notice
WITHOUT = {
    "val_data": "validation uses a held-out part of data",
    "test_data": "no test split is scored",
    "eval_data": "its zero-shot check is skipped",
}
SCORING = ("separation.blend", "separation.evaluate", "noise.evaluate")  # score, train nothing


def check_inputs(
    registry: Registry, exp: Experiment, store: Store, queued: bool = False,
    after: Iterable[str] = (),
) -> tuple[Experiment, list[str]]:
    """The experiment as it will run (absent optional data left out) and the notices to give;
    RunError, before anything is written, for a source or reference that points at nothing."""
    where = f"{registry.path}: experiment '{exp.name}'"
    experiment, notices = _data(registry, exp, where, _scores(registry, store, exp))
    waits = list(after)
    for key, ref in [*exp.references.items(), *(("sources", s) for s in exp.sources)]:
        _reference(registry, store, where, key, ref, queued, waits)
    return experiment, notices


def _scores(registry: Registry, store: Store, exp: Experiment) -> bool:
    """Will the run score anything? An evaluation does; a blend only when all its sources are
    nkd separators (a blend of plain state dicts from a script of one's own is not evaluated)."""
    if exp.recipe not in SCORING:
        return False
    for ref in exp.sources:
        if ref.kind == "file":
            return False
        if ref.kind == "run":
            run = store.get_run(ref.target)
            recipe = run.get("recipe") if run else None
        else:
            source = registry.experiments.get(ref.target.partition("@")[0])
            recipe = source.recipe if source else None
        if not str(recipe or "").startswith("separation."):
            return False
    return True


def _data(
    registry: Registry, exp: Experiment, where: str, scores: bool
) -> tuple[Experiment, list[str]]:
    params = dict(exp.params)
    notices: list[str] = []
    dropped: list[str] = []
    own = "data" in params and not data_source(registry, params["data"]).settings.get("synth")
    for key in DATA_REF_KEYS:
        if key not in params:
            continue
        src = data_source(registry, params[key])  # a folder path that is not there: refused
        synth = src.settings.get("synth")
        if own and key != "data" and synth and key not in exp.overridden:
            notices.append(f"{key} '{src.name}' is demo data and data is your own: left out, "
                           f"{WITHOUT[key]} (--set {key}={src.name} scores it)")
            del params[key]
            continue
        if src.root.is_dir():
            continue
        synth = src.settings.get("synth")
        demo = f" (`nkd data synth {synth}` writes a demo set)" if synth else ""
        missing = f"key '{key}': data source '{src.name}': folder {src.root} does not exist"
        if key == "data" or not synth:
            raise RunError(f"{where}: {missing}{demo}; nothing was started")
        dropped.append(f"{where}: {missing}{demo}")
        notices.append(f"{key} '{src.name}' ({src.root}) is a demo source that is not on disk: "
                       f"left out, {WITHOUT[key]}")
        del params[key]
    if scores and dropped and not any(k in params for k in ("val_data", "test_data")):
        raise RunError(f"{dropped[0]}; give data of your own with --set val_data=FOLDER "
                       f"(or test_data); nothing was started")
    if not notices:
        return exp, []
    return dataclasses.replace(exp, params=params), notices


def _reference(
    registry: Registry, store: Store, where: str, key: str, ref: Reference, queued: bool,
    after: list[str],
) -> None:
    """Refuse a reference that points at nothing finished. A queued run may wait for a run it
    names (or a run of the experiment it names) among those in `after`."""
    if ref.kind == "file":
        path = Path(ref.target).expanduser()
        path = path if path.is_absolute() else registry.root / path
        if not path.is_file():
            raise RunError(f"{where}: key '{key}': checkpoint file {path} does not exist; "
                           f"nothing was started")
        return
    if queued and _waited_for(store, ref, after):
        return
    if ref.kind == "run":
        run = store.get_run(ref.target)
        if run is None:
            raise RunError(f"{where}: key '{key}': no run '{ref.target}'; nothing was started")
        if run["status"] != Status.FINISHED and not (queued and run["status"] in ACTIVE):
            raise RunError(f"{where}: key '{key}': run '{ref.target}' is {run['status']}, not "
                           f"finished: it has no checkpoint to build on; nothing was started")
        return
    try:
        find_run(store, ref.kind, ref.target, key)
    except RunError as exc:
        raise RunError(f"{where}: {exc}; nothing was started") from None


def _waited_for(store: Store, ref: Reference, after: list[str]) -> bool:
    if ref.kind == "run":
        return ref.target in after
    experiment = ref.target.partition("@")[0]
    for run_id in after:
        run = store.get_run(run_id)
        if run is not None and run["experiment"] == experiment:
            return True
    return False
