"""Runs on this box: the worker started in its own session, on the GPUs it was placed on; its
process recorded at once (pid and start ticks), so it can be told alive or gone from its first
moment. Signals and liveness are in core.runs.control and core.backends.liveness."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from core.backends.gpus import Gpu
from core.backends.liveness import identity
from core.backends.procs import python_env
from core.store import Store
from core.store.reporter import record
from core.util.names import open_append, run_path


def visible_ids(gpus: list[Gpu] | None) -> str | None:
    return None if gpus is None else ",".join(g.visible_id for g in gpus)


def start_worker(
    run_dir: Path, store: Store, resume: bool = False, gpus: list[Gpu] | None = None
) -> int:
    """Start `python -m core.worker` in its own session; its output is the run's output.log.

    The worker's process (pid and kernel start ticks) is recorded at once, so the run can be
    told alive or gone from its first moment; every process it starts carries the run's mark.
    """
    env = python_env(run_dir)
    visible = visible_ids(gpus)
    if visible is not None:  # the run sees only its own GPUs, in PCI order like nvidia-smi
        env["CUDA_VISIBLE_DEVICES"] = visible
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    argv = [sys.executable, "-m", "core.worker", str(run_dir)] + (["--resume"] if resume else [])
    log = open_append(run_path(run_dir, "output.log"))
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=run_dir,
            env=env,
        )
    finally:
        os.close(log)
    # reap it when it ends, so a long-lived launcher (the TUI) leaves no zombie behind
    threading.Thread(target=proc.wait, daemon=True).start()
    record(run_dir.name, run_dir, store, "worker", **identity(proc.pid),
           **({"gpus": visible} if visible is not None else {}))
    return proc.pid

