"""The detached worker: `python -m core.worker runs/<run_id> [--resume]` runs one run to its end.

It is started in its own session by the launcher, so it outlives the terminal, the TUI and the SSH
connection that started it. Its stdout and stderr are the run's output.log.
"""

from __future__ import annotations

import fcntl
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.backends import backend_of
from core.backends.liveness import identity, ticks_now
from core.backends.prestart import WHEN_TOLD, told_to_go
from core.backends.procs import end_processes, python_env, run_processes
from core.backends.queue.wake import wake
from core.backends.this_box import active_here
from core.capture.command import CommandRun
from core.errors import RunError
from core.registry import PLACEHOLDER
from core.registry.settings import of_config
from core.runs.control import Control, StopRun
from core.runs.machine import host, record_worker
from core.store import Store
from core.store.reporter import Reporter
from core.store.states import Status, ended_badly
from core.util import cache_use
from core.util.files import read_json, tree_bytes
from core.util.names import run_path
from core.util.threads import apply_env, apply_torch, cores, plan

HEARTBEAT_S = 5.0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m core.worker RUN_DIR [--resume]", file=sys.stderr)
        return 2
    run_dir = Path(argv[0]).resolve()
    resume = "--resume" in argv[1:]
    if WHEN_TOLD in argv[1:]:
        if not told_to_go(int(argv[argv.index(WHEN_TOLD) + 1])):
            return 0  # prestarted, and the launcher started nothing after all
        os.chdir(run_dir)  # where start_worker starts a worker; a prestarted one moves there
    # output.log may fill a disk or vanish: a lost log line must never end the run
    sys.stdout = _Tolerant(sys.stdout)
    sys.stderr = _Tolerant(sys.stderr)
    config = read_json(run_dir / "config.json")
    run_id = config["run_id"]
    if not _hold(run_dir):  # one worker per run, whoever started this one
        print(f"nkd: {run_id}: another worker is running this run; this one exits", flush=True)
        return 2
    apply_env(config, None)  # the registry's env, for recipes too, before torch is imported
    if "--resume-if-state" in argv[1:]:  # a Slurm job, requeued: go on from its saved state
        resume = any(Path(config["checkpoints_dir"]).glob("*_state.pt"))
    store: Store | None = None
    if backend_of(config).writes_store:  # a compute node writes only its run folder
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
        where = {"node": host()[:200]}
        if os.environ.get("CUDA_VISIBLE_DEVICES"):
            where["gpus"] = os.environ["CUDA_VISIBLE_DEVICES"][:400]
    reporter.status(Status.RUNNING, **identity(os.getpid()), device=config.get("device"), **where)
    ended = Status.FAILED  # what on_finish is told, if the run gets as far as a final status
    orphaned: list[str] = []  # why the run's folder is no longer its record, once it is not
    watching = threading.Event()
    threading.Thread(target=_watch_folder, args=(run_dir, orphaned, watching),
                     daemon=True).start()
    try:
        if config.get("command"):
            # the machine it runs on (torch's versions from its files), read while the script
            # starts: `uname` and the files are no reason for the script to wait
            machine = threading.Thread(target=record_worker, args=(run_dir,))
            machine.start()
            try:
                status, code = CommandRun(config, run_dir, reporter).run()
            finally:
                machine.join()
        else:
            status, code = _run_recipe(config, run_dir, reporter, resume)
        watching.set()
        if status == "requeue":
            ended = ""  # back in Slurm's queue: not an end
            return _requeue(reporter)
        if status == Status.SUSPENDED and config.get("halving") \
                and os.environ.get("SLURM_JOB_ID"):
            ended = ""  # at its rung, held in Slurm's queue until its sweep decides
            return _park(reporter)
        if orphaned:  # stopped because its record is gone: the store says so, and why
            status = Status.LOST
        ended = status
        error = {
            Status.FAILED: f"command exited with status {code}",
            Status.KILLED: "the script did not stop within the grace period and was killed",
            Status.LOST: orphaned[0] if orphaned else "",
        }.get(status)
        reporter.status(status, exit_code=code, **({"error": error} if error else {}),
                        **usage(bool(config.get("command"))), folder_bytes=tree_bytes(run_dir),
                        **cache_use.summary())
        _release(config, run_dir)
        return 1 if ended_badly(status) else 0
    except Exception as exc:
        import traceback  # on a failure only: a worker starts without it

        traceback.print_exc()
        sys.stdout.flush()
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        reporter.status(Status.FAILED, exit_code=1, error=message,
                        **usage(bool(config.get("command"))), folder_bytes=tree_bytes(run_dir),
                        **cache_use.summary())
        _release(config, run_dir)
        return 1
    finally:
        watching.set()
        # nothing the run started outlives it (a script's background or setsid children)
        # (once it let go of the run, only what started before: the run's next worker is not
        # a leftover)
        leftovers = run_processes(run_dir, started_before=_released_at[0] if _released_at
                                  else None)
        if leftovers:
            print(f"nkd: ending {len(leftovers)} leftover process(es) of the run", flush=True)
            end_processes(leftovers)
        reporter.close()
        if reporter.store is not None:
            reporter.store.close()
        if ended and config.get("params", {}).get("on_finish"):
            _on_finish(config, run_dir, ended)


LOCK_NAME = "worker.lock"
_held: list[int] = []  # the lock's descriptor, open for the worker's whole life


LOCK_WAIT_S = 10.0  # a worker that recorded its end may still be ending its processes


