"""Where a worker runs and how it is found alive: this box (local: started in its own session,
procs, liveness, GPUs), the queue (placement and the scheduler) and Slurm. Imports the store and
below, never core.runs: whoever needs more passes it down."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.backends.base import Backend
    from core.registry.workspace import Workspace
    from core.store import Store


def backend_of(row: dict[str, Any]) -> Backend:
    """The backend a run row (or a run's config.json) executes on."""
    return backend_named(row.get("backend"))


def backend_named(name: str | None) -> Backend:
    """The backend of a registry's `backend` value (this box when unset)."""
    found = _NAMED.get(name)
    if found is None:  # imported on first use, each alone: the TUI's first paint needs few
        module, attr = _HOMES.get(name or "", ("core.backends.this_box", "LOCAL"))
        found = _NAMED[name] = getattr(importlib.import_module(module), attr)
    return found


_HOMES = {"slurm": ("core.backends.slurm", "SLURM")}  # any other name: this box
_NAMED: dict[str | None, Backend] = {}


def sync_all(store: Store, ws: Workspace) -> list[str]:
    """Bring the store up to date with every backend's runs (Slurm: ingest and squeue);
    returns the runs found lost."""
    from core.backends.slurm import SLURM
    from core.backends.this_box import LOCAL

    return [run_id for backend in (LOCAL, SLURM) for run_id in backend.sync(store, ws)]
