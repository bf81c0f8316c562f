"""Launching runs: the run folder and its config, placement on a free GPU (or Slurm), and the
detached worker."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.backends.gpus import Gpu, GpuError, read_gpus
from core.backends.local import start_worker, visible_ids
from core.errors import NkdError, RunError
from core.registry import DATA_REF_KEYS, Experiment, Registry, recipes, substitute_command
from core.registry.queue import QueueConfig
from core.registry.settings import DEFAULT
from core.registry.settings import resolve as resolve_settings
from core.registry.workspace import Workspace
from core.runs.inputs import check_inputs
from core.store import FINAL, Store
from core.store.reporter import Reporter
from core.util.files import atomic_write_json
from core.util.names import check_name, inside, open_append, run_path


@dataclass
class Launched:
    run_id: str
    run_dir: Path
    pid: int | None  # None: queued, the scheduler starts it
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES it was given
    notice: str | None = None  # one line for the user (a setting ignored on this box)
    skipped: tuple[str, ...] = ()  # optional parts left out (demo data not on disk), one line each


def allocate_run_dir(runs_dir: Path, experiment: str, now: datetime | None = None) -> Path:
    """`runs/<experiment>_<YYYYMMDD_HHMMSS>`, with a suffix on collision; claimed atomically."""
    check_name(experiment, f"{runs_dir}: experiment", RunError)
    stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{runs_dir}: cannot create the runs folder ({exc.strerror})") from None
    base = f"{experiment}_{stamp}"
    for n in range(1, 1000):
        candidate = runs_dir / (base if n == 1 else f"{base}_{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunError(f"{candidate}: cannot create the run folder ({exc.strerror})") from None
        if not inside(candidate, runs_dir):  # one more guard: the name rule keeps it inside
            candidate.rmdir()
            raise RunError(f"{candidate}: lies outside {runs_dir}; nothing was started")
        return candidate
    raise RunError(f"{runs_dir}: cannot allocate a run folder for '{experiment}'")


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
) -> Launched:
    """Record and start a run of a resolved experiment (one from the registry, or an ad-hoc
    one such as `nkd blend` makes). With `queued` the run is recorded `queued` and the
    workspace's scheduler starts it when its GPUs are free and the runs in `after` finished;
    without, it starts now on a free GPU, or is refused (nothing written) when none is."""
    name = exp.name
    where = f"{registry.path}: experiment '{name}'"
    if exp.recipe:
        recipes.check(exp.recipe, where)
    ws = Workspace.at(registry.path)
    cwd = None
    if exp.command:
        cwd = str((ws.root / exp.params.get("cwd", ".")).resolve())
        if not Path(cwd).is_dir():
            raise RunError(f"{where}: key 'cwd': folder {cwd} does not exist")
    slurm = exp.params.get("backend") == "slurm"
    own_store = store is None
    store = store or Store(ws.db_path)
    try:
        exp, skipped = check_inputs(registry, exp, store, queued or slurm, after)
        if slurm:
            launched = _submit_to_slurm(registry, ws, exp, store, list(after), sweep, cwd,
                                        skipped)
        else:
            with _placement(ws, exp, queued, store) as (gpus, notice):
                launched = _record_and_start(registry, ws, exp, store, queued, list(after),
                                             sweep, cwd, gpus, notice, skipped=skipped)
        return launched
    finally:
        if own_store:
            store.close()


@contextmanager
def _placement(
    ws: Workspace, exp: Experiment, queued: bool, store: Store
) -> Iterator[tuple[list[Gpu] | None, str | None]]:
    """For a run started now: its GPUs, chosen and recorded under the placement lock."""
    from core.backends.queue.placement import need_of, place
    from core.backends.queue.scheduler import lease_rows, nkd_pids, placement_lock

    wanted = exp.params.get("gpus")
    if queued:
        yield None, None
        return
    with placement_lock(ws):
        try:
            gpus = read_gpus()
        except GpuError as exc:
            raise RunError(str(exc)) from None
        if not gpus:
            notice = None
            if wanted:
                notice = (f"this box has no GPU: '{exp.name}' asks for gpus = {wanted}, which "
                          f"is ignored here")
            yield None, notice
            return
        row = {"needs_gpus": wanted, "recipe": exp.recipe or "command",
               "gpu_memory": _memory(exp)}
        pids = nkd_pids() if any(g.processes for g in gpus) else set()
        placed, why = place(need_of(row, True), gpus, lease_rows(store), registry_queue(ws),
                            pids)
        if placed is None:
            raise RunError(f"experiment '{exp.name}': no GPU is free now ({why}); "
                           f"`nkd run {exp.name} --queue` waits for one")
        yield placed, None


def registry_queue(ws: Workspace) -> QueueConfig:
    from core.registry import load_registry

    try:
        return load_registry(ws.registry_path).queue
    except NkdError:
        return QueueConfig()


def _memory(exp: Experiment) -> float | None:
    from core.registry.queue import parse_memory

    value = exp.params.get("gpu_memory")
    return None if value is None else parse_memory(value)


def _submit_to_slurm(
    registry: Registry,
    ws: Workspace,
    exp: Experiment,
    store: Store,
    after: list[str],
    sweep: str | None,
    cwd: str | None,
    skipped: list[str],
) -> Launched:
    """Record the run (`queued`: pending in Slurm) and submit its sbatch script; the runs it
    waits for become `--dependency=afterok:` on their jobs."""
    from core.backends import slurm

    if "slurm" not in registry.backends:
        raise RunError(f"{registry.path}: experiment '{exp.name}': backend 'slurm' needs a "
                       f"[backends.slurm] table")
    if not slurm.available():
        raise RunError(f"experiment '{exp.name}': sbatch and squeue are not on this machine's "
                       f"PATH; run it here without `--on slurm`, or from the cluster's login node")
    depends = []
    for parent in after:
        row = store.get_run(parent)
        if row is None:
            raise RunError(f"--after: no run '{parent}' in {store.path}")
        if row["status"] == "finished":
            continue
        if row["status"] in FINAL:
            raise RunError(f"--after: run '{parent}' ended {row['status']}; nothing to wait for")
        if row.get("backend") != "slurm" or not row.get("job_id"):
            raise RunError(f"--after: run '{parent}' runs on this box, not on Slurm; a Slurm job "
                           f"can wait only for Slurm jobs")
        depends.append(row["job_id"])
    launched = _record_and_start(registry, ws, exp, store, True, after, sweep, cwd, None, None,
                                 backend="slurm", skipped=skipped)
    script = slurm.job_script(launched.run_dir, exp.params, registry.backends["slurm"])
    job_id = slurm.submit(store, launched.run_dir, script, depends)
    return dataclasses.replace(launched, notice=f"Slurm job {job_id}")


def _record_and_start(
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
    backend: str = "local",
    skipped: list[str] | None = None,
) -> Launched:
    name = exp.name
    run_dir = allocate_run_dir(ws.runs_dir, name)
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
    }
    atomic_write_json(run_dir / "config.json", config, sort_keys=False)  # class order matters
    reporter = Reporter(run_id, run_dir, store)
    reporter.event(
        {
            "type": "run",
            "experiment": name,
            "recipe": exp.recipe or "command",
            "status": "queued" if queued else "starting",
            "params": exp.params,
            "defaults": {k: settings[k] for k, o in origin.items() if o == DEFAULT},
            "select_by": settings.get("select_by"),
            "run_dir": str(run_dir),
            "seed": settings.get("seed"),
            "host": socket.gethostname(),
            "epochs_total": settings.get("epochs"),
            "gpus": exp.params.get("gpus"),
            "gpu_memory": _memory(exp),
            "priority": exp.params.get("priority", 0),
            **({"after": after} if after else {}),
            **({"sweep": sweep} if sweep else {}),
            **({"backend": backend} if backend != "local" else {}),
        }
    )
    reporter.close()
    said = tuple(skipped or ())
    if queued:
        return Launched(run_id, run_dir, None, skipped=said)
    pid = start_worker(run_dir, store=store, gpus=gpus)
    return Launched(run_id, run_dir, pid, visible_ids(gpus), notice, said)


def _source_table(registry: Registry, name: str) -> dict[str, Any]:
    """What a run needs of a data source: its settings, its folder, and where derived files
    (the clip index) go: the workspace, never the data folder."""
    from core.registry import data_source
    from core.registry.workspace import index_dir

    src = data_source(registry, name)
    return {**src.settings, "root": str(src.root.resolve()),
            "index_dir": str(index_dir(Workspace.at(registry.path).cache_dir, name))}