_released_at: list[int | None] = []  # when (ticks since boot) this worker let go of its run


def _release(config: dict[str, Any], run_dir: Path) -> None:
    """Let go of the run once its end is recorded: a restart typed right after may start, and
    the workspace's scheduler is woken to start the next queued run now."""
    _released_at.append(ticks_now())
    while _held:
        fd = _held.pop()
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    wake(Path(config.get("root") or run_dir.parent.parent))


def _hold(run_dir: Path) -> bool:
    """Take the run folder's worker lock (an exclusive flock, released when the run's end is
    recorded, and by the kernel when this process ends however it ends); False when another
    worker still runs the run after LOCK_WAIT_S."""
    try:
        fd = os.open(run_path(run_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except (OSError, RunError) as exc:  # a read-only folder: the store's claim still holds
        print(f"nkd: worker lock not taken ({getattr(exc, 'strerror', None) or exc})",
              flush=True)
        return True
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:  # held: another worker of this run
            if time.monotonic() >= deadline:
                os.close(fd)
                return False
            time.sleep(0.05)
        except OSError as exc:  # no locks on this filesystem (some NFS): the store's claim holds
            print(f"nkd: worker lock not taken ({exc.strerror or exc})", flush=True)
            os.close(fd)
            return True
    _held.append(fd)
    return True


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

    reporter.status(Status.QUEUED, requeue=1, resume=1)
    reporter.close()  # the requeue ends this process: nothing may be left unwritten
    if requeue_self():
        return 0
    reporter.reopen()
    reporter.status(Status.SUSPENDED, exit_code=0,
                    error="the time-limit warning came and the requeue failed; nkd resume")
    return 0


def _park(reporter: Reporter) -> int:
    """A halving trial on Slurm at its rung, its state saved: suspended, and its job put back
    in Slurm's queue held. Its sweep releases the job when it promotes the trial (it resumes
    from that state) or cancels it when it prunes it. Where Slurm refuses, the job ends here: a
    promotion submits it again."""
    from core.backends.slurm import requeue_self

    reporter.status(Status.SUSPENDED, exit_code=0, requeue=1, **usage(False))
    reporter.close()  # the requeue ends this process: nothing may be left unwritten
    if not requeue_self(held=True):
        reporter.reopen()
    return 0


WATCH_S = 1.0  # how often the worker checks that its run folder is still its record


def _folder_identity(run_dir: Path) -> tuple[int, ...] | None:
    try:
        folder, events = run_dir.stat(), (run_dir / "events.jsonl").stat()
    except OSError:
        return None
    return folder.st_dev, folder.st_ino, events.st_ino


def _watch_folder(run_dir: Path, orphaned: list[str], done: threading.Event) -> None:
    """The run folder deleted (`rm -rf runs/<id>`) or its events.jsonl removed or replaced
    under a live run: the worker stops within seconds, and its end is recorded `lost`, with
    the reason, instead of a run going on that no folder records."""
    first = _folder_identity(run_dir)
    if first is None:
        return
    while not done.wait(WATCH_S):
        now = _folder_identity(run_dir)
        if now == first:
            continue
        moved = not run_dir.is_dir() or now is not None and now[:2] != first[:2]
        what = "its run folder" if moved else "its events.jsonl"
        orphaned.append(f"{what} ({run_dir}) was deleted or replaced while it ran; stopped")
        print(f"nkd: {orphaned[0]}", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's own meaning of SIGTERM is stop
        return


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
    from core.runs import context as recipes  # a recipe's: a command's worker starts without

    control = Control(run_dir, on_change=lambda state: reporter.status(state))
    control.install()
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(reporter, stop), daemon=True)
    beat.start()
    settings, origin = of_config(config)
    ctx = recipes.RunContext(
        run_id=config["run_id"],
        params=settings,
        run_dir=run_dir,
        checkpoints_dir=Path(config["checkpoints_dir"]),
        root=Path(config["root"]),
        reporter=reporter,
        control=control,
        resume=resume,
        config=config,
        origin=origin,
    )
    for name, table in config.get("data_sources", {}).items():
        if table.get("detected"):  # a folder given where a source was expected
            print(f"data {name}: {table['detected']}", flush=True)
    threads, why = plan(settings, _others_active(config, run_dir),
                        cores())
    if why:
        print(why, flush=True)
    apply_env(config, threads)  # BLAS pools read these when torch is first imported, below
    try:
        recipe = recipes.load(config["recipe"])
        # the run's seed before the recipe builds its models: torch seeds each process at
        # random, so without this two runs of the same settings start from different weights
        from core.training.loop import seed_everything  # the recipes have imported torch already

        apply_torch(threads)
        seed_everything(int(settings["seed"]))
        record_worker(run_dir)  # the machine it runs on, with the torch the recipe loaded
        recipe(ctx)
        return Status.FINISHED, 0
    except StopRun as req:
        if req.action == "suspend" and control.requeue:
            return "requeue", 0
        return (Status.SUSPENDED if req.action == "suspend" else Status.STOPPED), 0
    finally:
        stop.set()


def _others_active(config: dict[str, Any], run_dir: Path) -> int:
    """Other runs active on this machine now (0 on a Slurm node, whose cores are its own)."""
    if not backend_of(config).checked_by_pid or os.environ.get("SLURM_JOB_ID"):
        return 0
    try:
        store = Store(config["db"])
    except Exception:  # noqa: BLE001 - no store: no sharing to plan for
        return 0
    try:
        return active_here(store, run_dir.name, host())
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
