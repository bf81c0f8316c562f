"""Free space before it hurts: a run is refused at launch when the disk of the workspace's
checkpoints cannot hold what its experiment's earlier runs wrote (with a margin), and a disk
that has fallen below the margin while runs are going is said by `nkd ps` and the TUI before a
checkpoint write fails."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.errors import RunError
from core.registry.workspace import Workspace
from core.store import Store
from core.store.states import ACTIVE, Status
from core.util.text import fmt_bytes

MARGIN = 64 << 20  # bytes kept free beyond what a run is expected to write
SLACK = 1.2  # a run may write a little more than its predecessors did


def free_bytes(folder: Path) -> int | None:
    """Free bytes on the disk that holds `folder` (or its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def expected_bytes(store: Store, experiment: str) -> int | None:
    """What a run of the experiment is expected to write into its checkpoints: the most its
    finished runs kept (None when none has recorded a size)."""
    row = store.conn.execute(
        "SELECT MAX(checkpoint_bytes) FROM runs WHERE experiment = ? AND status = ?",
        (experiment, Status.FINISHED)).fetchone()
    return int(row[0]) if row and row[0] else None


def check_launch(ws: Workspace, store: Store, experiment: str, where: str) -> None:
    """RunError (one line) when the checkpoints' disk has less free space than the run is
    expected to write plus the margin; nothing is recorded then."""
    expected = expected_bytes(store, experiment)
    free = free_bytes(ws.checkpoints_dir)
    if expected is None or free is None:
        return
    needed = int(expected * SLACK) + MARGIN
    if free < needed:
        raise RunError(f"{where}: its checkpoints need about {fmt_bytes(needed)} (its earlier "
                       f"runs kept up to {fmt_bytes(expected)}, plus a margin) but "
                       f"{ws.checkpoints_dir} has {fmt_bytes(free)} free; free some (`nkd du`, "
                       f"`nkd gc`) or place checkpoints elsewhere ([workspace] checkpoints); "
                       f"nothing was started")


def low_space(ws: Workspace, store: Store, free: int | None = None) -> str | None:
    """A warning when runs are going and the checkpoints' disk has less than the margin free
    (`free`: its free bytes, when already read)."""
    free = free_bytes(ws.checkpoints_dir) if free is None else free
    if free is None or free >= MARGIN:
        return None
    going = store.conn.execute(
        f"SELECT COUNT(*) FROM runs WHERE status IN ({', '.join('?' * len(ACTIVE))})",
        tuple(ACTIVE)).fetchone()[0]
    if not going:
        return None
    return (f"only {fmt_bytes(free)} free on the disk of {ws.checkpoints_dir}: the next "
            f"checkpoint of the {going} run(s) going may not fit (`nkd du`, `nkd gc`)")
