"""Launching runs: the run folder and its config, placement on a free GPU (or Slurm), and the
detached worker."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.backends import backend_named
from core.backends.gpus import Gpu
from core.backends.local import visible_ids
from core.backends.space import check_launch as check_space
from core.backends.this_box import LOCAL
from core.errors import RunError
from core.registry import DATA_REF_KEYS, Experiment, Registry, recipes, substitute_command
from core.registry.key import TRAINING
from core.registry.keys import KEYS
from core.registry.queue import parse_memory
from core.registry.settings import DEFAULT, gpus_of
from core.registry.settings import resolve as resolve_settings
from core.registry.workspace import Workspace
from core.runs import differences, machine, provenance
from core.runs.device_check import check_device
from core.runs.inputs import check_inputs
from core.store import Store
from core.store.reporter import record
from core.store.states import Status
from core.util.files import atomic_write_json
from core.util.names import allocate_run_dir, open_append, run_path
from core.util.project import PROJECT_ROOT

if TYPE_CHECKING:
    from core.backends.prestart import Prestarted


@dataclass
class Launched:
    run_id: str
    run_dir: Path
    pid: int | None  # None: queued, the scheduler starts it
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES it was given
    notice: str | None = None  # one line for the user (a setting ignored on this box)
    skipped: tuple[str, ...] = ()  # optional parts left out (demo data not on disk), one line each


def _command_argv(argv: list[str]) -> list[str]:
    # "python" in a registry means the Python nkd itself runs on (the project's environment)
    if argv and argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


def launch(
    registry: Registry,
    name: str,
    overrides: Iterable[str] = (),
    store: Store | None = None,
) -> Launched:
    """Resolve, record and start one run; raises RegistryError/RunError before writing anything."""
    return launch_experiment(registry, registry.resolve(name, list(overrides)), store)


def launch_experiment(
    registry: Registry,
    exp: Experiment,
    store: Store | None = None,
    queued: bool = False,
    after: Iterable[str] = (),
    sweep: str | None = None,
    made: provenance.Snapshot | None = None,
    rerun: dict[str, Any] | None = None,
    halving: dict[str, Any] | None = None,
    prestarted: Prestarted | None = None,
) -> Launched:
    """Record and start a run of a resolved experiment (one from the registry, or an ad-hoc
    one such as `nkd blend` makes). With `queued` the run is recorded `queued` and the
    workspace's scheduler starts it when its GPUs are free and the runs in `after` finished;
    without, it starts now on a free GPU, or is refused (nothing written) when none is.
    `made`: its code and data as already read (`nkd rerun`), `rerun`: the run it repeats.
    `prestarted`: a worker already started, waiting on its run folder, for a run that starts
    now on this box (the caller cancels it when this raises)."""
    name = exp.name
    where = f"{registry.path}: experiment '{name}'"
    if exp.recipe:
        recipes.check(exp.recipe, where)
    ws = Workspace.at(registry.path)
    cwd = command_cwd(ws, exp)
    if cwd is not None:
        if not Path(cwd).is_dir():
            raise RunError(f"{where}: key 'cwd': folder {cwd} does not exist")
    backend = backend_named(exp.params.get("backend"))
    backend.check_launch(registry.backends, where)
    own_store = store is None
    store = store or Store(ws.db_path)
    try:
        queued = queued or backend.starts_queued
        exp, skipped = check_inputs(registry, exp, store, queued, after)
        _family_checks(exp, registry, store, where)  # after the absent demo parts are left out
        if not (queued and not backend.starts_queued):  # the queue holds one that cannot fit
            check_space(ws, store, name, where, exp.recipe, exp.params)
        if exp.recipe:
            check_device(exp.params.get("device"), gpus_of(exp.params),
                         backend.checked_by_pid, where)
        depends = backend.dependencies(store, list(after))
        need = {"gpus": exp.params.get("gpus"), "gpu_memory": exp.params.get("gpu_memory"),
                "recipe": exp.recipe}
        with backend.placement(ws, need, name, queued and not backend.starts_queued,
                               store) as (gpus, notice):
            launched = _record_run(registry, ws, exp, store, queued, list(after),
                                   sweep, cwd, gpus, notice, backend.name, skipped, made, rerun,
                                   halving, prestarted and prestarted.run_dir)
            if queued and not backend.starts_queued:  # the workspace's scheduler starts it
                return launched
            if prestarted is not None:
                pid, said = prestarted.release(store, gpus), None
            else:
                pid, said = backend.start(store, launched.run_dir, gpus, depends, exp.params,
                                          registry.backends)
        return dataclasses.replace(launched, pid=pid, notice=said or launched.notice)
    finally:
        if own_store:
            store.close()


def _family_checks(exp: Experiment, registry: Registry, store: Store, where: str) -> None:
    """What the run names (checkpoint files, its folders' labels), checked by its family as
    its recipe will read it: one line naming the key, exit 2, nothing recorded."""
    check = recipes.launch_check(exp.recipe)
    if check is None:
        return
    try:
        check(registry, exp, store)
    except RunError as exc:
        raise RunError(f"{where}: {exc}; nothing was started") from None


def _memory(exp: Experiment) -> float | None:
    value = exp.params.get("gpu_memory")
    return None if value is None else parse_memory(value)


def _record_run(
    registry: Registry,
    ws: Workspace,
    exp: Experiment,
    store: Store,
    queued: bool,
    after: list[str],
    sweep: str | None,
    cwd: str | None,
    gpus: list[Gpu] | None,
    notice: str | None,
    backend: str,
    skipped: list[str] | None = None,
    made: provenance.Snapshot | None = None,
    rerun: dict[str, Any] | None = None,
    halving: dict[str, Any] | None = None,
    run_dir: Path | None = None,
) -> Launched:
    """The run folder (`run_dir`: one allocated already), config.json, provenance.json and the
    run's first event (`queued`, or `starting` for a worker started next); nothing is started
    here."""
    name = exp.name
    run_dir = run_dir or allocate_run_dir(ws.runs_dir, name)
    run_id = run_dir.name
    if skipped:  # said first in the run's log, where its worker's output follows
        log = open_append(run_path(run_dir, "output.log"))
        try:
            os.write(log, "".join(f"nkd: {line}\n" for line in skipped).encode())
        finally:
            os.close(log)
    settings, origin = resolve_settings(exp.recipe, exp.params, exp.from_defaults)
    config: dict[str, Any] = {
        "run_id": run_id,
        "experiment": name,
        "recipe": exp.recipe,
        "command": _command_argv(substitute_command(exp)) if exp.command else None,
        "cwd": cwd,
        "env": {k: str(v) for k, v in exp.params.get("env", {}).items()},
        "params": exp.params,
        # every key the recipe reads, defaults filled in, and where each value came from
        "settings": settings,
        "settings_origin": origin,
        "seed": settings.get("seed"),
        "device": settings.get("device"),
        "registry": str(ws.registry_path),
        "root": str(ws.root),
        "db": str(ws.db_path),
        "cache_dir": str(ws.cache_dir),
        "checkpoints_dir": str(ws.checkpoints_dir / run_id),
        "references": {
            k: {"kind": r.kind, "target": r.target} for k, r in exp.references.items()
        },
        "sources": [
            {"ref": str(s), "kind": s.kind, "target": s.target, "weight": s.weight}
            for s in exp.sources
        ],
        "data_sources": {
            exp.params[key]: _source_table(registry, exp.params[key])
            for key in DATA_REF_KEYS
            if key in exp.params
        },
        "backend": backend,
        "created_at": time.time(),
        **({"halving": halving} if halving else {}),  # its sweep's successive halving
    }
    atomic_write_json(run_dir / "config.json", config, sort_keys=False)  # class order matters
    if halving:  # a trial trains to its sweep's first rung, then waits to be promoted
        from core.backends.queue.halving import set_rung

        set_rung(run_dir, halving["rungs"][0])
    if made is None:  # what made the run: code, data, environment (never fails it)
        made = provenance.snapshot(code_folder(cwd), data_roots(registry, exp), ws.cache_dir)
    said, recorded = provenance.record(run_dir, made, rerun, ws.cache_dir)
    if said:
        log = open_append(run_path(run_dir, "output.log"))
        try:
            os.write(log, "".join(f"nkd: {line}\n" for line in said).encode())
        finally:
            os.close(log)
    record(
        run_id,
        run_dir,
        store,
        "run",
        **{
            "experiment": name,
            "recipe": exp.recipe or "command",
            "status": Status.QUEUED if queued else Status.STARTING,
            "params": exp.params,
            "defaults": {k: settings[k] for k, o in origin.items() if o == DEFAULT},
            "select_by": settings.get("select_by"),
            "run_dir": str(run_dir),
            "seed": settings.get("seed"),
            "host": machine.host(),
            # a recipe that trains nothing (soft labels, an ensemble, an evaluation, a blend)
            # has no epochs, whatever `epochs` it inherits: its EPOCH column says `-`
            "epochs_total": settings.get("epochs") if not exp.recipe or exp.recipe in TRAINING
            else None,
            "gpus": exp.params.get("gpus"),
            "gpu_memory": _memory(exp),
            "priority": exp.params.get("priority", KEYS["priority"].default),
            **({"after": after} if after else {}),
            **({"sweep": sweep} if sweep else {}),
            **({"backend": backend} if backend != LOCAL.name else {}),
            **({"rerun_of": rerun["of"]} if rerun else {}),
            # what made it, in its record too (provenance.json holds the whole of it)
            "made": differences.facets(recorded),
        },
    )
    return Launched(run_id, run_dir, None, visible_ids(gpus), notice,
                    (*(skipped or ()), *said))


def code_folder(cwd: str | None) -> Path:
    """Where a run's code is: a command's working directory, else nkd's own recipes."""
    return Path(cwd) if cwd else PROJECT_ROOT


def command_cwd(ws: Workspace, exp: Experiment) -> str | None:
    """A command experiment's working directory, resolved; None for a recipe."""
    return str((ws.root / exp.params.get("cwd", KEYS["cwd"].default)).resolve()) \
        if exp.command else None


def data_roots(registry: Registry, exp: Experiment) -> dict[str, Path]:
    """The folder of each data source a run reads, by key (`data`, `val_data`, ...)."""
    from core.registry import data_source

    return {key: data_source(registry, exp.params[key]).root.resolve()
            for key in DATA_REF_KEYS if key in exp.params}


def _source_table(registry: Registry, name: str) -> dict[str, Any]:
    """What a run needs of a data source: its settings, its folder, and where derived files
    (the clip index) go: the workspace, never the data folder."""
    from core.registry import data_source
    from core.registry.workspace import index_dir

    src = data_source(registry, name)
    return {**src.settings, "root": str(src.root.resolve()),
            "index_dir": str(index_dir(Workspace.at(registry.path).cache_dir, name))}


