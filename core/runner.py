"""Launching runs as detached workers, finding them again, and controlling them."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core import control, recipes
from core.errors import NkdError, RunError
from core.events import final_status
from core.gpus import Gpu, GpuError, read_gpus
from core.liveness import identity, is_alive
from core.names import check_name, inside, open_append, run_path
from core.procs import MARK, kill_all, run_processes
from core.queue.config import QueueConfig
from core.registry import DATA_REF_KEYS, Experiment, Registry, substitute_command
from core.reporter import Reporter
from core.store import ACTIVE, FINAL, Store
from core.workspace import Workspace, atomic_write_json

KILL_GRACE_S = 10.0
# a run that is queued but whose worker has not reported yet is given this long before "lost"
START_GRACE_S = 30.0
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Launched:
    run_id: str
    run_dir: Path
    pid: int | None  # None: queued, the scheduler starts it
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES it was given
    notice: str | None = None  # one line for the user (a setting ignored on this box)


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
        if slurm:
            return _submit_to_slurm(registry, ws, exp, store, list(after), sweep, cwd)
        with _placement(ws, exp, queued, store) as (gpus, notice):
            return _record_and_start(registry, ws, exp, store, queued, list(after), sweep,
                                     cwd, gpus, notice)
    finally:
        if own_store:
            store.close()


@contextmanager
def _placement(
    ws: Workspace, exp: Experiment, queued: bool, store: Store
) -> Iterator[tuple[list[Gpu] | None, str | None]]:
    """For a run started now: its GPUs, chosen and recorded under the placement lock."""
    from core.queue.placement import need_of, place
    from core.queue.scheduler import lease_rows, nkd_pids, placement_lock

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
    from core.queue.config import parse_memory

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
                                 backend="slurm")
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
) -> Launched:
    name = exp.name
    run_dir = allocate_run_dir(ws.runs_dir, name)
    run_id = run_dir.name
    config: dict[str, Any] = {
        "run_id": run_id,
        "experiment": name,
        "recipe": exp.recipe,
        "command": _command_argv(substitute_command(exp)) if exp.command else None,
        "cwd": cwd,
        "env": {k: str(v) for k, v in exp.params.get("env", {}).items()},
        "params": exp.params,
        "seed": exp.params.get("seed"),
        "device": exp.params.get("device", "auto"),
        "registry": str(ws.registry_path),
        "root": str(ws.root),
        "db": str(ws.db_path),
        "checkpoints_dir": str(ws.checkpoints_dir / run_id),
        "references": {
            k: {"kind": r.kind, "target": r.target} for k, r in exp.references.items()
        },
        "sources": [
            {"ref": str(s), "kind": s.kind, "target": s.target, "weight": s.weight}
            for s in exp.sources
        ],
        "data_sources": {
            exp.params[key]: {
                **registry.data[exp.params[key]].settings,
                "root": str(registry.data[exp.params[key]].root.resolve()),
            }
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
            "run_dir": str(run_dir),
            "seed": exp.params.get("seed"),
            "host": socket.gethostname(),
            "epochs_total": exp.params.get("epochs"),
            "gpus": exp.params.get("gpus"),
            "gpu_memory": _memory(exp),
            "priority": exp.params.get("priority", 0),
            **({"after": after} if after else {}),
            **({"sweep": sweep} if sweep else {}),
            **({"backend": backend} if backend != "local" else {}),
        }
    )
    reporter.close()
    if queued:
        return Launched(run_id, run_dir, None)
    pid = start_worker(run_dir, store=store, gpus=gpus)
    return Launched(run_id, run_dir, pid, _visible(gpus), notice)


def _visible(gpus: list[Gpu] | None) -> str | None:
    return None if gpus is None else ",".join(g.visible_id for g in gpus)


def start_worker(
    run_dir: Path, store: Store, resume: bool = False, gpus: list[Gpu] | None = None
) -> int:
    """Start `python -m core.worker` in its own session; its output is the run's output.log.

    The worker's process (pid and kernel start ticks) is recorded at once, so the run can be
    told alive or gone from its first moment; every process it starts carries the run's mark.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env[MARK] = run_dir.name
    visible = _visible(gpus)
    if visible is not None:  # the run sees only its own GPUs, in PCI order like nvidia-smi
        env["CUDA_VISIBLE_DEVICES"] = visible
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    argv = [sys.executable, "-m", "core.worker", str(run_dir)] + (["--resume"] if resume else [])
    log = open_append(run_path(run_dir, "output.log"))
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=run_dir,
            env=env,
        )
    finally:
        os.close(log)
    # reap it when it ends, so a long-lived launcher (the TUI) leaves no zombie behind
    threading.Thread(target=proc.wait, daemon=True).start()
    reporter = Reporter(run_dir.name, run_dir, store)
    try:
        reporter.event({"type": "worker", **identity(proc.pid),
                        **({"gpus": visible} if visible is not None else {})})
    finally:
        reporter.close()
    return proc.pid


