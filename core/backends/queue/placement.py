"""Which GPUs a run gets, or why it waits: the queue's one placement rule, used by the scheduler,
by a direct `nkd run` and by `nkd queue` to explain a wait.

A GPU is free for a run when nkd may use it, fewer than `runs_per_gpu` active runs hold a lease
on it, no other user's job makes it busy (utilisation above the ceiling, or their processes hold
more than the memory ceiling) and it has the memory the run asks for. Free memory counts leases,
not only what NVML reports: a run that has just started has not allocated its memory yet. Among
free GPUs the one with most free memory, then lowest utilisation, is taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.backends.gpus import Gpu
from core.registry.queue import QueueConfig
from core.store import Store
from core.store.states import HOLDING


@dataclass(frozen=True)
class Lease:
    """An active run holding GPUs (CUDA_VISIBLE_DEVICES ids) or, without GPUs, a slot."""

    run_id: str
    gpus: tuple[str, ...]
    gpu_memory: float | None = None  # MiB it asked for


@dataclass(frozen=True)
class Need:
    gpus: int
    gpu_memory: float | None = None  # MiB

    def text(self) -> str:
        memory = f" with {gib(self.gpu_memory)} free" if self.gpu_memory else ""
        return f"needs {self.gpus} GPU{'s' if self.gpus != 1 else ''}{memory}"


def gib(mib: float | None) -> str:
    return "-" if mib is None else f"{mib / 1024:.0f} GiB" if mib >= 10240 else \
        f"{mib / 1024:.1f} GiB"


def leases_of(rows: list[dict[str, Any]]) -> list[Lease]:
    """Leases from active, started runs (rows with `id`, `gpus`, `gpu_memory`)."""
    out = []
    for row in rows:
        ids = tuple(g for g in (row.get("gpus") or "").split(",") if g)
        out.append(Lease(row["id"], ids, row.get("gpu_memory")))
    return out


def need_of(row: dict[str, Any], box_has_gpus: bool) -> Need:
    """What a run needs: its `gpus` (default 1 for a built-in recipe, 0 for a command)."""
    if not box_has_gpus:
        return Need(0)
    gpus = row.get("needs_gpus")
    if gpus is None:
        gpus = 0 if row.get("recipe") in (None, "command") else 1
    return Need(int(gpus), row.get("gpu_memory"))


@dataclass(frozen=True)
class GpuState:
    gpu: Gpu
    holders: tuple[str, ...]  # run ids with a lease on it
    free_mib: float
    busy: str | None  # why other users' jobs make it unusable


def states(gpus: list[Gpu], leases: list[Lease], config: QueueConfig,
           nkd_pids: set[int]) -> list[GpuState]:
    out = []
    for gpu in gpus:
        mine = [lease for lease in leases if gpu.visible_id in lease.gpus]
        foreign = [p for p in gpu.processes if p.pid not in nkd_pids]
        foreign_mib = sum(p.memory_mib for p in foreign)
        leased_mib = sum(lease.gpu_memory or 0 for lease in mine)
        used = max(gpu.memory_used_mib, foreign_mib + leased_mib)
        busy = None
        if foreign:
            if gpu.utilization >= config.utilization_ceiling:
                busy = f"busy with others' jobs ({gpu.utilization:.0f}% utilisation)"
            elif foreign_mib >= config.foreign_memory_ceiling * gpu.memory_total_mib:
                share = 100 * foreign_mib / max(gpu.memory_total_mib, 1)
                busy = f"busy with others' jobs ({share:.0f}% of its memory)"
        out.append(GpuState(gpu, tuple(lease.run_id for lease in mine),
                            max(0.0, gpu.memory_total_mib - used), busy))
    return out


def place(
    need: Need, gpus: list[Gpu], leases: list[Lease], config: QueueConfig,
    nkd_pids: set[int] = frozenset(),  # type: ignore[assignment]
    gpu_states: list[GpuState] | None = None,
) -> tuple[list[Gpu] | None, str]:
    """The GPUs for a run (an empty list for a run that needs none), or None and why it waits.
    On a box without GPUs runs take slots: at most `max_running` at once. `gpu_states`, when
    given, are `states(gpus, leases, ...)` computed once for many runs."""
    if not gpus:
        if len(leases) >= config.max_running:
            names = ", ".join(lease.run_id for lease in leases[:3])
            return None, (f"all {config.max_running} slot{'s' if config.max_running > 1 else ''}"
                          f" in use (max_running): {names}")
        return [], ""
    if need.gpus == 0:
        return [], ""
    free, why = [], []
    for st in gpu_states if gpu_states is not None else states(gpus, leases, config, nkd_pids):
        label = f"GPU {st.gpu.index}"
        if config.gpus is not None and st.gpu.index not in config.gpus:
            continue
        if st.busy:
            why.append(f"{label} {st.busy}")
        elif len(st.holders) >= config.runs_per_gpu:
            why.append(f"{label} runs {', '.join(st.holders)}")
        elif need.gpu_memory and st.free_mib < need.gpu_memory:
            why.append(f"{label} has {gib(st.free_mib)} free")
        else:
            free.append(st)
    if len(free) < need.gpus:
        allowed = len([g for g in gpus if config.gpus is None or g.index in config.gpus])
        if need.gpus > allowed:
            return None, f"{need.text()}; nkd may use {allowed} GPU{'s' if allowed != 1 else ''}"
        return None, f"{need.text()}; " + "; ".join(why or ["no GPU is free"])
    free.sort(key=lambda st: (-st.free_mib, st.gpu.utilization, st.gpu.index))
    return [st.gpu for st in free[: need.gpus]], ""


def after_of(row: dict[str, Any]) -> list[str]:
    if not row.get("after"):
        return []
    try:
        after = json.loads(row["after"])
    except ValueError:
        return []
    return [a for a in after if isinstance(a, str)]


def nkd_pids() -> set[int]:
    """Processes of nkd's runs (they carry the run's mark), so their GPU memory is not others'."""
    from core.backends.procs import marked

    return set(marked())


def lease_rows(store: Store) -> list[Lease]:
    marks = ", ".join("?" * len(HOLDING))
    cur = store.conn.execute(
        f"SELECT id, gpus, gpu_memory FROM runs WHERE status IN ({marks}) "
        "AND coalesce(backend, 'local') = 'local' ORDER BY created_at",
        HOLDING,
    )
    return leases_of([{"id": i, "gpus": g, "gpu_memory": m} for i, g, m in cur.fetchall()])
