"""A worker started before its run is recorded: `nkd run` of one run on this box starts the
worker's interpreter first, so that its start-up overlaps the launcher's own (two processes'
start-ups, one after the other, were most of what `nkd run` adds to a short script). This
module is imported before anything else of the launcher's, so it imports little."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
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
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "core.worker", str(run_dir), WHEN_TOLD, str(told)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=run_dir,
                env=python_env(run_dir),
                pass_fds=(told,),
            )
        except BaseException:
            os.close(self._go)
            os.close(log)
            self._take_back()
            raise
        finally:
            os.close(told)
        os.close(log)

    def release(self, store: Store, gpus: list[Gpu] | None) -> int:
        """The run is recorded: the worker is recorded too, then told to go (as start_worker
        would have started it)."""
        from core.backends.liveness import identity
        from core.backends.local import visible_ids
        from core.store.reporter import record

        visible = visible_ids(gpus)
        threading.Thread(target=self.proc.wait, daemon=True).start()
        record(self.run_dir.name, self.run_dir, store, "worker", **identity(self.proc.pid),
               **({"gpus": visible} if visible is not None else {}))
        try:
            os.write(self._go, (json.dumps({"gpus": visible}) + "\n").encode())
        finally:
            os.close(self._go)
            self.released = True
        return self.proc.pid

    def cancel(self) -> None:
        """Nothing was started: the worker ends, and the run folder goes if it holds nothing
        but the worker's log (a run recorded in it before a later refusal keeps it)."""
        if self.released:
            return
        self.released = True
        os.close(self._go)
        self.proc.kill()  # it has done nothing yet: it reads the pipe before anything else
        self.proc.wait()
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


def told_to_go(fd: int) -> bool:
    """In a prestarted worker: wait for the launcher's word on the pipe. False when it closed
    the pipe untold (it started nothing); the GPUs it placed the run on go into this process's
    environment, before torch is imported, as start_worker would have set them."""
    with os.fdopen(fd, "rb") as pipe:
        line = pipe.readline()
    if not line:
        return False
    visible = json.loads(line).get("gpus")
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return True
