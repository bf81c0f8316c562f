"""A command experiment: the researcher's own script, run in its own process group by the worker.

Its output is followed line by line: `@nkd` records (checked, never trusted), common log shapes
and the registry's `output_scalars` become events; checkpoints are found by glob and TensorBoard
files are read; control requests become signals (SIGSTOP/SIGCONT for pause, SIGINT, then SIGTERM,
then SIGKILL for stop).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from core.backends.procs import become_subreaper
from core.capture.checkpoints import CheckpointWatch, fill_placeholders
from core.capture.output import read_lines
from core.capture.patterns import Follower
from core.capture.records import RecordError, parse_record
from core.capture.references import resolve as resolve_references
from core.capture.tensorboard import TensorboardWatch
from core.registry.settings import of_config
from core.runs.control import read_request
from core.runs.signals import SignalPipe
from core.store.reporter import Reporter
from core.store.states import Status

HEARTBEAT_S = 5.0
PROGRESS_S = 2.0  # a script's step records become at most one progress event this often
# SIGINT, then this long before SIGTERM, then as long again before SIGKILL
STOP_GRACE_S = float(os.environ.get("NKD_STOP_GRACE_S", "10"))
CHECKPOINT_POLL_S = 1.0  # how often checkpoint globs and TensorBoard files are looked at
OUTPUT_DRAIN_S = 1.0  # after the script exits, how long its leftovers' output is still read
MAX_LINES_PER_TICK = 500  # output lines handled before control requests are looked at again


class CommandRun:
    """Runs the researcher's own script in its own process group and follows its output."""

    def __init__(self, config: dict[str, Any], run_dir: Path, reporter: Reporter) -> None:
        self.config = config
        self.run_dir = run_dir
        self.reporter = reporter
        self.stopping = False
        self.killed = False
        self.paused = False
        self.refused = 0  # @nkd records refused, each with one warning line
        self.progress_at = -PROGRESS_S  # when the last step record was reported
        self.parents: list[dict[str, Any]] = []  # lineage of every checkpoint this run makes
        self.cwd = Path(config.get("cwd") or config["root"])
        self.folders = (run_dir, Path(config["checkpoints_dir"]))
        params = of_config(config)[0]
        # what an unedited script prints: common log shapes and the registry's own patterns
        self.scalars = Follower(bool(params["builtin_scalars"]), params["output_scalars"])
        self.epoch: int | None = None  # the latest epoch recorded, for checkpoints found by glob
        self.summaries: set[tuple[str, str | None, str | None]] = set()  # (name, stem, split)
        self.started = time.time()
        dirs = [run_dir]
        if params.get("tensorboard_dir"):
            dirs.append(Path(config["root"]) / fill_placeholders(params["tensorboard_dir"],
                                                                 params))
        self.tensorboard = TensorboardWatch(dirs, since=time.time() - 1.0)
        self.watch = None
        if params.get("checkpoints"):
            self.watch = CheckpointWatch(
                params["checkpoints"], params, Path(config["root"]),
                Path(config["checkpoints_dir"]), params["checkpoint_copy"],
                since=time.time() - 1.0,
            )

    def _requests(self, signals: SignalPipe) -> list[str]:
        """What the signals that arrived ask for: SIGUSR1 the request file's action; SIGTERM,
        SIGINT and SIGUSR2 (Slurm's time limit: a script keeps no state) stop."""
        asked = []
        for sig in signals.take():
            action = read_request(self.run_dir) if sig == signal.SIGUSR1 else "stop"
            if action:
                asked.append(action)
        return asked

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def run(self) -> tuple[str, int]:
        signals = SignalPipe((signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGUSR2))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            return self._run(signals)
        finally:
            signals.close()

    def _run(self, signals: SignalPipe) -> tuple[str, int]:
        become_subreaper()
        env = {**os.environ, **self.config.get("env", {}), "PYTHONUNBUFFERED": "1",
               "NKD_RUN_ID": self.config["run_id"], "NKD_RUN_DIR": str(self.run_dir),
               "NKD_CHECKPOINT_DIR": self.config["checkpoints_dir"]}
        # {pretrained} and friends: the checkpoint files of the runs they name, known only now
        argv, self.parents = resolve_references(self.config, self.reporter.store)
        self._record_evaluation()
        self.proc = subprocess.Popen(
            argv,
            cwd=self.config.get("cwd") or self.config["root"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            bufsize=0,
            process_group=0,
        )
        try:
            (self.run_dir / "child.pid").write_text(str(self.proc.pid))
        except OSError:
            pass  # kill finds the script by the run's mark in its environment as well
        chunks: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()  # None: the end
        assert self.proc.stdout is not None
        reader = threading.Thread(target=read_lines, args=(self.proc.stdout.fileno(), chunks.put),
                                  daemon=True)
        reader.start()
        lines: deque[str] = deque()  # read, not yet handled
        next_beat = time.monotonic() + HEARTBEAT_S
        next_watch = time.monotonic() + CHECKPOINT_POLL_S
        deadlines: list[tuple[float, int]] = []
        eof = False
        exited_at = 0.0
        while True:
            # a bounded batch of output, then control: a chatty script cannot starve a pause
            try:
                if eof and not lines:  # all output handled: wait for the script itself
                    self.proc.wait(timeout=0.1)
                    raise queue.Empty
                if not lines:
                    eof = self._take(chunks.get(timeout=0.1), lines)
                while not eof and len(lines) < MAX_LINES_PER_TICK and not chunks.empty():
                    eof = self._take(chunks.get_nowait(), lines)
                with self.reporter.batch():  # a burst of records: one write, one transaction
                    for _ in range(min(len(lines), MAX_LINES_PER_TICK)):
                        self._handle_line(lines.popleft())
            except (queue.Empty, subprocess.TimeoutExpired):
                pass
            for action in self._requests(signals):
                deadlines += self._handle_request(action)
            now = time.monotonic()
            if deadlines and now >= deadlines[0][0]:
                sig = deadlines.pop(0)[1]
                self.killed = self.killed or sig == signal.SIGKILL
                self._signal(sig)
            if now >= next_watch:
                next_watch = now + CHECKPOINT_POLL_S
                self._follow_files(final=False)
            if now >= next_beat:
                next_beat = now + HEARTBEAT_S
                try:
                    self.reporter.store and self.reporter.store.heartbeat(self.config["run_id"])
                except Exception:
                    pass
            if self.proc.poll() is not None:
                if eof and not lines:
                    break
                # the script has exited, but a child it left running holds its output open:
                # read what is already there, then end the run (the leftovers are ended after)
                exited_at = exited_at or now
                if now - exited_at > OUTPUT_DRAIN_S and not lines and chunks.empty():
                    break
        code = self.proc.wait()
        for captured in self.scalars.flush():
            self._report(captured)
        self._follow_files(final=True)
        self._read_results()
        if self.refused:
            print(f"nkd: {self.refused} @nkd record(s) refused in this run", flush=True)
        if self.killed:
            return Status.KILLED, code
        if self.stopping:
            return Status.STOPPED, code
        return (Status.FINISHED if code == 0 else Status.FAILED), code

    @staticmethod
    def _take(chunk: list[str] | None, lines: deque[str]) -> bool:
        """A chunk of lines from the reader onto `lines`; True at the end of the output."""
        if chunk is None:
            return True
        lines.extend(chunk)
        return False

    def _handle_line(self, line: str) -> None:
        try:
            event = parse_record(line.rstrip("\n"), self.cwd, self.folders)
        except RecordError as exc:
            self.refused += 1
            shown = line.strip()
            shown = shown if len(shown) <= 120 else shown[:117] + "..."
            print(f"nkd: refused @nkd record ({exc}): {shown}", flush=True)
            return
        if event is None:
            sys.stdout.write(line)
            sys.stdout.flush()
            for captured in self.scalars.feed(line):
                self._report(captured)
            return
        if event["type"] == "epoch":
            self.scalars.reported_itself = True  # the script's own records win
        if event["type"] == "meta":
            return
        if event["type"] == "checkpoint":
            self._describe_checkpoint(event)
        if event["type"] == "progress":  # a script may print one per batch: one every 2 s
            now = time.monotonic()
            if now - self.progress_at < PROGRESS_S and event["step"] != event.get("steps"):
                return
            self.progress_at = now
            event = {k: v for k, v in event.items() if v is not None}
        self._report(event)

    def _record_evaluation(self) -> None:
        """An evaluation script (`evaluates = "pretrained"`): the run is a lineage node of its
        own under the checkpoint it scores, as a built-in evaluation is."""
        key = self.config.get("params", {}).get("evaluates")
        scored = [p for p in self.parents if key and p["relation"] == key]
        self.parents = [{k: v for k, v in p.items() if k != "path"} for p in self.parents
                        if p not in scored]
        for parent in scored:
            self.reporter.event({
                "type": "checkpoint", "path": parent["path"], "role": "evaluation",
                "id": f"{self.config['run_id']}/evaluation",
                "parents": [{"checkpoint": parent["checkpoint"], "relation": "evaluated"}],
            })

    def _report(self, event: dict[str, Any]) -> None:
        if event["type"] == "epoch":
            self.epoch = event["epoch"]
        if event["type"] == "metric" and not event.get("track"):
            self.summaries.add((event["name"], event.get("stem"), event.get("split")))
        self.reporter.event(event)

    def _read_results(self) -> None:
        """eval_result_<stem>.csv the script wrote: per-track metrics, and the summaries it did
        not print itself (the median over tracks per stem, the mean over stems)."""
        from core.capture.results import read_result, result_files

        stems: dict[tuple[str, str | None], list[float]] = {}
        for path in result_files([self.cwd, self.run_dir], self.started - 1.0):
            try:
                events = read_result(path)
            except (OSError, ValueError) as exc:
                print(f"nkd: {path.name}: not read as metrics ({exc})", flush=True)
                continue
            for event in events:
                key = (event["name"], event["stem"], event.get("split"))
                if "track" not in event:
                    stems.setdefault((event["name"], event.get("split")), []).append(
                        event["value"])
                    if key in self.summaries:
                        continue  # the script printed it itself
                self._report(event)
        for (name, split), values in stems.items():
            if (name, "mean", split) not in self.summaries and len(values) > 1:
                self._report({"type": "metric", "name": name, "value": sum(values) / len(values),
                              "stem": "mean", **({"split": split} if split else {})})

    def _follow_files(self, final: bool) -> None:
        """What the script writes to files: TensorBoard scalars, checkpoints by name."""
        scalars = self.tensorboard.poll()
        if scalars and not self.scalars.reported_itself:
            self.scalars.reported_itself = True  # its own scalars win over printed lines
        for event in scalars:
            self._report(event)
        if self.watch is None:
            return
        for path, role in self.watch.poll(final):
            event = self.watch.record(path, role, self.epoch)
            if self.parents:
                event["parents"] = self.parents
            self.reporter.event(event)

    def _describe_checkpoint(self, event: dict[str, Any]) -> None:
        from core.util.checksum import sha256_file

        if self.parents:  # what the run was started from: its checkpoints' lineage
            event["parents"] = self.parents
        try:  # a regular file only: a FIFO named as a checkpoint would block the worker
            if Path(event["path"]).is_file():
                event["sha256"] = sha256_file(event["path"])
        except OSError:
            pass  # announced before it was written, or already gone: recorded without a hash

    def _handle_request(self, action: str) -> list[tuple[float, int]]:
        if action == "pause" and not self.paused and not self.stopping:
            self._signal(signal.SIGSTOP)
            self.paused = True
            self.reporter.status(Status.PAUSED)
        elif action == "resume" and self.paused:
            self._signal(signal.SIGCONT)
            self.paused = False
            self.reporter.status(Status.RUNNING)
        elif action == "suspend":
            print("nkd: suspend is not available for command experiments; use stop", flush=True)
        elif action == "stop" and not self.stopping:
            self.stopping = True
            self.reporter.status(Status.STOPPING)
            if self.paused:
                self._signal(signal.SIGCONT)
                self.paused = False
            self._signal(signal.SIGINT)
            now = time.monotonic()
            return [(now + STOP_GRACE_S, signal.SIGTERM), (now + 2 * STOP_GRACE_S, signal.SIGKILL)]
        return []
