"""The detached worker: `python -m core.worker runs/<run_id> [--resume]` runs one run to its end.

It is started in its own session by the launcher, so it outlives the terminal, the TUI and the SSH
connection that started it. Its stdout and stderr are the run's output.log.
"""

from __future__ import annotations

import os
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import recipes
from core.capture.checkpoints import CheckpointWatch, fill_placeholders
from core.capture.patterns import Follower
from core.capture.records import RecordError, parse_record
from core.capture.references import resolve as resolve_references
from core.capture.tensorboard import TensorboardWatch
from core.control import Control, StopRun, read_request
from core.events import HOLDING
from core.liveness import identity
from core.procs import become_subreaper, end_processes, python_env, run_processes
from core.registry import PLACEHOLDER
from core.reporter import Reporter
from core.store import Store
from core.threads import apply_env, apply_torch, cores, plan
from core.workspace import read_json

HEARTBEAT_S = 5.0
PROGRESS_S = 2.0  # a script's step records become at most one progress event this often
# SIGINT, then this long before SIGTERM, then as long again before SIGKILL
STOP_GRACE_S = float(os.environ.get("NKD_STOP_GRACE_S", "10"))
CHECKPOINT_POLL_S = 1.0  # how often checkpoint globs and TensorBoard files are looked at
OUTPUT_DRAIN_S = 1.0  # after the script exits, how long its leftovers' output is still read
MAX_LINES_PER_TICK = 500  # output lines handled before control requests are looked at again


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m core.worker RUN_DIR [--resume]", file=sys.stderr)
        return 2
    run_dir = Path(argv[0]).resolve()
    resume = "--resume" in argv[1:]
    # output.log may fill a disk or vanish: a lost log line must never end the run
    sys.stdout = _Tolerant(sys.stdout)
    sys.stderr = _Tolerant(sys.stderr)
    config = read_json(run_dir / "config.json")
    run_id = config["run_id"]
    apply_env(config, None)  # the registry's env, for recipes too, before torch is imported
    if "--resume-if-state" in argv[1:]:  # a Slurm job, requeued: go on from its saved state
        resume = any(Path(config["checkpoints_dir"]).glob("*_state.pt"))
    on_slurm = config.get("backend") == "slurm"
    store: Store | None = None
    if not on_slurm:  # a compute node writes only its run folder; the login side ingests it
        try:
            store = Store(config["db"])
        except Exception as exc:  # the events file alone records the run; reindex restores it
            print(f"nkd: {run_id}: store not opened ({exc}); writing events.jsonl only",
                  flush=True)
    reporter = Reporter(run_id, run_dir, store)
    reporter.reserve()
    for stream in (sys.stdout, sys.stderr):  # a lost log line is said in the final status
        stream.on_error = lambda exc: reporter.failed("output.log", exc)
    where = {}
    if os.environ.get("SLURM_JOB_ID"):
        where = {"node": socket.gethostname()[:200]}
        if os.environ.get("CUDA_VISIBLE_DEVICES"):
            where["gpus"] = os.environ["CUDA_VISIBLE_DEVICES"][:400]
    reporter.status("running", **identity(os.getpid()), device=config.get("device"), **where)
    ended = "failed"  # what on_finish is told, if the run gets as far as a final status
    try:
        if config.get("command"):
            status, code = CommandRun(config, run_dir, reporter).run()
        else:
            status, code = _run_recipe(config, run_dir, reporter, resume)
        if status == "requeue":
            ended = ""  # back in Slurm's queue: not an end
            return _requeue(reporter)
        ended = status
        error = {
            "failed": f"command exited with status {code}",
            "killed": "the script did not stop within the grace period and was killed",
        }.get(status)
        reporter.status(status, exit_code=code, **({"error": error} if error else {}),
                        **usage(bool(config.get("command"))))
        return 0 if status not in ("failed", "killed") else 1
    except Exception as exc:
        traceback.print_exc()
        sys.stdout.flush()
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        reporter.status("failed", exit_code=1, error=message, **usage(bool(config.get("command"))))
        return 1
    finally:
        # nothing the run started outlives it (a script's background or setsid children)
        leftovers = run_processes(run_dir)
        if leftovers:
            print(f"nkd: ending {len(leftovers)} leftover process(es) of the run", flush=True)
            end_processes(leftovers)
        reporter.close()
        if reporter.store is not None:
            reporter.store.close()
        if ended and config.get("params", {}).get("on_finish"):
            _on_finish(config, run_dir, ended)


