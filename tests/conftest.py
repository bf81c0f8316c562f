"""Shared fixtures: a throw-away workspace with a registry, and cleanup of its workers."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.store import FULL_COLUMNS, Store

TESTS = Path(__file__).parent
TICKER = TESTS / "scripts" / "ticker.py"

BASE_REGISTRY = f"""
[defaults]
seed = 7

[experiments.tick]
group = "test"
command = ["{sys.executable}", "{TICKER}", "--epochs", "{{epochs}}", "--delay", "{{delay}}",
           "--fail-at", "{{fail_at}}"]
epochs = 5
params = {{ delay = 0.05, fail_at = 0 }}

[experiments.slow]
extends = "tick"
epochs = 400
params = {{ delay = 0.1 }}

[experiments.broken]
extends = "tick"
params = {{ fail_at = 2 }}

[data.noise]
root = "data/noise"

[experiments.mark1]
group = "noise"
recipe = "noise.teacher"
classes = ["apartment_noise", "daily_noise"]
data = "noise"
epochs = 3
"""


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist each worker process gets its own share of the CPUs (gw0 the first, gw1 the
    second, ...), inherited by every run it starts: a run plans its threads from the cores it
    may use, so two workers' runs never oversubscribe the machine (each with the threads of
    all cores, torch's spinning pools made the training tests several times slower)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get(
        "PYTEST_XDIST_WORKER_COUNT", "1")
    if not worker or not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return
    cpus, n, i = sorted(os.sched_getaffinity(0)), int(count), int(worker[2:])
    if n > 1 and len(cpus) >= n:
        os.sched_setaffinity(0, cpus[i::n])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With `-n 2 --dist loadgroup` (pytest-xdist, as `make test` runs the suite): each test
    module runs whole on one worker process, so that its module fixture (a trained teacher, a
    user's folders) is built once; the Slurm modules share one worker, as their tests share the
    one local cluster and count its free CPUs. Without xdist the marks do nothing."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            module = item.module.__name__ if item.module else item.nodeid.split("::")[0]
            group = "slurm" if module.startswith("test_slurm") else module
            item.add_marker(pytest.mark.xdist_group(group))


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = root / "experiments.toml"
        self.registry.write_text(BASE_REGISTRY)

    @property
    def db(self) -> Path:
        return self.root / "nkd.db"

    def store(self) -> Store:
        return Store(self.db)

    def _kill_scheduler(self) -> None:
        scheduler = self.root / "nkd.queue.pid"
        if scheduler.is_file():
            try:
                os.kill(int(scheduler.read_text()), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, ValueError):
                pass

    def cleanup(self) -> None:
        """Kill what the test started. The scheduler is killed again at the end: a worker
        killed here may have started a new one on its way out, and a queue that waits for GPUs
        that never come would keep it alive after the suite."""
        self._kill_scheduler()
        try:
            self._kill_runs()
        finally:
            time.sleep(0.2)
            self._kill_scheduler()

    def _kill_runs(self) -> None:
        if not self.db.exists():
            return
        store = self.store()
        for row in store.list_runs(columns=FULL_COLUMNS):
            for pid in (row["pid"],):
                if pid:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            child = self.root / "runs" / row["id"] / "child.pid"
            if child.is_file():
                try:
                    os.killpg(int(child.read_text()), signal.SIGKILL)
                except (ProcessLookupError, PermissionError, ValueError):
                    pass
        store.close()


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    space = Workspace(tmp_path)
    yield space
    space.cleanup()


def wait_until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `predicate` every 50 ms; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def add_to_registry(ws: Workspace, text: str) -> None:
    """Append TOML (an experiment, a backend) to the workspace's registry."""
    ws.registry.write_text(ws.registry.read_text() + "\n" + text)


def statuses(ws: Workspace, run_id: str) -> list[str]:
    """The statuses a run's events.jsonl holds, in order."""
    from core.store.events import EventLog

    log = EventLog(ws.root / "runs" / run_id / "events.jsonl")
    return [e["status"] for e in log if e["type"] == "status"]


def run_procs(ws: Workspace, run_id: str) -> list:
    """The live processes of a run (its mark is the run folder)."""
    from core.backends.procs import run_processes
    from core.registry.workspace import Workspace as Paths

    return run_processes(Paths.at(ws.registry).run_dir(run_id))


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs (a disk that fills); skipped where this process cannot mount."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()[:80]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def most_at_once(rows) -> int:
    """The most runs (rows with started_at and ended_at) that ran at one moment."""
    edges = sorted([(r["started_at"], 1) for r in rows] + [(r["ended_at"], -1) for r in rows])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def nkd(ws: Workspace, *args: str) -> int:
    """Run the CLI in-process against the workspace's registry."""
    from nkd_tui.cli import main

    return main(["--registry", str(ws.registry), *args])


def run_context(tmp_path: Path, resume: bool = False):
    """A recipe's RunContext in `tmp_path` (run/ and ckpt/), for driving the training loop
    directly: a real Reporter writing events.jsonl and a real Control."""
    from core.runs.context import RunContext
    from core.runs.control import Control
    from core.store.reporter import Reporter

    run_dir = tmp_path / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunContext(
        "r1", {}, run_dir, tmp_path / "ckpt", tmp_path, Reporter("r1", run_dir, None),
        Control(run_dir), resume,
    )
