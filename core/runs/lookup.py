"""Finding the run a reference means, from the store alone: `run:<id>`, an experiment (its newest
finished run), `best:EXP` (its best scored finished run) and `EXP@key=value` (its newest finished
run with those settings), and the checkpoint of a run to build on. Shared by the recipes'
references (core.runs.refs), a command's placeholders (core.capture.references) and the checks
made before a run is recorded."""

from __future__ import annotations

import re
from typing import Any

from core.errors import RunError
from core.store import Store
from core.store.states import Status


def find_run(store: Store, kind: str, target: str, key: str) -> dict[str, Any]:
    """The run a reference means: `run:<id>` that run; an experiment its newest finished run;
    `best:EXP` its finished run with the best score (validation SDR, else accuracy);
    `EXP@key=value[,key=value]` its newest finished run with those settings."""
    if kind == "run":
        run = store.get_run(target)
        if run is None:
            raise RunError(f"{key} 'run:{target}': no such run")
        return run
    if kind == "best":
        cur = store.conn.execute(
            "SELECT id FROM runs WHERE experiment = ? AND status = ? AND "
            "coalesce(sdr, accuracy) IS NOT NULL ORDER BY coalesce(sdr, accuracy) DESC, "
            "created_at DESC LIMIT 1", (target, Status.FINISHED))
        row = cur.fetchone()
        if row is None:
            raise RunError(f"{key} 'best:{target}': no finished run of {target} has a score yet")
        return store.get_run(row[0])
    if kind == "where":
        experiment, wanted = split_where(target)
        for (run_id,) in store.conn.execute(
            "SELECT id FROM runs WHERE experiment = ? AND status = ? "
            "ORDER BY created_at DESC", (experiment, Status.FINISHED)).fetchall():
            run = store.get_run(run_id)
            if run and all(_same(run["params"].get(k), v) for k, v in wanted.items()):
                return run
        raise RunError(f"{key} '{target}': no finished run of {experiment} with "
                       f"{', '.join(f'{k}={v}' for k, v in wanted.items())}")
    run = store.latest_run(target, status=Status.FINISHED)
    if run is None:
        raise RunError(f"{key} '{target}' has no finished run yet; run `nkd run {target}` first")
    return run


def split_where(target: str) -> tuple[str, dict[str, str]]:
    """`crnn_long@lr=0.001,epochs=100` (or `crnn_long@lr=0.001@epochs=100`, which a `--set`
    can carry: there a comma makes a sweep) -> ("crnn_long", {"lr": "0.001", "epochs": "100"})."""
    experiment, _, conditions = target.partition("@")
    wanted = {}
    for part in re.split(r"[,@]", conditions):
        k, _, v = part.partition("=")
        wanted[k.strip()] = v.strip()
    return experiment, wanted


def _same(value: Any, wanted: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return str(value).lower() == wanted.lower()
    if isinstance(value, int | float):
        try:
            return float(value) == float(wanted)
        except ValueError:
            return False
    return str(value) == wanted.strip("\"'")


def checkpoint_of_run(store: Store, run_id: str) -> dict[str, Any] | None:
    """A run's checkpoint to build on: its newest best, else its newest last."""
    found = store.checkpoints(run_id)
    for role in ("best", "last", None):
        chosen = [c for c in found if role is None or c["role"] == role]
        if chosen:
            return chosen[-1]
    return None
