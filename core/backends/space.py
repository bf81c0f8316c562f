"""Free space before it hurts: a run is refused at launch (or held in the queue, saying why)
when the disk of the workspace's checkpoints cannot hold what it is expected to write (what its
experiment's earlier runs wrote, else its model's size times the files it keeps), with a
margin; and a disk that has fallen below the margin while runs are going is said by `nkd ps`
and the TUI before a checkpoint write fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from core.errors import RunError
from core.registry.keys import KEYS
from core.registry.retention import DEFAULT as DEFAULT_KEEP
from core.registry.retention import parse_keep
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


# the settings that shape a model's weights: runs that agree on them write checkpoints of one size
SHAPE_KEYS = ("model", "hidden_size", "num_layers", "embed_dim")


def expected_bytes(store: Store, experiment: str, recipe: str | None = None,
                   params: dict[str, Any] | None = None) -> tuple[int, str] | None:
    """What a run is expected to write into its checkpoints, and from what that is known: the
    most its experiment's finished runs kept; else the model's size (the best checkpoint of a
    finished run of the same recipe and model shape, `SHAPE_KEYS`) times the files its
    `keep_checkpoints` keeps. None when neither is known."""
    row = store.conn.execute(
        "SELECT MAX(checkpoint_bytes) FROM runs WHERE experiment = ? AND status = ?",
        (experiment, Status.FINISHED)).fetchone()
    if row and row[0]:
        return int(row[0]), f"its earlier runs kept up to {fmt_bytes(int(row[0]))}"
    if not recipe:
        return None
    params = params or {}
    same = " AND ".join(f"json_extract(r.params, '$.{k}') IS ?" for k in SHAPE_KEYS)
    row = store.conn.execute(
        "SELECT MAX(b) FROM (SELECT SUM(c.bytes) AS b FROM checkpoints c JOIN runs r "
        f"ON r.id = c.run WHERE c.role = 'best' AND r.recipe = ? AND r.status = ? AND {same} "
        "GROUP BY c.run)",
        (recipe, Status.FINISHED, *(params.get(k) for k in SHAPE_KEYS))).fetchone()
    if not row or not row[0]:
        return None
    files = files_kept(params)
    return (int(row[0]) * files, f"its model's weights are {fmt_bytes(int(row[0]))} and "
            f"{files} files of them are kept")


def files_kept(params: dict[str, Any]) -> int:
    """How many files of its weights a run keeps at most (per part), by its keep_checkpoints."""
    keep = parse_keep(params.get("keep_checkpoints", DEFAULT_KEEP)) or parse_keep(DEFAULT_KEEP)
    assert keep is not None
    epochs = int(params.get("epochs") or KEYS["epochs"].default)
    return (1 + keep.last + (min(keep.top, epochs) if keep.top > 1 else 0)
            + (epochs // keep.every if keep.every else 0))


class Expectations:
    """expected_bytes for many runs at once (one pass of the queue): an experiment, recipe,
    model shape and retention read once, however many queued runs share them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: dict[tuple, tuple[int, str] | None] = {}
        self._rows: dict[tuple, tuple[int, str] | None] = {}

    def __call__(self, experiment: str, recipe: str | None,
                 params: dict[str, Any]) -> tuple[int, str] | None:
        key = (experiment, recipe, *(_hashable(params.get(k)) for k in
                                     (*SHAPE_KEYS, "keep_checkpoints", "epochs")))
        if key not in self._known:
            self._known[key] = expected_bytes(self.store, experiment, recipe, params)
        return self._known[key]

    def of_row(self, row: dict[str, Any]) -> tuple[int, str] | None:
        """A queued run's expectation, from its row: rows with the same params text (most of a
        queue repeats a few) are parsed once."""
        key = (row["experiment"], row.get("recipe"), row.get("params") or "{}")
        if key not in self._rows:
            self._rows[key] = self(key[0], key[1], json.loads(key[2]))
        return self._rows[key]


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value


def shortfall(ws: Workspace, store: Store, experiment: str, recipe: str | None = None,
              params: dict[str, Any] | None = None, free: int | None = None) -> str | None:
    """Why the checkpoints' disk cannot take a run now (its expected bytes plus the margin
    exceed the free space), or None when it can or nothing is known."""
    return short_of(ws, expected_bytes(store, experiment, recipe, params), free)


def short_of(ws: Workspace, expected: tuple[int, str] | None, free: int | None) -> str | None:
    """`shortfall` of a run expected to write `expected` (None: not known), where the disk has
    `free` bytes (None: read it now)."""
    free = free_bytes(ws.checkpoints_dir) if free is None else free
    if expected is None or free is None:
        return None
    needed = int(expected[0] * SLACK) + MARGIN
    if free >= needed:
        return None
    return (f"its checkpoints need about {fmt_bytes(needed)} ({expected[1]}, plus a margin) "
            f"but {ws.checkpoints_dir} has {fmt_bytes(free)} free; free some (`nkd du`, "
            f"`nkd gc`) or place checkpoints elsewhere ([workspace] checkpoints)")


def check_launch(ws: Workspace, store: Store, experiment: str, where: str,
                 recipe: str | None = None, params: dict[str, Any] | None = None) -> None:
    """RunError (one line) when the checkpoints' disk cannot take the run (`shortfall`);
    nothing is recorded then."""
    why = shortfall(ws, store, experiment, recipe, params)
    if why:
        raise RunError(f"{where}: {why}; nothing was started")


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
