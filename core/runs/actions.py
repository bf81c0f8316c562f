"""What a person does to a run: pause, resume, suspend, stop, kill, restart; cancel or move it
in the queue. Which status each may start from is core.store.states' table; how it reaches
the run is its backend's (core.backends): the same code for this box and for Slurm."""

from __future__ import annotations

from core.backends import backend_of
from core.errors import RunError
from core.registry.workspace import Workspace
from core.runs import control
from core.runs.status import current_status, wait_for
from core.store import Store
from core.store.reporter import record
from core.store.states import FINAL, MAY, Status

KILL_GRACE_S = 10.0

RESTARTABLE = MAY["restart"]


def cancel(store: Store, ws: Workspace, run_id: str) -> str:
    """Take a run that has not started out of the queue (or Slurm's)."""
    row = store.require_run(run_id)
    if row["status"] not in MAY["cancel"]:
        raise RunError(f"run '{run_id}' is {row['status']}, not queued; `nkd stop` ends a "
                       f"running run")
    return backend_of(row).control_waiting(store, ws, row, "stop")


def set_priority(store: Store, ws: Workspace, run_id: str, priority: int | None) -> str:
    """Set a queued run's priority; None puts it first (above every other queued run)."""
    row = store.require_run(run_id)
    if row["status"] not in MAY["prioritize"]:
        raise RunError(f"run '{run_id}' is {row['status']}, not queued")
    if priority is None:
        top = store.conn.execute(
            "SELECT max(priority) FROM runs WHERE status = ?", (Status.QUEUED,)
        ).fetchone()[0] or 0
        priority = int(top) + 1
    record(run_id, ws.run_dir(run_id), store, "queue", priority=priority)
    return f"{run_id}: priority {priority}"


def restart(store: Store, ws: Workspace, run_id: str) -> str:
    """Start an ended run again from its last checkpointed state (the end of its last completed
    epoch), or from the start when none was saved: after a stop, a crash, a full disk or a
    reboot the run goes on as the same run."""
    row = store.require_run(run_id)
    status = current_status(store, ws, row)
    if status not in MAY["restart"]:
        raise RunError(f"run '{run_id}' is {status}; only {', '.join(MAY['restart'])} runs "
                       f"restart")
    if row["recipe"] == "command":
        raise RunError(f"run '{run_id}': a command experiment keeps no restart state")
    states = sorted((ws.checkpoints_dir / run_id).glob("*_state.pt"))
    backend = backend_of(row)
    done = backend.start_again(store, ws, store.require_run(run_id))
    if not backend.writes_store:  # a Slurm job's state may be on its node's disk
        return f"{run_id}: {done}"
    if not states:  # it ended in its first epoch, or its first state could not be written
        return f"{run_id}: restarted from the start, no state was saved ({done})"
    return f"{run_id}: restarted from {states[-1].name} ({done})"


def send(store: Store, ws: Workspace, run_id: str, action: str) -> str:
    """pause | resume | suspend | stop a run; returns a one-line description of what was done.
    The request is the same file on every backend; the backend wakes the worker to read it."""
    row = store.require_run(run_id)
    status = current_status(store, ws, row)
    row = store.require_run(run_id)
    backend = backend_of(row)
    if action == "resume" and status in backend.resumes:
        if row["recipe"] == "command":
            raise RunError(f"run '{run_id}': a command experiment cannot be resumed")
        states = sorted((ws.checkpoints_dir / run_id).glob("*_state.pt"))
        done = backend.start_again(store, ws, row)
        if not backend.writes_store:
            return f"{run_id}: {done}"
        where = f"its suspend state {states[-1].name}" if states else "the start (no state saved)"
        return f"{run_id}: resumes from {where} ({done})"
    if status in FINAL:
        raise RunError(f"run '{run_id}' is not running (status {status})")
    if status in MAY["cancel"]:
        return backend.control_waiting(store, ws, row, action)
    if action == "suspend" and row["recipe"] == "command":
        raise RunError(
            f"run '{run_id}': suspend needs a built-in recipe; a command experiment can be "
            f"paused or stopped"
        )
    if backend.checked_by_pid and row.get("pid") is None:
        raise RunError(f"run '{run_id}' has not started yet (status {status})")
    if action == "pause" and status == Status.PAUSED:
        return f"{run_id}: already paused"
    if action == "resume" and status not in MAY["resume"]:
        return f"{run_id}: not paused (status {status})"
    if status not in MAY[action]:
        raise RunError(f"run '{run_id}' is {status}; {action} acts on a running run")
    hard = False
    try:
        control.request(ws.run_dir(run_id), action)
    except OSError as exc:
        if action != "stop":
            raise RunError(
                f"run '{run_id}': cannot write {ws.run_dir(run_id) / control.CONTROL_FILE} "
                f"({exc.strerror}); {action} needs it, stop and kill do not"
            ) from None
        hard = True  # the worker's own meaning of SIGTERM is stop
    backend.wake(row, hard)
    return f"{run_id}: {action} requested" + (
        "" if backend.writes_store else f" ({backend.describe(row)})") + _frozen(row)


def _frozen(row: dict) -> str:
    """What to do when the run's worker on this box is stopped by a signal: until it is
    continued, it reads no request."""
    from core.backends.liveness import is_alive, is_frozen

    pid = row.get("pid")
    if not backend_of(row).checked_by_pid or not pid or not is_frozen(int(pid)) \
            or not is_alive(int(pid), row.get("pid_start"), row.get("pid_ticks")):
        return ""
    return (f"; but its worker (pid {pid}) is frozen (SIGSTOP or ctrl-Z): it acts on this once "
            f"continued (kill -CONT {pid}), or `nkd kill {row['id']}` ends it now")


def kill(store: Store, ws: Workspace, run_id: str, grace: float = KILL_GRACE_S) -> str:
    """Ask the run to stop; if it has not ended within `grace` seconds, end every process it
    started (on this box: its worker's and script's groups and everything carrying the run's
    mark; on Slurm: `scancel`). An ended run's leftovers (a script's children after its worker
    was killed) are killed too."""
    from core.backends.procs import kill_all, run_processes

    row = store.require_run(run_id)
    status = current_status(store, ws, row)
    if status in FINAL:
        leftovers = run_processes(ws.run_dir(run_id))
        if not leftovers:
            raise RunError(f"run '{run_id}' is not running (status {status})")
        return f"{run_id}: {status}; killed {kill_all(leftovers)} leftover process(es)"
    return backend_of(row).hard_stop(
        store, ws, row, status, grace, ask_stop=lambda: send(store, ws, run_id, "stop"),
        wait=lambda seconds: wait_for(store, run_id, FINAL, seconds) is not None)
