"""The local backend: runs on this box, each worker in its own session on the GPUs it was placed
on (placement written once here, for a new run and for a run started again), signalled by pid,
found alive by pid and kernel start ticks."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.backends.base import Backend, claim
from core.errors import NkdError, RunError
from core.registry.workspace import Workspace
from core.store import Store
from core.store.states import HOLDING, MAY, Status
from core.store.transition import transition

# GPUs, processes and the queue's settings are read when a run is placed, signalled or killed,
# not when the TUI first shows a run: those imports (psutil, NVML) wait for their first use
if TYPE_CHECKING:
    from core.backends.gpus import Gpu
    from core.registry.queue import QueueConfig


def registry_queue(ws: Workspace) -> QueueConfig:
    """The workspace registry's `[queue]` settings (its defaults when the file cannot load)."""
    from core.registry import load_registry
    from core.registry.queue import QueueConfig

    try:
        return load_registry(ws.registry_path).queue
    except NkdError:
        return QueueConfig()


def place_now(ws: Workspace, row: dict[str, Any], store: Store
              ) -> tuple[list[Gpu], list[Gpu] | None, str]:
    """(this box's GPUs, the ones the run gets now or None, why none): read the GPUs and the
    processes on them, count nkd's own leases as used. Call it under `placement_lock`."""
    from core.backends.gpus import GpuError, read_gpus

    try:
        gpus = read_gpus()
    except GpuError as exc:
        raise RunError(str(exc)) from None
    if not gpus:
        return gpus, None, ""
    from core.backends.queue.placement import lease_rows, need_of, nkd_pids, place

    pids = nkd_pids() if any(g.processes for g in gpus) else set()
    placed, why = place(need_of(row, True), gpus, lease_rows(store), registry_queue(ws), pids)
    return gpus, placed, why


def active_here(store: Store, run_id: str, host: str) -> int:
    """Other runs holding a worker on this box now (they share its cores)."""
    marks = ", ".join("?" * len(HOLDING))
    row = store.conn.execute(
        f"SELECT count(*) FROM runs WHERE status IN ({marks}) AND id != ? "
        "AND coalesce(host, ?) = ? AND coalesce(backend, ?) = ?",
        (*HOLDING, run_id, host, host, LocalBackend.name, LocalBackend.name)).fetchone()
    return int(row[0])


class LocalBackend(Backend):
    name = "local"
    writes_store = True
    checked_by_pid = True
    prestarts = True
    resumes = MAY["resume_saved"]

    @contextmanager
    def placement(self, ws: Workspace, need: dict[str, Any], name: str, queued: bool,
                  store: Store) -> Iterator[tuple[list[Gpu] | None, str | None]]:
        """For a run started now: its GPUs, chosen and recorded under the placement lock."""
        from core.backends.queue.place_lock import placement_lock
        from core.registry.queue import parse_memory

        if queued:
            yield None, None
            return
        with placement_lock(ws):
            memory = need.get("gpu_memory")
            row = {"needs_gpus": need.get("gpus"), "recipe": need.get("recipe") or "command",
                   "gpu_memory": None if memory is None else parse_memory(memory)}
            gpus, placed, why = place_now(ws, row, store)
            if not gpus:
                notice = None
                if need.get("gpus"):
                    notice = (f"this box has no GPU: '{name}' asks for gpus = {need['gpus']}, "
                              f"which is ignored here")
                yield None, notice
                return
            if placed is None:
                raise RunError(f"experiment '{name}': no GPU is free now ({why}); "
                               f"`nkd run {name} --queue` waits for one")
            yield placed, None

    def start(self, store: Store, run_dir: Path, gpus: list[Gpu] | None, depends: list[str],
              params: dict[str, Any], backends: dict[str, Any]) -> tuple[int | None, str | None]:
        from core.backends.local import start_worker

        return start_worker(run_dir, store=store, gpus=gpus), None

    def wake(self, row: dict[str, Any], hard: bool = False) -> None:
        try:
            os.kill(row["pid"], signal.SIGTERM if hard else signal.SIGUSR1)
        except ProcessLookupError:
            raise RunError(f"run '{row['id']}': its worker (pid {row['pid']}) is gone") from None

    def control_waiting(self, store: Store, ws: Workspace, row: dict[str, Any],
                        action: str) -> str:
        if action == "stop":
            if transition(store, ws, row["id"], MAY["cancel"], {
                    "type": "status", "status": Status.CANCELLED,
                    "error": "cancelled in the queue"}):
                return f"{row['id']}: cancelled"
            status = store.require_run(row["id"])["status"]
            raise RunError(f"run '{row['id']}' is {status}, not queued; `nkd stop` ends a "
                           f"running run")
        raise RunError(f"run '{row['id']}' is queued, not running yet; `nkd queue cancel` "
                       f"takes it out of the queue")

    def hard_stop(self, store: Store, ws: Workspace, row: dict[str, Any], status: str,
                  grace: float, ask_stop: Callable[[], None],
                  wait: Callable[[float], bool]) -> str:
        from core.backends.procs import kill_all, run_processes

        run_id = row["id"]
        if status in MAY["cancel"]:
            return self.control_waiting(store, ws, row, "stop")
        if status != Status.STOPPING and row.get("pid"):
            try:
                ask_stop()
            except RunError:
                pass  # gone or unreachable: SIGKILL below does not depend on it
        if wait(grace):
            return f"{run_id}: stopped within the grace period"
        for pgid in (row.get("pid"), _child_pid(ws.run_dir(run_id))):
            if pgid:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        kill_all(run_processes(ws.run_dir(run_id)))
        transition(store, ws, run_id, MAY["kill"], {
            "type": "status", "status": Status.KILLED,
            "error": f"killed after {grace:g} s without stopping" if grace > 0
            else "killed at once, without a grace period (a second Ctrl-C, or --grace 0)"})
        return f"{run_id}: killed"

    def start_again(self, store: Store, ws: Workspace, row: dict[str, Any]) -> str:
        """A new worker resuming from the run's state, on a GPU that is free now; a run that
        came through the queue, or finds no free GPU, goes back to the queue instead.
        `starting` is recorded with no process first, so nothing mistakes the old, gone worker
        for the new one."""
        from core.backends.local import start_worker, visible_ids
        from core.backends.queue.place_lock import placement_lock
        from core.backends.queue.scheduler import ensure_running

        run_id = row["id"]
        run_dir = ws.run_dir(run_id)
        with placement_lock(ws):
            gpus, placed, why = place_now(ws, row, store)
            if row.get("queued_at") is not None or (gpus and placed is None):
                claim(store, ws, run_id, {"type": "status", "status": Status.QUEUED,
                                          "resume": 1})
                ensure_running(ws)
                return "queued again" + (f" ({why})" if why else "")
            claim(store, ws, run_id, {"type": "status", "status": Status.STARTING, "pid": None,
                                      "pid_start": None, "pid_ticks": None})
            pid = start_worker(run_dir, store, resume=True, gpus=placed)
            on = f" on GPU {visible_ids(placed)}" if placed else ""
            return f"pid {pid}{on}"

    def alive(self, row: dict[str, Any]) -> bool:
        from core.backends.liveness import is_alive

        return is_alive(row["pid"], row.get("pid_start"), row.get("pid_ticks"))

    def describe(self, row: dict[str, Any]) -> str:
        return "local"


def _child_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "child.pid").read_text().strip())
    except (OSError, ValueError):
        return None


LOCAL = LocalBackend()
