"""Where a run executes, behind one small interface: start it, wake its worker for a control
request, find it alive, stop it the hard way, start it again from its state, describe it.
`backend_of(row)` picks the implementation (this box or Slurm); nothing outside core/backends
asks a backend's name.

The request a worker acts on is the same file everywhere (core.runs.control); a backend only
delivers the signal that makes the worker read it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from core.errors import RunError
from core.store.states import MAY
from core.store.transition import transition

if TYPE_CHECKING:
    from core.backends.gpus import Gpu
    from core.registry.workspace import Workspace
    from core.store import Store


class Backend(ABC):
    name: ClassVar[str]
    # the worker writes nkd.db itself (a compute node writes only its run folder, which the
    # login side ingests); its process can be checked by pid on the host that started it
    writes_store: ClassVar[bool]
    checked_by_pid: ClassVar[bool]
    # what `resume` starts again from its saved state (beside a paused worker, which it wakes)
    resumes: ClassVar[tuple[str, ...]]
    # `nkd run` may start the worker before the run is recorded, and tell it to go after
    # (core.backends.prestart): a worker that is a process of this box
    prestarts: ClassVar[bool] = False

    # ── starting ────────────────────────────────────────────────────────────────────────────

    def check_launch(self, backends: dict[str, Any], where: str) -> None:
        """Refuse, before anything is written, a run this backend cannot take."""
        del backends, where  # this box takes any run

    def dependencies(self, store: Store, after: list[str]) -> list[str]:
        """What the backend itself waits on for the runs in `after` (Slurm: their jobs)."""
        return []

    @contextmanager
    def placement(self, ws: Workspace, need: dict[str, Any], name: str, queued: bool,
                  store: Store) -> Iterator[tuple[list[Gpu] | None, str | None]]:
        """(GPUs, a notice) for a run started now, held while it is recorded and started."""
        yield None, None

    @property
    def starts_queued(self) -> bool:
        """Whether every run is recorded `queued` first (the backend's own queue starts it)."""
        return False

    @abstractmethod
    def start(self, store: Store, run_dir: Path, gpus: list[Gpu] | None, depends: list[str],
              params: dict[str, Any], backends: dict[str, Any]) -> tuple[int | None, str | None]:
        """Start the recorded run's worker: (its pid when it runs here, a line for the user)."""

    # ── control ─────────────────────────────────────────────────────────────────────────────

    @abstractmethod
    def wake(self, row: dict[str, Any], hard: bool = False) -> None:
        """Signal the run's worker to read its control request (`hard`: the worker's own
        meaning of SIGTERM, stop, for when no request file could be written)."""

    @abstractmethod
    def control_waiting(self, store: Store, ws: Workspace, row: dict[str, Any],
                        action: str) -> str:
        """pause / resume / stop of a run that is waiting to start."""

    @abstractmethod
    def hard_stop(self, store: Store, ws: Workspace, row: dict[str, Any], status: str,
                  grace: float, ask_stop: Callable[[], None],
                  wait: Callable[[float], bool]) -> str:
        """The hardest stop: ask (`ask_stop`), wait `grace` seconds (`wait`), then end every
        process of the run; records `killed` (or `cancelled` for a run that never started)."""

    @abstractmethod
    def start_again(self, store: Store, ws: Workspace, row: dict[str, Any]) -> str:
        """A new worker for an ended run, going on from its saved state."""

    def rung_decided(self, store: Store, ws: Workspace, row: dict[str, Any],
                     promoted: bool) -> str:
        """A halving trial suspended at its rung was promoted (its status is `queued` now) or
        pruned; returns what was done, or "". This box's queue starts a promoted trial itself."""
        return ""

    # ── what it is ──────────────────────────────────────────────────────────────────────────

    @abstractmethod
    def alive(self, row: dict[str, Any]) -> bool:
        """Is the worker of an active row still there, as far as this backend can tell from
        here? (Slurm runs are followed through squeue by `sync`, so they count as alive.)"""

    def sync(self, store: Store, ws: Workspace) -> list[str]:
        """Bring the store up to date with runs this backend holds; returns runs found lost."""
        return []

    @abstractmethod
    def describe(self, row: dict[str, Any]) -> str:
        """Where the run executes, in a few words (`local`, `slurm 123@node01`)."""

    def waiting_reason(self, row: dict[str, Any]) -> str | None:
        """Why a waiting run has not started, as the backend says (Slurm's reason)."""
        return None


def claim(store: Store, ws: Workspace, run_id: str, event: dict[str, Any]) -> None:
    """Claim an ended run to start it again: its status moves from a restartable one only
    under the store's write lock, so of any number of restarts and resumes at once (shells,
    TUIs, schedulers) exactly one goes on; the others are refused, naming what won."""
    if not transition(store, ws, run_id, MAY["restart"], event):
        now = (store.get_run(run_id) or {}).get("status", "gone")
        raise RunError(f"run '{run_id}' is {now}: another restart or resume claimed it first")
