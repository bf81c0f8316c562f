"""Launching runs as detached workers, finding them again, and controlling them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core import control, recipes
from core.errors import RunError
from core.liveness import is_alive
from core.registry import DATA_REF_KEYS, Experiment, Registry, substitute_command
from core.reporter import Reporter
from core.store import ACTIVE, FINAL, Store
from core.workspace import Workspace, atomic_write_json, read_json

KILL_GRACE_S = 10.0
# a run that is queued but whose worker has not reported yet is given this long before "lost"
START_GRACE_S = 30.0
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Launched:
    run_id: str
    run_dir: Path
    pid: int


def allocate_run_dir(runs_dir: Path, experiment: str, now: datetime | None = None) -> Path:
    """`runs/<experiment>_<YYYYMMDD_HHMMSS>`, with a suffix on collision; claimed atomically."""
    stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    runs_dir.mkdir(parents=True, exist_ok=True)
    base = f"{experiment}_{stamp}"
    for n in range(1, 1000):
        candidate = runs_dir / (base if n == 1 else f"{base}_{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
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


def launch_experiment(registry: Registry, exp: Experiment, store: Store | None = None) -> Launched:
    """Record and start a run of a resolved experiment (one from the registry, or an ad-hoc
    one such as `nkd blend` makes)."""
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
    own_store = store is None
    store = store or Store(ws.db_path)
    try:
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
            "created_at": time.time(),
        }
        atomic_write_json(run_dir / "config.json", config, sort_keys=False)  # class order matters
        reporter = Reporter(run_id, run_dir, store)
        reporter.event(
            {
                "type": "run",
                "experiment": name,
                "recipe": exp.recipe or "command",
                "status": "queued",
                "params": exp.params,
                "run_dir": str(run_dir),
                "seed": exp.params.get("seed"),
                "host": socket.gethostname(),
                "epochs_total": exp.params.get("epochs"),
            }
        )
        reporter.close()
        pid = start_worker(run_dir)
        return Launched(run_id, run_dir, pid)
    finally:
        if own_store:
            store.close()


def start_worker(run_dir: Path, resume: bool = False) -> int:
    """Start `python -m core.worker` in its own session; its output is the run's output.log."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    argv = [sys.executable, "-m", "core.worker", str(run_dir)] + (["--resume"] if resume else [])
    with open(run_dir / "output.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=run_dir,
            env=env,
        )
    # reap it when it ends, so a long-lived launcher (the TUI) leaves no zombie behind
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc.pid


# ── finding runs ────────────────────────────────────────────────────────────────────────────


def effective_status(row: dict[str, Any], host: str | None = None) -> str:
    """The status to show: an active run whose process is gone is `lost`."""
    status = row["status"]
    if status not in ACTIVE:
        return status
    if row.get("host") and row["host"] != (host or socket.gethostname()):
        return status  # another machine's process cannot be checked from here
    if row.get("pid") is None:
        started = row.get("created_at") or 0
        return status if time.time() - started < START_GRACE_S else "lost"
    return status if is_alive(row["pid"], row.get("pid_start")) else "lost"


def _record_lost(store: Store, ws: Workspace, run_id: str) -> None:
    run_dir = ws.run_dir(run_id)
    if run_dir.is_dir():  # into events.jsonl too, so `nkd reindex` keeps it
        reporter = Reporter(run_id, run_dir, store)
        reporter.status("lost", error="worker process vanished without a final status")
        reporter.close()
    else:
        store.set_status(run_id, "lost")


def current_status(store: Store, ws: Workspace, row: dict[str, Any]) -> str:
    """One run's effective status, recording `lost` when its process has vanished."""
    status = effective_status(row)
    if status == "lost" and row["status"] != "lost":
        _record_lost(store, ws, row["id"])
    return status


def reconcile(store: Store, ws: Workspace) -> list[str]:
    """Check every run that claims to be alive; record `lost` for those that are not."""
    host = socket.gethostname()
    lost = [r["id"] for r in store.active_runs() if effective_status(r, host) == "lost"]
    for run_id in lost:
        _record_lost(store, ws, run_id)
    return lost


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


RESTARTABLE = ("stopped", "failed", "lost", "suspended")


def restart(store: Store, ws: Workspace, run_id: str) -> str:
    """Start an ended run again from its last checkpointed state (the end of its last completed
    epoch): after a stop, a crash or a reboot the run goes on as the same run."""
    row = store.get_run(run_id)
    if row is None:
        raise RunError(f"no run '{run_id}' in {store.path}")
    status = current_status(store, ws, row)
    if status not in RESTARTABLE:
        raise RunError(f"run '{run_id}' is {status}; only {', '.join(RESTARTABLE)} runs restart")
    if row["recipe"] == "command":
        raise RunError(f"run '{run_id}': a command experiment keeps no restart state")
    states = sorted((ws.checkpoints_dir / run_id).glob("*_state.pt"))
    if not states:
        raise RunError(
            f"run '{run_id}' has no checkpointed state yet (it ended in its first epoch)"
        )
    store.set_status(run_id, "starting")
    pid = start_worker(ws.run_dir(run_id), resume=True)
    return f"{run_id}: restarted from {states[-1].name} (pid {pid})"


def send(store: Store, ws: Workspace, run_id: str, action: str) -> str:
    """pause | resume | suspend | stop a run; returns a one-line description of what was done."""
    row = store.get_run(run_id)
    if row is None:
        raise RunError(f"no run '{run_id}' in {store.path}")
    status = current_status(store, ws, row)
    run_dir = ws.run_dir(run_id)
    if action == "resume" and status == "suspended":
        config = read_json(run_dir / "config.json")
        if config.get("command"):
            raise RunError(f"run '{run_id}': a command experiment cannot be resumed")
        store.set_status(run_id, "starting")
        pid = start_worker(run_dir, resume=True)
        return f"{run_id}: restarted from its suspend checkpoint (pid {pid})"
    if status in FINAL:
        raise RunError(f"run '{run_id}' is not running (status {status})")
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
    control.request(run_dir, action)
    try:
        os.kill(row["pid"], signal.SIGUSR1)
    except ProcessLookupError:
        raise RunError(f"run '{run_id}': its worker (pid {row['pid']}) is gone") from None
    return f"{run_id}: {action} requested"


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
    """Ask the run to stop; if it has not ended within `grace` seconds, SIGKILL its groups."""
    row = store.get_run(run_id)
    if row is None:
        raise RunError(f"no run '{run_id}' in {store.path}")
    status = current_status(store, ws, row)
    if status in FINAL:
        raise RunError(f"run '{run_id}' is not running (status {status})")
    if status != "stopping" and row.get("pid"):
        send(store, ws, run_id, "stop")
    if wait_for(store, run_id, FINAL, grace):
        return f"{run_id}: stopped within the grace period"
    groups = [row["pid"]]
    child = ws.run_dir(run_id) / "child.pid"
    if child.is_file():
        groups.append(int(child.read_text().strip() or 0))
    for pgid in groups:
        if pgid:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    reporter = Reporter(run_id, ws.run_dir(run_id), store)
    reporter.status("killed", error=f"killed after {grace:g} s without stopping")
    reporter.close()
    return f"{run_id}: killed"
