"""`nkd rerun RUN`: a new run of RUN's experiment with RUN's recorded settings (its `--set`
values and the runs its references resolved to, pinned), recorded as a rerun of it.

Before anything is written, the code and the data it would run on are read now (every data file,
no cache) and compared with RUN's record. When either differs, the rerun is refused with one line
saying what differs (exit 2) unless `anyway`; the new run then records what differed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import RunError
from core.registry import Registry
from core.registry.workspace import Workspace
from core.runs import provenance
from core.runs.differences import differs
from core.runs.launch import (
    Launched,
    code_folder,
    command_cwd,
    data_roots,
    launch_experiment,
)
from core.store import Store
from core.store.events import EventLog
from core.util.files import read_json

PINNED_KINDS = ("experiment", "best")  # references that name whatever run is latest or best


def _pinned(run_dir: Path, config: dict[str, Any]) -> dict[str, str]:
    """Each reference the run resolved by experiment name, as the run it resolved to."""
    kinds = {k: r.get("kind") for k, r in (config.get("references") or {}).items()}
    out = {}
    for event in EventLog(run_dir / "events.jsonl"):
        if event.get("type") == "reference" and kinds.get(event.get("key")) in PINNED_KINDS:
            out[event["key"]] = f"run:{event['run']}"
    return out


def _values(registry: Registry, name: str, recorded: dict[str, Any],
            pinned: dict[str, str]) -> tuple[list[tuple[str, Any]], list[str]]:
    """The overrides that give the experiment its recorded values again, and the keys the
    registry sets now that the run did not have (they cannot be taken away)."""
    now = registry.get(name).params
    values: list[tuple[str, Any]] = []
    for key, value in recorded.items():
        if key == "params" and isinstance(value, dict):
            values += [(f"params.{k}", v) for k, v in value.items()
                       if (now.get("params") or {}).get(k) != v]
        elif key in pinned:
            values.append((key, pinned[key]))
        elif now.get(key) != value:
            values.append((key, value))
    values += [(k, v) for k, v in pinned.items() if k not in recorded]
    added = sorted(k for k in now if k not in recorded)
    return values, added


def rerun(registry: Registry, store: Store, run: dict[str, Any], anyway: bool = False
          ) -> tuple[Launched, list[str]]:
    """Start the rerun of `run` (a store row); the launch and what differs from `run`."""
    run_id, run_dir = run["id"], Path(run["run_dir"] or "")
    try:
        config = read_json(run_dir / "config.json")
    except (OSError, ValueError) as exc:
        raise RunError(f"{run_id}: its config.json cannot be read ({exc}); nothing was "
                       f"started") from None
    name = config.get("experiment") or run["experiment"]
    if name not in registry.experiments:
        raise RunError(f"{run_id}: its experiment '{name}' is not in {registry.path} (a blend "
                       f"or an evaluation made by a command is started by that command again); "
                       f"nothing was started")
    values, added = _values(registry, name, config.get("params") or {},
                            _pinned(run_dir, config))
    exp = registry.resolve_values(name, values)
    old = provenance.read(run_dir)
    roots = data_roots(registry, exp)
    made = provenance.snapshot(code_folder(command_cwd(Workspace.at(registry.path), exp)),
                               roots)  # every data file read: a rewritten file is seen
    now = {"code": made.code, "data": made.data}
    found = differs(old, now) + [f"setting '{k}' is set by the registry now and was not then"
                                 for k in added]
    if old is None:
        found.insert(0, "it has no provenance record, so its code and data cannot be checked")
    if found and not anyway:
        raise RunError(f"{run_id}: {'; '.join(found)}; `nkd rerun {run_id} --anyway` starts "
                       f"it all the same (the new run records the difference); nothing was "
                       f"started")
    launched = launch_experiment(registry, exp, store, made=made,
                                 rerun={"of": run_id, "differs": found})
    return launched, found
