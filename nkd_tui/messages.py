"""What the TUI's thread workers tell the interface, as messages: each worker reads or acts off
the interface's thread and posts one of these; the screen or app it belongs to handles it on
the interface's thread. A worker that fails unexpectedly is turned into a notice and a line in
the TUI's log file by one handler (`report_worker_error`), never lost."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.message import Message
from textual.worker import Worker, WorkerState

from core.util.text import visible

LOG_NAME = "nkd.tui.log"  # beside nkd.db: what went wrong in the TUI, with its traceback


@dataclass
class Polled(Message):
    """A frozen snapshot of the store for the main screen."""

    snapshot: Any


@dataclass
class Said(Message):
    """A notice for the user from a worker; `refresh` reads the store again after it."""

    text: str
    severity: str = "information"
    timeout: float | None = None
    refresh: bool = False


@dataclass
class LineageRead(Message):
    roots: list[Any]


@dataclass
class ComparisonRead(Message):
    comparison: Any


@dataclass
class ResultsRead(Message):
    """A run's kept results (core.results.kept.Results per split), or why there are none."""

    results: list[Any]
    error: str | None = None


@dataclass
class LogGrew(Message):
    """The log viewer's index of a file grew (or was read whole)."""


@dataclass
class LogFound(Message):
    """A search's result: the line found, or None with what was sought."""

    line: int | None
    what: str


@dataclass
class LogSaid(Message):
    """A line for the log viewer's status bar (a read error)."""

    text: str


class ReportsWorkerErrors:
    """For the app and each screen that runs thread workers: a worker's state change is posted
    to the node that started it and does not bubble, so each hands it to the one handler."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            report_worker_error(self.app, event.worker)  # type: ignore[attr-defined]


def report_worker_error(app: Any, worker: Worker[Any]) -> str:
    """A worker that ended with an unexpected error: one notice, and the error with its
    traceback appended to the TUI's log file beside nkd.db (when it can be written). Returns
    the notice's text."""
    workspace = getattr(app, "workspace", None)
    log_dir: Path | None = getattr(workspace, "root", None)
    error = worker.error
    what = worker.name or worker.group or "a background task"
    text = f"{what} failed: {type(error).__name__}: {error}"
    where = ""
    if log_dir is not None:
        path = log_dir / LOG_NAME
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
                fh.writelines(traceback.format_exception(error))
            where = f" (details in {path})"
        except OSError:
            pass
    app.notify(visible(text + where), severity="error", timeout=10)
    return text


@dataclass
class SweepRead(Message):
    """A sweep as its view shows it (core.runs.sweep_summary.SweepSummary), or why there is
    none."""

    summary: Any
    error: str | None = None


LIVE_S = 1.0  # how often a screen of runs, one of them going, reads them again


class ReadsWhileLive:
    """For a screen that reads its runs in a thread (`_load`): once when mounted, then every
    LIVE_S while `live()` says one of them is still going (and `poll` is on)."""

    poll: bool

    def on_mount(self) -> None:
        self._load()
        if self.poll:
            self.set_interval(LIVE_S, self._reload)  # type: ignore[attr-defined]

    def _reload(self) -> None:
        if self.live():
            self._load()

    def live(self) -> bool:
        raise NotImplementedError

    def _load(self) -> None:
        raise NotImplementedError
