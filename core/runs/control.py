"""Control of a running worker: the request file plus SIGUSR1, and the worker's side of it.

The controller writes `runs/<id>/control.json` ({"action": ..., "t": ...}) atomically and sends
SIGUSR1; the worker notes the signal (`core.runs.signals`), reads the file and acts at the next
batch boundary. SIGTERM and SIGINT mean stop. One signal for every request keeps the worker's side
simple and lets new actions be added without new signal numbers.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from core.runs.signals import SignalPipe
from core.store.states import Status
from core.util.files import atomic_write_json, read_json

ACTIONS = ("pause", "resume", "suspend", "stop")
CONTROL_FILE = "control.json"


def request(run_dir: Path, action: str) -> None:
    """Write the request; the caller then signals the worker."""
    if action not in ACTIONS:
        raise ValueError(f"unknown control action {action!r}")
    atomic_write_json(run_dir / CONTROL_FILE, {"action": action, "t": time.time()})


def read_request(run_dir: Path) -> str | None:
    try:
        action = read_json(run_dir / CONTROL_FILE).get("action")
    except (OSError, ValueError):
        return None
    return action if action in ACTIONS else None


class StopRun(Exception):
    """Raised at a batch boundary when the run is to stop (or suspend) now."""

    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.action = action


class Control:
    """The worker's view of control requests, for recipes with a Python training loop.

    `boundary()` is called between batches: it blocks while paused (holding no lock and no open
    file of ours) and raises StopRun when stop or suspend was asked for.
    """

    def __init__(
        self, run_dir: Path, on_change: Callable[[str], None] | None = None
    ) -> None:
        self.run_dir = run_dir
        self.on_change = on_change or (lambda _state: None)
        self.paused = False
        self.pending: str | None = None  # stop | suspend
        # Set by the training loop during validation: a suspend then waits for the end of the
        # epoch, where the loop saves its state (a suspend between training steps saves the
        # step it reached at once; stop never waits).
        self.defer_suspend = False
        self._told = False
        self.requeue = False  # Slurm's time-limit warning: suspend, then requeue the job
        self._signals: SignalPipe | None = None

    def install(self) -> None:
        """Catch the control signals; they are acted on at `boundary()` and `epoch_end()`."""
        self._signals = SignalPipe((signal.SIGUSR1, signal.SIGTERM, signal.SIGINT,
                                    signal.SIGUSR2))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def close(self) -> None:
        if self._signals is not None:
            self._signals.close()
            self._signals = None

    def look(self, timeout: float = 0.0) -> None:
        """Act on the signals that arrived: SIGUSR1 the request file's action, SIGUSR2
        Slurm's time-limit warning (suspend, then requeue), SIGTERM and SIGINT stop."""
        if self._signals is None:
            return
        for sig in self._signals.take(timeout):
            if sig == signal.SIGUSR1:
                self.handle(read_request(self.run_dir))
            elif sig == signal.SIGUSR2:
                self.requeue = True
                self.handle("suspend")
            elif sig in (signal.SIGTERM, signal.SIGINT):
                self.handle("stop")

    def handle(self, action: str | None) -> None:
        if action == "pause":
            self.paused = True
        elif action == "resume":
            self.paused = False
        elif action in ("stop", "suspend"):
            self.pending = self.pending or action
            self.paused = False

    def boundary(self) -> None:
        self.look()
        if self.paused and not self.pending:
            self.on_change(Status.PAUSED)
            while self.paused and not self.pending:
                if self._signals is None:
                    time.sleep(0.05)  # handle() from elsewhere
                self.look(0.05)
            if not self.pending:
                self.on_change(Status.RUNNING)
        if self.pending == "suspend" and self.defer_suspend:
            if not self._told:
                self._told = True
                print("suspend: finishing this epoch first, so its work is kept", flush=True)
                self.on_change(Status.SUSPENDING)
            return
        if self.pending:
            raise StopRun(self.pending)

    def epoch_end(self) -> None:
        """Called by the training loop after it saved the epoch's state."""
        self.look()
        if self.pending:
            raise StopRun(self.pending)
