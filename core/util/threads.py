"""CPU threads and environment of a run's worker, set before torch is imported.

`env` (registry) applies to every run, recipe or command. `threads` sets torch's and the BLAS
libraries' thread counts; without it, a run that starts while others are active on this machine
gets its share of the cores (cores // runs, at least 1), so that two runs on a small box do not
each spawn a thread per core and slow both down; a run alone keeps torch's default.
"""

from __future__ import annotations

import os
from typing import Any

BLAS_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cores() -> int:
    """The cores this process may use (its CPU affinity, or Slurm's allocation)."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return max(1, int(slurm))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan(params: dict[str, Any], others: int, available: int) -> tuple[int | None, str]:
    """The thread count for a run (None: leave torch's default) and why, in words."""
    if params.get("threads"):
        n = int(params["threads"])
        return n, f"threads: {n} (the registry's `threads`)"
    if others > 0:
        n = max(1, available // (others + 1))
        return n, (f"threads: {n} ({available} cores shared by {others + 1} active runs; "
                   f"set `threads` to choose)")
    return None, ""


def apply_env(config: dict[str, Any], threads: int | None) -> None:
    """The registry's `env`, then the thread count for the BLAS libraries where `env` does not
    set it; both before torch or numpy start their thread pools."""
    env = {k: str(v) for k, v in (config.get("env") or {}).items()}
    os.environ.update(env)
    if threads is not None:
        for var in BLAS_VARS:
            if var not in env:
                os.environ[var] = str(threads)


def apply_torch(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