# ── finding runs ────────────────────────────────────────────────────────────────────────────


def _gone(row: dict[str, Any], now: float) -> bool:
    """Is the process of an active row gone? A run whose worker has not been recorded yet
    (launched or restarted a moment ago) gets START_GRACE_S from its last status change."""
    if row.get("pid") is None:
        since = row.get("status_at") or row.get("created_at") or 0
        return now - since >= START_GRACE_S
    return not is_alive(row["pid"], row.get("pid_start"), row.get("pid_ticks"))


def effective_status(row: dict[str, Any], host: str | None = None) -> str:
    """The status to show: an active run whose process is gone reads `lost` (not recorded;
    `record_if_lost` decides that, under the write lock)."""
    status = row["status"]
    if status not in ACTIVE or status == "queued":  # a queued run has no process yet
        return status
    if row.get("backend") == "slurm":
        return status  # followed through squeue (core.backends.slurm.refresh), not a pid
    if row.get("host") and row["host"] != (host or socket.gethostname()):
        return status  # another machine's process cannot be checked from here
    return "lost" if _gone(row, time.time()) else status


LOST_RECHECK_S = 0.2  # the second look, before `lost` is written


def record_if_lost(store: Store, ws: Workspace, run_id: str) -> bool:
    """Record `lost` for a run only if, at the moment of writing, its row is still active, its
    process is still gone (a second look, after a pause) and its events file holds no final
    status. The check and the write happen under the store's write lock, so a worker that
    records its end meanwhile wins, and so does a restart that has just started a new worker.
    A run the queue claimed but never started (its scheduler was killed in between) goes back
    to the queue instead."""
    time.sleep(LOST_RECHECK_S)
    unstarted = _claimed_by_queue(ws.run_dir(run_id))
    if unstarted is not None and _transition(
        store, ws, run_id, ("starting",),
        {"type": "status", "status": "queued", "resume": unstarted.get("resume", 0)},
        unless=lambda row: row.get("pid") is not None or not _gone(row, time.time()),
    ):
        from core.queue.scheduler import ensure_running

        ensure_running(ws)
        return False
    return _transition(
        store, ws, run_id, ACTIVE,
        {"type": "status", "status": "lost",
         "error": "worker process vanished without a final status"},
        unless=lambda row: row["status"] == "queued" or not _gone(row, time.time()),
    )


def _claimed_by_queue(run_dir: Path) -> dict[str, Any] | None:
    """The last status event if it is the queue's claim (`starting`, by the queue)."""
    from core.events import EventLog

    last = None
    for event in EventLog(run_dir / "events.jsonl"):
        if event["type"] == "status":
            last = event
    if last and last["status"] == "starting" and last.get("by") == "queue":
        return last
    return None


def _transition(
    store: Store,
    ws: Workspace,
    run_id: str,
    allowed: Iterable[str],
    event: dict[str, Any],
    unless: Callable[[dict[str, Any]], bool] = lambda _row: False,
) -> bool:
    """Record a status event (file, then store) only if, under the store's write lock, the
    run's status is one of `allowed` and `unless(row)` is false. A final status that the worker
    wrote to its file but not to the store is taken from the file instead."""
    from core.store.apply import HANDLERS

    run_dir = ws.run_dir(run_id)
    with store.write() as conn:
        cur = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
        found = cur.fetchone()
        if found is None:
            return False
        row = dict(zip([d[0] for d in cur.description], found, strict=True))
        if row["status"] not in tuple(allowed) or unless(row):
            return False
        final = final_status(run_dir / "events.jsonl") if run_dir.is_dir() else None
        if final is not None and row["status"] in ACTIVE and row["status"] != "queued":
            # the worker wrote its end to the file but not to the store: take it from there
            HANDLERS["status"](conn, run_id, final)
            return False
        event = {"t": time.time(), **event}
        try:  # into events.jsonl too, so `nkd reindex` keeps it
            reporter = Reporter(run_id, run_dir, None)
            reporter.event(event)
            reporter.close()
        except (RunError, OSError):
            pass  # a folder that cannot be written: the store still says it
        HANDLERS["status"](conn, run_id, event)
        return True


# ── the queue's side of a run ───────────────────────────────────────────────────────────────


