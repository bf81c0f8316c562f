"""Finding the weights a run refers to: `teacher`, `pretrained` (an experiment, a run or a file).

An experiment means its newest finished run; `run:<id>` means that run; `best:EXP` its best
scored finished run; `EXP@key=value` its newest finished run with those settings; anything else
is a file, relative to the registry's folder. Every failure names the key and what is missing,
and every resolution is said in the log and kept in events.jsonl.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import RunError
from core.runs.context import RunContext
from core.runs.lookup import find_run
from core.store import Store


def reference(ctx: RunContext, key: str) -> dict[str, str]:
    ref = ctx.config.get("references", {}).get(key)
    if not ref:
        raise RunError(f"run '{ctx.run_id}': key '{key}' is not set")
    return ref


def source_run(ctx: RunContext, key: str) -> dict[str, Any] | None:
    """The run a reference points at (None for a file reference)."""
    return _run_of(ctx, reference(ctx, key), key)


def _run_of(ctx: RunContext, ref: dict[str, str], key: str) -> dict[str, Any] | None:
    if ref["kind"] == "file":
        return None
    store = Store(ctx.db_path)
    try:
        run = find_run(store, ref["kind"], ref["target"], key)
    finally:
        store.close()
    say_resolved(ctx.reporter, key, ref, run)
    return run


def say_resolved(reporter: Any, key: str, ref: dict[str, str], run: dict[str, Any]) -> None:
    """Which run a reference resolved to: one line in the log and a `reference` event in the
    run's record (an experiment name alone means whatever finished last, so this is kept)."""
    score = run.get("sdr") if run.get("sdr") is not None else run.get("accuracy")
    print(f"{key}: {_describe(ref)} -> run {run['id']}"
          + (f" (score {score:.4g})" if score is not None else ""), flush=True)
    reporter.emit("reference", key=key, ref=_describe(ref), run=run["id"])


def checkpoint_path(ctx: RunContext, key: str, prefix: str, part: str, which: str = "best") -> Path:
    """The checkpoint file `<best_><prefix>_<part>.pth` of the referenced run (or file)."""
    return checkpoint_path_of(ctx, reference(ctx, key), key, prefix, part, which)


def checkpoint_path_of(
    ctx: RunContext, ref: dict[str, str], key: str, prefix: str, part: str, which: str = "best"
) -> Path:
    """As checkpoint_path, for a reference given as {kind, target}; `key` names it in errors."""
    name = f"{'best_' if which == 'best' else ''}{prefix}_{part}.pth"
    if ref["kind"] == "file":
        given = Path(ref["target"])
        given = given if given.is_absolute() else ctx.root / given
        if not given.is_file():
            raise RunError(f"{key} '{ref['target']}': file {given} not found")
        return part_of_file(given, part, f"{key} '{ref['target']}'")
    else:
        run = _run_of(ctx, ref, key)
        path = Path(ctx.config["checkpoints_dir"]).parent / run["id"] / name
        if not path.is_file():  # a command experiment's checkpoint, under its own name
            recorded = _recorded_checkpoint(ctx, run["id"])
            path = recorded or path
    if not path.is_file():
        raise RunError(f"{key} '{_describe(ref)}': checkpoint {path} not found"
                       + _deleted_by_gc(ctx, path))
    return path


def _deleted_by_gc(ctx: RunContext, path: Path) -> str:
    """`: nkd gc deleted it on …` when the store records that it was deleted."""
    import time

    store = Store(ctx.db_path)
    try:
        gone = store.deleted_checkpoint(str(path))
    finally:
        store.close()
    if gone is None:
        return ""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(gone["deleted_at"]))
    return (f": `{gone['deleted_by']}` deleted it on {when} (sha256 "
            f"{(gone['sha256'] or '-')[:12]}); a copy with that sha256 put back there is used "
            f"again")


PAIR_PARTS = ("encoder", "classifier", "head")  # the files of a noise model come in pairs


def part_of_file(given: Path, part: str, what: str) -> Path:
    """The file holding `part` when the user named `given`: itself, or, when they named one
    file of a pair (`..._encoder.pth`), its sibling beside it (`..._classifier.pth`)."""
    for other in PAIR_PARTS:
        if given.name.endswith(f"_{other}.pth") and other != part:
            path = given.with_name(given.name.replace(f"_{other}.pth", f"_{part}.pth"))
            if not path.is_file():
                raise RunError(f"{what}: the {part} checkpoint {path.name} that belongs with it "
                               f"is not beside it in {given.parent}")
            return path
    return given


def _recorded_checkpoint(ctx: RunContext, run_id: str) -> Path | None:
    from core.runs.lookup import checkpoint_of_run

    store = Store(ctx.db_path)
    try:
        found = checkpoint_of_run(store, run_id)
    finally:
        store.close()
    return Path(found["path"]) if found else None


def checkpoint_id(path: Path) -> str:
    """The store's id of a checkpoint file: <run_id>/<file name>."""
    return f"{path.parent.name}/{path.name}"


def _describe(ref: dict[str, str]) -> str:
    return {"run": f"run:{ref['target']}", "best": f"best:{ref['target']}"}.get(
        ref["kind"], ref["target"])