def usage(command: bool) -> dict[str, float]:
    """What the run cost, for its final status: peak resident memory in MiB (the worker's own
    for a recipe; for a command, its script's, the largest of the processes it ran) and CPU
    seconds of the worker and everything it waited for (DataLoader workers, the script)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kib = max(children.ru_maxrss, 0) if command else me.ru_maxrss
    cpu = me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime
    return {"peak_rss_mb": round(peak_kib / 1024, 1), "cpu_s": round(cpu, 2)}


ON_FINISH_TIMEOUT_S = 60.0


def _on_finish(config: dict[str, Any], run_dir: Path, status: str) -> None:
    """The registry's `on_finish` command, told how the run ended (a notification, a sync):
    its output goes to output.log, and its failure is one line there, never the run's."""
    values = {"run_id": config["run_id"], "status": status,
              "experiment": config.get("experiment", ""), "run_dir": str(run_dir)}
    argv = [PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), arg)
            for arg in config["params"]["on_finish"]]
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    try:
        sys.stdout.flush()
        done = subprocess.run(argv, cwd=config.get("cwd") or config["root"], env=python_env(None),
                              stdin=subprocess.DEVNULL, stdout=sys.stdout.fileno(),
                              stderr=subprocess.STDOUT, timeout=ON_FINISH_TIMEOUT_S, check=False)
        if done.returncode:
            print(f"nkd: on_finish exited with status {done.returncode}", flush=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"nkd: on_finish did not run: {exc}", flush=True)