def start_queued(
    store: Store, ws: Workspace, row: dict[str, Any], gpus: list[Gpu] | None
) -> bool:
    """Claim a queued run (`queued` -> `starting`, by the queue) and start its worker; False if
    someone else took or cancelled it first."""
    run_id = row["id"]
    claim = {"type": "status", "status": "starting", "by": "queue", "pid": None,
             "pid_start": None, "pid_ticks": None}
    if not _transition(store, ws, run_id, ("queued",), claim):
        return False
    start_worker(ws.run_dir(run_id), store, resume=bool(row.get("resume")), gpus=gpus)
    return True


def block(store: Store, ws: Workspace, run_id: str, reason: str) -> bool:
    """A queued run whose parent ended without finishing will never start: `blocked`."""
    return _transition(store, ws, run_id, ("queued",),
                       {"type": "status", "status": "blocked", "error": reason})


def cancel(store: Store, ws: Workspace, run_id: str) -> str:
    if _transition(store, ws, run_id, ("queued",),
                   {"type": "status", "status": "cancelled", "error": "cancelled in the queue"}):
        return f"{run_id}: cancelled"
    status = _get(store, run_id)["status"]
    raise RunError(f"run '{run_id}' is {status}, not queued; `nkd stop` ends a running run")


def set_priority(store: Store, ws: Workspace, run_id: str, priority: int | None) -> str:
    """Set a queued run's priority; None puts it first (above every other queued run)."""
    row = _get(store, run_id)
    if row["status"] != "queued":
        raise RunError(f"run '{run_id}' is {row['status']}, not queued")
    if priority is None:
        top = store.conn.execute(
            "SELECT max(priority) FROM runs WHERE status = 'queued'").fetchone()[0] or 0
        priority = int(top) + 1
    reporter = Reporter(run_id, ws.run_dir(run_id), store)
    try:
        reporter.event({"type": "queue", "priority": priority})
    finally:
        reporter.close()
    return f"{run_id}: priority {priority}"


def current_status(store: Store, ws: Workspace, row: dict[str, Any]) -> str:
    """One run's status now, read again from the store (a row read earlier may be stale);
    records `lost` when `record_if_lost` confirms it."""
    fresh = store.get_run(row["id"]) or row
    if fresh["status"] in ACTIVE and effective_status(fresh) == "lost":
        if _try_record_lost(store, ws, row["id"]):
            return "lost"
        fresh = store.get_run(row["id"]) or fresh
    return str(fresh["status"])


def _try_record_lost(store: Store, ws: Workspace, run_id: str) -> bool:
    try:
        return record_if_lost(store, ws, run_id)
    except sqlite3.Error:  # a read-only or full database: show it as it is, record nothing
        return False


def reconcile(store: Store, ws: Workspace) -> list[str]:
    """Check every run that claims to be alive; record `lost` for those that are."""
    host = socket.gethostname()
    suspects = [r["id"] for r in store.active_runs() if effective_status(r, host) == "lost"]
    return [run_id for run_id in suspects if _try_record_lost(store, ws, run_id)]


def resolve_run(store: Store, ref: str) -> str:
    """A run id from an id, a unique id prefix, or an experiment name (its latest run)."""
    matches = store.find_runs(ref)
    if ref in matches:
        return ref
    latest = store.latest_run(ref)
    if latest is not None:
        return latest["id"]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        shown = ", ".join(matches[:5])
        raise RunError(f"run '{ref}' is ambiguous: {len(matches)} runs match ({shown}, ...)")
    raise RunError(f"no run or experiment with runs named '{ref}' in {store.path}")


# ── control ─────────────────────────────────────────────────────────────────────────────────


RESTARTABLE = ("stopped", "failed", "lost", "suspended", "killed")


def _get(store: Store, run_id: str) -> dict[str, Any]:
    row = store.get_run(run_id)
    if row is None:
        raise RunError(f"no run '{run_id}' in {store.path}")
    return row


