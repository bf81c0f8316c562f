"""A paused sweep (`nkd sweep pause ID`): its live trials are paused and its queued trials wait
in this box's queue, whatever GPUs are free, until `nkd sweep resume ID`. The hold is a file per
sweep in the workspace (`nkd.sweeps.paused/ID`), so it outlives the scheduler and a reboot."""

from __future__ import annotations

import os
import time

from core.errors import RunError
from core.registry.workspace import Workspace
from core.util.names import check_name

HOLD_DIR = "nkd.sweeps.paused"


def paused_sweeps(ws: Workspace) -> set[str]:
    try:
        return set(os.listdir(ws.root / HOLD_DIR))
    except OSError:  # none paused yet
        return set()


def set_sweep_paused(ws: Workspace, sweep: str, on: bool) -> None:
    check_name(sweep, f"{ws.root / HOLD_DIR}: sweep", RunError)
    folder = ws.root / HOLD_DIR
    if on:
        folder.mkdir(exist_ok=True)
        (folder / sweep).write_text(f"{time.time()}\n")
    else:
        (folder / sweep).unlink(missing_ok=True)


__all__ = ["HOLD_DIR", "paused_sweeps", "set_sweep_paused"]
