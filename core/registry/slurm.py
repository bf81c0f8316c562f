"""The registry's `[backends.slurm]` table: how a run's sbatch script is written."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.registry.keys import KEYS

# backends configured by a [backends.NAME] table: every `backend` value but this box's
CONFIGURED = tuple(b for b in KEYS["backend"].choices if b != KEYS["backend"].default)


@dataclass(frozen=True)
class SlurmConfig:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None  # Slurm's time format: "2-00:00:00", "12:00:00", "90"
    gres: str = "gpu"  # a run's `gpus` becomes --gres=<gres>:<gpus>
    cpus: int | None = None  # --cpus-per-task
    mem: str | None = None  # --mem, e.g. "32G"
    signal: str = "B:USR2@120"  # the warning before the time limit: suspend, then requeue
    extra: tuple[str, ...] = ()  # more #SBATCH lines, e.g. "--constraint=a100"
    setup: tuple[str, ...] = ()  # shell lines before the worker: module load, conda activate
    python: str | None = None  # the Python on the compute nodes (default: this one)


SLURM_KEYS = {
    "partition": "partition to submit to",
    "account": "account (--account)",
    "qos": "quality of service (--qos)",
    "time": "time limit, Slurm's format: 12:00:00, 2-00:00:00",
    "gres": "generic resource a run's gpus are counted in (gpu, or gpu:a100)",
    "cpus": "CPUs per run (--cpus-per-task)",
    "mem": "memory per run (--mem), e.g. 32G",
    "signal": "warning signal before the time limit (default B:USR2@120)",
    "extra": "more #SBATCH options, a list of strings such as \"--constraint=a100\"",
    "setup": "shell lines run before the worker (module load, activating an environment)",
    "python": "the Python on the compute nodes (default: the one nkd runs on)",
}
_OPTION = re.compile(r"--?[A-Za-z][A-Za-z0-9-]*(=\S.*)?")


def parse_backends(path: Path, tables: Any, problems: list[str]) -> dict[str, SlurmConfig]:
    if tables is None:
        return {}
    if not isinstance(tables, dict):
        problems.append(f"{path}: [backends] must be a table of backends")
        return {}
    out = {}
    for name, table in tables.items():
        where = f"{path}: [backends.{name}]"
        if name not in CONFIGURED:
            problems.append(f"{where}: unknown backend '{name}' (known: {', '.join(CONFIGURED)})")
            continue
        if not isinstance(table, dict):
            problems.append(f"{where} must be a table")
            continue
        before = len(problems)
        for key, value in table.items():
            if key not in SLURM_KEYS:
                problems.append(f"{where}: unknown key '{key}' (known: {', '.join(SLURM_KEYS)})")
            elif key in ("extra", "setup"):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    problems.append(f"{where}: key '{key}' must be a list of strings")
                elif key == "extra" and not all(_OPTION.fullmatch(v) for v in value):
                    problems.append(f"{where}: key 'extra': each entry is one sbatch option "
                                    f"such as \"--constraint=a100\"")
            elif key == "cpus":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    problems.append(f"{where}: key 'cpus' must be an integer ≥ 1")
            elif not isinstance(value, str) or not value or "\n" in value:
                problems.append(f"{where}: key '{key}' must be a one-line string")
        if len(problems) == before:
            out[name] = SlurmConfig(
                **{k: (tuple(v) if k in ("extra", "setup") else v) for k, v in table.items()}
            )
    return out
