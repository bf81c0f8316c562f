"""What a person does to a run: pause, resume, suspend, stop, kill, restart; cancel or move it
in the queue; the same for runs on Slurm."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from core.backends.gpus import Gpu, GpuError, read_gpus
from core.backends.local import start_worker, visible_ids
from core.backends.procs import kill_all, run_processes
from core.errors import RunError
from core.registry.workspace import Workspace
from core.runs import control
from core.runs.launch import registry_queue
from core.runs.status import current_status, wait_for
from core.store import ACTIVE, FINAL, Store
from core.store.reporter import Reporter
from core.store.transition import transition

KILL_GRACE_S = 10.0

RESTARTABLE = ("stopped", "failed", "lost", "suspended", "killed")


def cancel(store: Store, ws: Workspace, run_id: str) -> str:
    if transition(store, ws, run_id, ("queued",),
                   {"type": "status", "status": "cancelled", "error": "cancelled in the queue"}):
        return f"{run_id}: cancelled"
    status = store.require_run(run_id)["status"]
    raise RunError(f"run '{run_id}' is {status}, not queued; `nkd stop` ends a running run")


def set_priority(store: Store, ws: Workspace, run_id: str, priority: int | None) -> str:
    """Set a queued run's priority; None puts it first (above every other queued run)."""
    row = store.require_run(run_id)
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


def _start_again(store: Store, ws: Workspace, run_id: str) -> str:
    """A new worker for an ended run, resuming from its state, on a GPU that is free now; a run
    that came through the queue, or finds no free GPU, goes back to the queue instead. Returns
    what was done. `starting` is recorded with no process first, so nothing mistakes the old,
    gone worker for the new one."""
    from core.backends.queue.placement import need_of, place
    from core.backends.queue.scheduler import ensure_running, lease_rows, nkd_pids, placement_lock

    row = store.require_run(run_id)
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
        on = f" on GPU {visible_ids(placed)}" if placed else ""
        return f"pid {pid}{on}"


def restart(store: Store, ws: Workspace, run_id: str) -> str:
    """Start an ended run again from its last checkpointed state (the end of its last completed
    epoch): after a stop, a crash or a reboot the run goes on as the same run."""
    row = store.require_run(run_id)
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
    row = store.require_run(run_id)
    status = current_status(store, ws, row)
    row = store.require_run(run_id)
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
            transition(store, ws, run_id, ("queued",), {
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


def kill(store: Store, ws: Workspace, run_id: str, grace: float = KILL_GRACE_S) -> str:
    """Ask the run to stop; if it has not ended within `grace` seconds, SIGKILL every process
    it started (its worker's and script's groups and everything carrying the run's mark).
    An ended run's leftovers (a script's children after its worker was killed) are killed too."""
    row = store.require_run(run_id)
    status = current_status(store, ws, row)
    if row.get("backend") == "slurm" and status in ACTIVE and row.get("job_id"):
        from core.backends import slurm

        slurm.cancel(row["job_id"])  # SIGTERM to every process of the job, then SIGKILL
        final = "cancelled" if status == "queued" else "killed"
        transition(store, ws, run_id, ACTIVE, {
            "type": "status", "status": final, "error": f"Slurm job {row['job_id']} cancelled"})
        return f"{run_id}: Slurm job {row['job_id']} cancelled"
    if status == "queued":
        return cancel(store, ws, run_id)
    if status in FINAL:
        leftovers = run_processes(ws.run_dir(run_id))
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
    kill_all(run_processes(ws.run_dir(run_id)))
    transition(store, ws, run_id, ACTIVE, {"type": "status", "status": "killed",
                                           "error": f"killed after {grace:g} s without stopping"})
    return f"{run_id}: killed"


def _child_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "child.pid").read_text().strip())
    except (OSError, ValueError):
        return None