def _start_again(store: Store, ws: Workspace, run_id: str) -> str:
    """A new worker for an ended run, resuming from its state, on a GPU that is free now; a run
    that came through the queue, or finds no free GPU, goes back to the queue instead. Returns
    what was done. `starting` is recorded with no process first, so nothing mistakes the old,
    gone worker for the new one."""
    from core.queue.placement import need_of, place
    from core.queue.scheduler import ensure_running, lease_rows, nkd_pids, placement_lock

    row = _get(store, run_id)
    run_dir = ws.run_dir(run_id)
    with placement_lock(ws):
        try:
            gpus = read_gpus()
        except GpuError as exc:
            raise RunError(str(exc)) from None
        placed: list[Gpu] | None = None
        why = ""
        if gpus:
            pids = nkd_pids() if any(g.processes for g in gpus) else set()
            placed, why = place(need_of(row, True), gpus, lease_rows(store), registry_queue(ws),
                                pids)
        if row.get("queued_at") is not None or (gpus and placed is None):
            reporter = Reporter(run_id, run_dir, store)
            try:
                reporter.status("queued", resume=1)
            finally:
                reporter.close()
            ensure_running(ws)
            return "queued again" + (f" ({why})" if why else "")
        reporter = Reporter(run_id, run_dir, store)
        try:
            reporter.status("starting", pid=None, pid_start=None, pid_ticks=None)
        finally:
            reporter.close()
        pid = start_worker(run_dir, store, resume=True, gpus=placed)
        on = f" on GPU {_visible(placed)}" if placed else ""
        return f"pid {pid}{on}"


def restart(store: Store, ws: Workspace, run_id: str) -> str:
    """Start an ended run again from its last checkpointed state (the end of its last completed
    epoch): after a stop, a crash or a reboot the run goes on as the same run."""
    row = _get(store, run_id)
    status = current_status(store, ws, row)
    if status not in RESTARTABLE:
        raise RunError(f"run '{run_id}' is {status}; only {', '.join(RESTARTABLE)} runs restart")
    if row["recipe"] == "command":
        raise RunError(f"run '{run_id}': a command experiment keeps no restart state")
    if row.get("backend") == "slurm":
        return resubmit(store, ws, row)
    states = sorted((ws.checkpoints_dir / run_id).glob("*_state.pt"))
    if not states:
        raise RunError(
            f"run '{run_id}' has no checkpointed state yet (it ended in its first epoch)"
        )
    done = _start_again(store, ws, run_id)
    return f"{run_id}: restarted from {states[-1].name} ({done})"


def send(store: Store, ws: Workspace, run_id: str, action: str) -> str:
    """pause | resume | suspend | stop a run; returns a one-line description of what was done."""
    row = _get(store, run_id)
    status = current_status(store, ws, row)
    row = _get(store, run_id)
    run_dir = ws.run_dir(run_id)
    if row.get("backend") == "slurm":
        return _slurm_send(store, ws, row, status, action)
    if action == "resume" and status == "suspended":
        if row["recipe"] == "command":
            raise RunError(f"run '{run_id}': a command experiment cannot be resumed")
        states = sorted((ws.checkpoints_dir / run_id).glob("*_state.pt"))
        done = _start_again(store, ws, run_id)
        where = f"its suspend state {states[-1].name}" if states else "the start (no state saved)"
        return f"{run_id}: resumes from {where} ({done})"
    if status in FINAL:
        raise RunError(f"run '{run_id}' is not running (status {status})")
    if status == "queued":
        if action == "stop":
            return cancel(store, ws, run_id)
        raise RunError(f"run '{run_id}' is queued, not running yet; `nkd queue cancel` "
                       f"takes it out of the queue")
    if action == "suspend" and row["recipe"] == "command":
        raise RunError(
            f"run '{run_id}': suspend needs a built-in recipe; a command experiment can be "
            f"paused or stopped"
        )
    if row.get("pid") is None:
        raise RunError(f"run '{run_id}' has not started yet (status {status})")
    if action == "pause" and status == "paused":
        return f"{run_id}: already paused"
    if action == "resume" and status != "paused":
        return f"{run_id}: not paused (status {status})"
    signum = signal.SIGUSR1
    try:
        control.request(run_dir, action)
    except OSError as exc:
        if action != "stop":
            raise RunError(
                f"run '{run_id}': cannot write {run_dir / control.CONTROL_FILE} "
                f"({exc.strerror}); {action} needs it, stop and kill do not"
            ) from None
        signum = signal.SIGTERM  # the worker's own meaning of SIGTERM is stop
    try:
        os.kill(row["pid"], signum)
    except ProcessLookupError:
        raise RunError(f"run '{run_id}': its worker (pid {row['pid']}) is gone") from None
    return f"{run_id}: {action} requested"


