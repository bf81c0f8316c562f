"""The workspace's one scheduler: starts queued runs when what they wait for has finished and their
GPUs (or, without GPUs, a slot) are free, by priority then age.

`python -m core.backends.queue.scheduler REGISTRY` runs it; `ensure_running` starts it on
demand, detached in its own session, so it survives logout. One instance per workspace holds
`nkd.queue.lock` (a file lock the kernel drops when the process dies, also on kill -9). A run is
claimed (`queued` -> `starting`, under the store's write lock, `start_queued`) before its worker
is started, so a restarted scheduler never starts it twice; a claim whose worker was never
started goes back to the queue (see `core.runs.status.record_if_lost`). It exits after a while
with nothing queued. It starts workers through core.backends.local and never imports core.runs.
Between cycles it waits on `nkd.queue.wake` (core/backends/queue/wake.py): a worker whose run
ended wakes it at once, so the next run starts without waiting out the poll.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.backends.gpus import Gpu, GpuError, read_gpus
from core.backends.local import start_worker
from core.backends.procs import python_env
from core.backends.queue.halving import Halver
from core.backends.queue.order import queued_rows
from core.backends.queue.place_lock import placement_lock
from core.backends.queue.placement import (
    Lease,
    Need,
    after_of,
    lease_rows,
    need_of,
    nkd_pids,
    place,
    states,
)
from core.backends.queue.sweep_hold import paused_sweeps
from core.backends.queue.wake import Waker
from core.backends.space import Expectations, free_bytes, short_of
from core.errors import NkdError
from core.registry.queue import QueueConfig
from core.registry.workspace import Workspace
from core.store import Store
from core.store.events import FINAL
from core.store.states import MAY, Status
from core.store.transition import transition

LOCK_NAME = "nkd.queue.lock"
PAUSE_NAME = "nkd.queue.paused"
LOG_NAME = "nkd.queue.log"
PID_NAME = "nkd.queue.pid"
CYCLE_S = 0.2
REMOTE_SYNC_S = 2.0  # how often halving trials on Slurm are ingested, to be seen at their rungs
IDLE_EXIT_S = float(os.environ.get("NKD_QUEUE_IDLE_S", "30"))  # exit after this long idle


def paused(ws: Workspace) -> bool:
    return (ws.root / PAUSE_NAME).exists()


def set_paused(ws: Workspace, on: bool) -> None:
    path = ws.root / PAUSE_NAME
    if on:
        path.write_text(f"{time.time()}\n")
    else:
        path.unlink(missing_ok=True)


@dataclass
class Decision:
    row: dict[str, Any]
    state: str  # start | wait | blocked
    reason: str
    gpus: list[Gpu] | None = None


class Queue:
    """One workspace's queue: what waits, why, and what can start now."""

    def __init__(self, ws: Workspace, store: Store) -> None:
        self.ws = ws
        self.store = store
        self._config = QueueConfig()
        self._config_key: tuple[float, int] | None = None

    def config(self) -> QueueConfig:
        """The registry's [queue] table, re-read when the file changes (kept if it breaks)."""
        try:
            st = self.ws.registry_path.stat()
            key = (st.st_mtime, st.st_size)
            if key != self._config_key:
                from core.registry import load_registry

                self._config = load_registry(self.ws.registry_path).queue
                self._config_key = key
        except (OSError, NkdError):
            pass
        return self._config

    def decide(self, gpus: list[Gpu] | None = None) -> list[Decision]:
        """Every queued run in order, with what would happen to it now."""
        rows = queued_rows(self.store)
        if not rows:
            return []
        config = self.config()
        if gpus is None:
            gpus = read_gpus()
        leases = lease_rows(self.store)
        pids = nkd_pids() if any(g.processes for g in gpus) else set()
        statuses = self._statuses({a for r in rows for a in after_of(r)})
        out = []
        gpu_states = None  # computed once, again only after a run is placed
        free = free_bytes(self.ws.checkpoints_dir)
        held = paused_sweeps(self.ws)
        expect = Expectations(self.store)
        # where a need is placed, worked out once until something is placed in this pass
        placements: dict[Need, tuple[list[Gpu] | None, str]] = {}
        for row in rows:
            state, reason = _dependencies(after_of(row), statuses)
            if state != "ready":
                out.append(Decision(row, state, reason))
                continue
            if row.get("sweep") in held:
                out.append(Decision(row, "wait", f"its sweep is paused (nkd sweep resume "
                                                 f"{row['sweep']})"))
                continue
            # a resumed run has its files already
            expected = None if row.get("resume") else expect.of_row(row)
            short = short_of(self.ws, expected, free) if expected and free is not None else None
            if short:
                out.append(Decision(row, "wait", f"waits for disk space: {short}"))
                continue
            need = need_of(row, bool(gpus))
            if need not in placements:
                if gpu_states is None:
                    gpu_states = states(gpus, leases, config, pids)
                placements[need] = place(need, gpus, leases, config, pids, gpu_states)
            placed, why = placements[need]
            if placed is None:
                out.append(Decision(row, "wait", why))
                continue
            out.append(Decision(row, "start", "", placed if gpus else None))
            # what it will hold counts for the runs after it in this same pass
            leases.append(Lease(row["id"], tuple(g.visible_id for g in placed),
                                row.get("gpu_memory")))
            gpu_states = None
            placements.clear()
            if free is not None and expected:
                free -= expected[0]  # and so does the space it will write
        return out

    def _statuses(self, ids: set[str]) -> dict[str, str]:
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        cur = self.store.conn.execute(f"SELECT id, status FROM runs WHERE id IN ({marks})",
                                      tuple(ids))
        return dict(cur.fetchall())

    def cycle(self) -> list[str]:
        """Start what can start now; mark runs whose parents failed `blocked`. Returns the ids
        of the runs started."""
        if paused(self.ws):
            return []
        started = []
        with placement_lock(self.ws):
            try:
                gpus = read_gpus()
            except GpuError as exc:
                print(f"nkd queue: {exc}", flush=True)
                return []
            for decision in self.decide(gpus):
                run_id = decision.row["id"]
                if decision.state == Status.BLOCKED:
                    block(self.store, self.ws, run_id, decision.reason)
                elif decision.state == "start" and start_queued(
                    self.store, self.ws, decision.row, decision.gpus
                ):
                    started.append(run_id)
        return started