class _Tolerant:
    """A text stream whose write errors (a full disk, a removed log) are dropped, not raised."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.on_error: Callable[[BaseException], None] = lambda _exc: None

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError) as exc:
            self.on_error(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _requeue(reporter: Reporter) -> int:
    """Slurm's time-limit warning came: the state is saved; back into Slurm's queue, where the
    requeued job resumes from it. Where Slurm refuses, the run ends `suspended` instead."""
    from core.backends.slurm import requeue_self

    reporter.status("queued", requeue=1, resume=1)
    reporter.close()  # the requeue ends this process: nothing may be left unwritten
    if requeue_self():
        return 0
    reporter.reopen()
    reporter.status("suspended", exit_code=0,
                    error="the time-limit warning came and the requeue failed; nkd resume")
    return 0


def _heartbeat(reporter: Reporter, stop: threading.Event) -> None:
    store: Store | None = None
    try:
        while not stop.wait(HEARTBEAT_S):
            try:  # its own connection, to the database the reporter writes now
                if store is not None and store.replaced():
                    store.close()
                    store = None
                if store is None and reporter.store is not None:
                    store = Store(reporter.store.path)
                if store is not None:
                    store.heartbeat(reporter.run_id)
            except Exception:  # a busy or broken database must never kill the run
                store = None
    finally:
        if store is not None:
            store.close()


def _run_recipe(
    config: dict[str, Any], run_dir: Path, reporter: Reporter, resume: bool
) -> tuple[str, int]:
    control = Control(run_dir, on_change=lambda state: reporter.status(state))
    control.install()
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(reporter, stop), daemon=True)
    beat.start()
    ctx = recipes.RunContext(
        run_id=config["run_id"],
        params=config["params"],
        run_dir=run_dir,
        checkpoints_dir=Path(config["checkpoints_dir"]),
        root=Path(config["root"]),
        reporter=reporter,
        control=control,
        resume=resume,
        config=config,
    )
    for name, table in config.get("data_sources", {}).items():
        if table.get("detected"):  # a folder given where a source was expected
            print(f"data {name}: {table['detected']}", flush=True)
    threads, why = plan(config.get("params", {}), _others_active(config, run_dir),
                        cores())
    if why:
        print(why, flush=True)
    apply_env(config, threads)  # BLAS pools read these when torch is first imported, below
    try:
        recipe = recipes.load(config["recipe"])
        # the run's seed before the recipe builds its models: torch seeds each process at
        # random, so without this two runs of the same settings start from different weights
        from core.training import seed_everything  # the recipes have imported torch already

        apply_torch(threads)
        seed_everything(int(config["params"].get("seed", 0)))
        recipe(ctx)
        return "finished", 0
    except StopRun as req:
        if req.action == "suspend" and control.requeue:
            return "requeue", 0
        return ("suspended" if req.action == "suspend" else "stopped"), 0
    finally:
        stop.set()


def _others_active(config: dict[str, Any], run_dir: Path) -> int:
    """Other runs active on this machine now (0 on a Slurm node, whose cores are its own)."""
    if config.get("backend") == "slurm" or os.environ.get("SLURM_JOB_ID"):
        return 0
    try:
        store = Store(config["db"])
    except Exception:  # noqa: BLE001 - no store: no sharing to plan for
        return 0
    try:
        host = socket.gethostname()
        marks = ", ".join("?" * len(HOLDING))
        rows = store.conn.execute(
            f"SELECT count(*) FROM runs WHERE status IN ({marks}) AND id != ? "
            "AND coalesce(host, ?) = ? AND coalesce(backend, 'local') = 'local'",
            (*HOLDING, run_dir.name, host, host)).fetchone()
        return int(rows[0])
    finally:
        store.close()


class CommandRun:
    """Runs the researcher's own script in its own process group and follows its output."""

    def __init__(self, config: dict[str, Any], run_dir: Path, reporter: Reporter) -> None:
        self.config = config
        self.run_dir = run_dir
        self.reporter = reporter
        self.requests: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.stopping = False
        self.killed = False
        self.paused = False
        self.refused = 0  # @nkd records refused, each with one warning line
        self.progress_at = -PROGRESS_S  # when the last step record was reported
        self.parents: list[dict[str, Any]] = []  # lineage of every checkpoint this run makes
        self.cwd = Path(config.get("cwd") or config["root"])
        self.folders = (run_dir, Path(config["checkpoints_dir"]))
        params = config.get("params", {})
        # what an unedited script prints: common log shapes and the registry's own patterns
        self.scalars = Follower(bool(params.get("builtin_scalars", True)),
                                params.get("output_scalars", []))
        self.epoch: int | None = None  # the latest epoch recorded, for checkpoints found by glob
        dirs = [run_dir]
        if params.get("tensorboard_dir"):
            dirs.append(Path(config["root"]) / fill_placeholders(params["tensorboard_dir"],
                                                                 params))
        self.tensorboard = TensorboardWatch(dirs, since=time.time() - 1.0)
        self.watch = None
        if params.get("checkpoints"):
            self.watch = CheckpointWatch(
                params["checkpoints"], params, Path(config["root"]),
                Path(config["checkpoints_dir"]), params.get("checkpoint_copy", "link"),
                since=time.time() - 1.0,
            )

    def _on_usr1(self, _signum: int, _frame: object) -> None:
        action = read_request(self.run_dir)
        if action:
            self.requests.put(action)

    def _on_stop(self, _signum: int, _frame: object) -> None:
        self.requests.put("stop")

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def run(self) -> tuple[str, int]:
        signal.signal(signal.SIGUSR1, self._on_usr1)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGUSR2, self._on_stop)  # Slurm's time limit: a script keeps no state
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
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
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            process_group=0,
        )
        try:
            (self.run_dir / "child.pid").write_text(str(self.proc.pid))
        except OSError:
            pass  # kill finds the script by the run's mark in its environment as well
        lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        reader = threading.Thread(target=self._read, args=(lines,), daemon=True)
        reader.start()
        next_beat = time.monotonic() + HEARTBEAT_S
        next_watch = time.monotonic() + CHECKPOINT_POLL_S
        deadlines: list[tuple[float, int]] = []
        eof = False
        exited_at = 0.0
        while True:
            # a bounded batch of output, then control: a chatty script cannot starve a pause
            try:
                line = lines.get(timeout=0.1)
                handled = 0
                while True:
                    if line is None:
                        eof = True
                        break
                    self._handle_line(line)
                    handled += 1
                    if handled >= MAX_LINES_PER_TICK:
                        break
                    line = lines.get_nowait()
            except queue.Empty:
                pass
            while not self.requests.empty():
                deadlines += self._handle_request(self.requests.get())
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
                if eof:
                    break
                # the script has exited, but a child it left running holds its output open:
                # read what is already there, then end the run (the leftovers are ended after)
                exited_at = exited_at or now
                if now - exited_at > OUTPUT_DRAIN_S and lines.empty():
                    break
        code = self.proc.wait()
        for captured in self.scalars.flush():
            self._report(captured)
        self._follow_files(final=True)
        if self.refused:
            print(f"nkd: {self.refused} @nkd record(s) refused in this run", flush=True)
        if self.killed:
            return "killed", code
        if self.stopping:
            return "stopped", code
        return ("finished" if code == 0 else "failed"), code

    def _read(self, lines: queue.SimpleQueue[str | None]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            lines.put(line)
        lines.put(None)

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
        self.reporter.event(event)

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
        from core.checksum import sha256_file

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
            self.reporter.status("paused")
        elif action == "resume" and self.paused:
            self._signal(signal.SIGCONT)
            self.paused = False
            self.reporter.status("running")
        elif action == "suspend":
            print("nkd: suspend is not available for command experiments; use stop", flush=True)
        elif action == "stop" and not self.stopping:
            self.stopping = True
            self.reporter.status("stopping")
            if self.paused:
                self._signal(signal.SIGCONT)
                self.paused = False
            self._signal(signal.SIGINT)
            now = time.monotonic()
            return [(now + STOP_GRACE_S, signal.SIGTERM), (now + 2 * STOP_GRACE_S, signal.SIGKILL)]
        return []


if __name__ == "__main__":
    sys.exit(main())