def _slurm_send(store: Store, ws: Workspace, row: dict[str, Any], status: str,
                action: str) -> str:
    """Control of a Slurm run: a pending job is held, released or cancelled; a running one
    gets the request file and `scancel --batch --signal=USR1` (its worker is the batch step);
    a suspended one is submitted again and resumes from its state."""
    from core.backends import slurm

    run_id, job = row["id"], row.get("job_id")
    if action == "resume" and status in ("suspended", "stopped", "failed", "lost", "killed"):
        return resubmit(store, ws, row)
    if status in FINAL:
        raise RunError(f"run '{run_id}' is not running (status {status})")
    if not job:
        raise RunError(f"run '{run_id}' has no Slurm job yet")
    if status == "queued":
        if action == "stop":
            slurm.cancel(job)
            _transition(store, ws, run_id, ("queued",), {
                "type": "status", "status": "cancelled", "error": f"Slurm job {job} cancelled"})
            return f"{run_id}: pending Slurm job {job} cancelled"
        if action in ("pause", "resume"):
            slurm.hold(job, action == "pause")
            done = "held" if action == "pause" else "released"
            return f"{run_id}: pending Slurm job {job} {done}"
        raise RunError(f"run '{run_id}' is pending in Slurm (job {job}); it can be held "
                       f"(pause), released (resume) or cancelled (stop)")
    if action == "pause" and status == "paused":
        return f"{run_id}: already paused"
    if action == "resume" and status != "paused":
        return f"{run_id}: not paused (status {status})"
    if action == "suspend" and row["recipe"] == "command":
        raise RunError(f"run '{run_id}': suspend needs a built-in recipe; a command experiment "
                       f"can be paused or stopped")
    try:
        control.request(ws.run_dir(run_id), action)
        slurm.signal_worker(job, "USR1")
    except OSError as exc:
        if action != "stop":
            raise RunError(f"run '{run_id}': cannot write {control.CONTROL_FILE} "
                           f"({exc.strerror}); {action} needs it, stop and kill do not") from None
        slurm.signal_worker(job, "TERM")
    return f"{run_id}: {action} requested (Slurm job {job})"


def resubmit(store: Store, ws: Workspace, row: dict[str, Any]) -> str:
    """Submit an ended Slurm run's job.sbatch again: it resumes from its last state."""
    from core.backends import slurm

    run_id = row["id"]
    script = ws.run_dir(run_id) / slurm.SCRIPT_NAME
    try:
        text = script.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunError(f"{script}: cannot be read ({exc.strerror})") from None
    reporter = Reporter(run_id, ws.run_dir(run_id), store)
    try:
        reporter.status("queued", pid=None, pid_start=None, pid_ticks=None, resume=1)
    finally:
        reporter.close()
    job = slurm.submit(store, ws.run_dir(run_id), text, [])
    return f"{run_id}: submitted again as Slurm job {job}; it resumes from its last state"


def wait_for(store: Store, run_id: str, statuses: Iterable[str], timeout: float) -> str | None:
    """Poll the store until the run reaches one of `statuses`; returns it, or None on timeout."""
    wanted = set(statuses)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = store.get_run(run_id)
        if row and row["status"] in wanted:
            return row["status"]
        time.sleep(0.1)
    return None


def kill(store: Store, ws: Workspace, run_id: str, grace: float = KILL_GRACE_S) -> str:
    """Ask the run to stop; if it has not ended within `grace` seconds, SIGKILL every process
    it started (its worker's and script's groups and everything carrying the run's mark).
    An ended run's leftovers (a script's children after its worker was killed) are killed too."""
    row = _get(store, run_id)
    status = current_status(store, ws, row)
    if row.get("backend") == "slurm" and status in ACTIVE and row.get("job_id"):
        from core.backends import slurm

        slurm.cancel(row["job_id"])  # SIGTERM to every process of the job, then SIGKILL
        final = "cancelled" if status == "queued" else "killed"
        _transition(store, ws, run_id, ACTIVE, {
            "type": "status", "status": final, "error": f"Slurm job {row['job_id']} cancelled"})
        return f"{run_id}: Slurm job {row['job_id']} cancelled"
    if status == "queued":
        return cancel(store, ws, run_id)
    if status in FINAL:
        leftovers = run_processes(run_id)
        if not leftovers:
            raise RunError(f"run '{run_id}' is not running (status {status})")
        return f"{run_id}: {status}; killed {kill_all(leftovers)} leftover process(es)"
    if status != "stopping" and row.get("pid"):
        try:
            send(store, ws, run_id, "stop")
        except RunError:
            pass  # gone or unreachable: SIGKILL below does not depend on it
    if wait_for(store, run_id, FINAL, grace):
        return f"{run_id}: stopped within the grace period"
    for pgid in (row.get("pid"), _child_pid(ws.run_dir(run_id))):
        if pgid:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    kill_all(run_processes(run_id))
    _transition(store, ws, run_id, ACTIVE, {"type": "status", "status": "killed",
                                           "error": f"killed after {grace:g} s without stopping"})
    return f"{run_id}: killed"


def _child_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "child.pid").read_text().strip())
    except (OSError, ValueError):
        return None