def _dependencies(after: list[str], statuses: dict[str, str]) -> tuple[str, str]:
    waiting = []
    for parent in after:
        status = statuses.get(parent)
        if status is None:
            return Status.BLOCKED, f"waits for run '{parent}', which does not exist"
        if status == Status.FINISHED:
            continue
        if status in FINAL:
            return Status.BLOCKED, f"waits for {parent}, which ended {status}"
        waiting.append(f"{parent} ({status})")
    if waiting:
        return "wait", "waits for " + ", ".join(waiting)
    return "ready", ""


# ── the process ─────────────────────────────────────────────────────────────────────────────


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def is_running(ws: Workspace) -> bool:
    fd = _try_lock(ws.root / LOCK_NAME)
    if fd is None:
        return True
    os.close(fd)
    return False


def ensure_running(ws: Workspace) -> bool:
    """Start the scheduler if none holds the workspace's lock; True if one was started."""
    if is_running(ws):
        return False
    env = python_env(None)  # the scheduler is no run's process
    log = os.open(ws.root / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        subprocess.Popen(
            [sys.executable, "-m", "core.backends.queue.scheduler", str(ws.registry_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=ws.root, env=env,
        )
    finally:
        os.close(log)
    return True


def serve(registry_path: Path, idle_exit: float = IDLE_EXIT_S) -> int:
    ws = Workspace.at(registry_path)
    lock = _try_lock(ws.root / LOCK_NAME)
    if lock is None:
        return 0  # another scheduler has this workspace
    store = Store(ws.db_path)
    queue = Queue(ws, store)
    halver = Halver(ws, store)  # halving sweeps: promote and prune trials at their rungs
    waker = Waker(ws.root)  # a worker whose run ended wakes it before the next poll
    (ws.root / PID_NAME).write_text(f"{os.getpid()}\n")
    print(f"nkd queue: scheduler {os.getpid()} for {ws.registry_path}", flush=True)
    idle_since = synced = time.monotonic()
    try:
        while True:
            try:
                if store.replaced():
                    store.close()
                    store = queue.store = halver.store = Store(ws.db_path)
                if time.monotonic() - synced >= REMOTE_SYNC_S:
                    synced = time.monotonic()
                    for backend in halver.remote():
                        backend.sync(store, ws)
                for line in halver.cycle():
                    print(f"nkd queue: {line}", flush=True)
                for run_id in queue.cycle():
                    print(f"nkd queue: started {run_id}", flush=True)
                has_work = bool(queued_rows(store)) or halver.busy()
            except Exception as exc:  # a busy or broken database: try again next cycle
                print(f"nkd queue: {type(exc).__name__}: {exc}", flush=True)
                has_work = True
            now = time.monotonic()
            if has_work:
                idle_since = now
            elif now - idle_since > idle_exit:
                return 0
            waker.wait(CYCLE_S)
    finally:
        waker.close()
        store.close()
        (ws.root / PID_NAME).unlink(missing_ok=True)
        os.close(lock)


def start_queued(
    store: Store, ws: Workspace, row: dict[str, Any], gpus: list[Gpu] | None
) -> bool:
    """Claim a queued run (`queued` -> `starting`, by the queue) and start its worker; False if
    someone else took or cancelled it first."""
    run_id = row["id"]
    claim = {"type": "status", "status": Status.STARTING, "by": "queue", "pid": None,
             "pid_start": None, "pid_ticks": None}
    if not transition(store, ws, run_id, MAY["start"], claim):
        return False
    start_worker(ws.run_dir(run_id), store, resume=bool(row.get("resume")), gpus=gpus)
    return True


def block(store: Store, ws: Workspace, run_id: str, reason: str) -> bool:
    """A queued run whose parent ended without finishing will never start: `blocked`."""
    return transition(store, ws, run_id, MAY["block"],
                      {"type": "status", "status": Status.BLOCKED, "error": reason})


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1])))
