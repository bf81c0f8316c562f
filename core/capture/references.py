"""`{pretrained}`, `{teacher}` and `{sources}` in a command: the checkpoint files of the runs they
name, resolved when the run starts (in a chain the parent has just finished), and recorded as
lineage, so a fine-tune made with the researcher's own train.py reads in `nkd lineage` like a
built-in recipe's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import RunError
from core.registry import PLACEHOLDER
from core.runs.lookup import checkpoint_of_run, find_run
from core.store import Store

RELATIONS = {"pretrained": "pretrained", "teacher": "teacher", "sources": "merged"}


def _resolve(store: Store, root: Path, key: str, ref: dict[str, Any]) -> tuple[str, str | None]:
    """(file path, store checkpoint id or None) of one reference."""
    kind, target = ref["kind"], ref["target"]
    if kind == "file":
        path = Path(target) if Path(target).is_absolute() else root / target
        if not path.is_file():
            raise RunError(f"{key} '{target}': file {path} not found")
        return str(path), None
    run = find_run(store, kind, target, key)
    print(f"{key}: {target} -> run {run['id']}", flush=True)
    ckpt = checkpoint_of_run(store, run["id"])
    if ckpt is None:
        raise RunError(f"{key} '{target}': run {run['id']} recorded no checkpoint")
    return ckpt["path"], ckpt["id"]


def resolve(config: dict[str, Any], store: Store | None) -> tuple[list[str], list[dict]]:
    """The command with its reference placeholders replaced by checkpoint files, and the
    lineage parents (checkpoint ids) every checkpoint of this run gets."""
    argv = list(config.get("command") or [])
    used = {m for arg in argv for m in PLACEHOLDER.findall(arg)} & set(RELATIONS)
    if not used:
        return argv, []
    if store is None:
        raise RunError("{pretrained}/{teacher}/{sources} need the run database to find the "
                       "checkpoints they name")
    root = Path(config["root"])
    paths: dict[str, str] = {}
    parents: list[dict] = []
    for key in sorted(used):
        if key == "sources":
            found = []
            for src in config.get("sources", []):
                path, ckpt = _resolve(store, root, "sources", src)
                found.append(path)
                if ckpt:
                    parents.append({"checkpoint": ckpt, "relation": "merged",
                                    "weight": src.get("weight")})
            paths[key] = ",".join(found)
            continue
        ref = config.get("references", {}).get(key)
        if not ref:
            raise RunError(f"the command uses {{{key}}} but '{key}' is not set")
        path, ckpt = _resolve(store, root, key, ref)
        paths[key] = path
        if ckpt:
            parents.append({"checkpoint": ckpt, "relation": RELATIONS[key], "path": path})

    def fill(match: Any) -> str:
        return paths.get(match.group(1), match.group(0))

    return [PLACEHOLDER.sub(fill, arg) for arg in argv], parents
