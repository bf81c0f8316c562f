"""A worker started before its run is recorded: `nkd run` of one run on this box starts the
worker's interpreter first, so that its start-up overlaps the launcher's own (two processes'
start-ups, one after the other, were most of what `nkd run` adds to a short script). This
module is imported before anything else of the launcher's, so it imports little."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.backends.procs import python_env
from core.util.names import allocate_run_dir, open_append, run_path

if TYPE_CHECKING:
    from core.backends.gpus import Gpu
    from core.store import Store

WHEN_TOLD = "--when-told"  # a prestarted worker's argument: the pipe it waits on


class Prestarted:
    """A worker for a new run folder of `experiment`, started before the run is recorded. It
    carries the run's mark from its first moment and waits on a pipe: `release` tells it to
    go, and which GPUs are its; `cancel` ends it, untold, and takes back the run folder, which
    holds nothing but the worker's empty log."""

    def __init__(self, runs_dir: Path, experiment: str) -> None:
        self.experiment = experiment
        self.run_dir = run_dir = allocate_run_dir(runs_dir, experiment)
        self.released = False
        told, self._go = os.pipe()
        log = open_append(run_path(run_dir, "output.log"))
        try:
            self.pid = _spawn(
                [sys.executable, "-P", "-m", "core.worker", str(run_dir), WHEN_TOLD, str(told)],
                python_env(run_dir), log, told)
        except BaseException:
            os.close(self._go)
            self._take_back()
            raise
        finally:
            os.close(told)
            os.close(log)

    def release(self, store: Store, gpus: list[Gpu] | None) -> int:
        """The run is recorded: the worker is recorded too, then told to go (as start_worker
        would have started it)."""
        import json
        import threading

        from core.backends.liveness import identity
        from core.backends.local import visible_ids
        from core.store.reporter import record

        visible = visible_ids(gpus)
        threading.Thread(target=os.waitpid, args=(self.pid, 0), daemon=True).start()
        record(self.run_dir.name, self.run_dir, store, "worker", **identity(self.pid),
               **({"gpus": visible} if visible is not None else {}))
        try:
            os.write(self._go, (json.dumps({"gpus": visible}) + "\n").encode())
        finally:
            os.close(self._go)
            self.released = True
        return self.pid

    def cancel(self) -> None:
        """Nothing was started: the worker ends, and the run folder goes if it holds nothing
        but the worker's log (a run recorded in it before a later refusal keeps it)."""
        if self.released:
            return
        self.released = True
        os.close(self._go)
        import signal

        os.kill(self.pid, signal.SIGKILL)  # it has done nothing yet: it waits on the pipe
        os.waitpid(self.pid, 0)
        self._take_back()

    def _take_back(self) -> None:
        """The run folder goes, if it holds nothing but the worker's log."""
        try:
            entries = {p.name for p in self.run_dir.iterdir()}
            if entries <= {"output.log"}:
                if entries:
                    run_path(self.run_dir, "output.log").unlink()
                self.run_dir.rmdir()
        except OSError:
            pass


def _spawn(argv: list[str], env: dict[str, str], log: int, told: int) -> int:
    """The worker's process, as start_worker's subprocess would start it (its own session,
    stdin from /dev/null, stdout and stderr to the run's log, no descriptor of ours but the
    pipe), by posix_spawn: without importing subprocess, which is a tenth of what the command
    does before this. Its folder is not its working directory yet (the worker moves there once
    told); `-P` keeps this one off its import path."""
    os.set_inheritable(told, True)
    actions: list[tuple] = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                            (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)]
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
        fd = int(name)
        try:
            if fd > 2 and fd != told and os.get_inheritable(fd):
                actions.append((os.POSIX_SPAWN_CLOSE, fd))  # one the command inherited
        except OSError:  # the listing's own descriptor, closed since
            continue
    return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)


def told_to_go(fd: int) -> bool:
    """In a prestarted worker: wait for the launcher's word on the pipe. False when it closed
    the pipe untold (it started nothing); the GPUs it placed the run on go into this process's
    environment, before torch is imported, as start_worker would have set them."""
    import json

    with os.fdopen(fd, "rb") as pipe:
        line = pipe.readline()
    if not line:
        return False
    visible = json.loads(line).get("gpus")
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return True
