"""Checkpoint files a run names (`pretrained`, `teacher`, a blend's `sources`), opened and checked
at launch the way its recipe will read them, so a file that is not an nkd checkpoint of the right
kind (a pickle, a truncated file, text, another architecture) is refused in one line before
anything is recorded, instead of a run that fails a second after it starts.

Each check is the function the recipe itself calls when it loads the file; torch is imported
only when a run names a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import RunError
from core.registry import Experiment, Reference, Registry
from core.registry.settings import resolve


def check_files(registry: Registry, exp: Experiment, where: str) -> None:
    """RunError (exit 2, nothing written) naming the key and the file when a checkpoint file
    the run names would be refused by its recipe."""
    named = [(key, _path(registry, ref)) for key, ref in exp.references.items()
             if ref.kind == "file"]
    sources = [_path(registry, ref) for ref in exp.sources if ref.kind == "file"]
    if not named and not sources:
        return
    key = "sources"
    try:
        if sources and exp.recipe == "separation.blend":
            _blend_sources(sources)
        for key, path in named:
            _check(exp, key, path)
    except RunError as exc:
        raise RunError(f"{where}: key '{key}': {exc}; nothing was started") from None


def _path(registry: Registry, ref: Reference) -> Path:
    path = Path(ref.target).expanduser()
    return path if path.is_absolute() else registry.root / path


def _blend_sources(paths: list[Path]) -> None:
    from core.separation.blend import check_sources
    from core.training import checkpoint

    check_sources(paths, [checkpoint.read(p) for p in paths])


def _check(exp: Experiment, key: str, path: Path) -> None:
    recipe = exp.recipe or ""
    if recipe.startswith("separation.") and key == "pretrained":
        from core.separation.recipes import check_pretrained

        settings: dict[str, Any] | None = None
        if recipe == "separation.train":
            settings = resolve(recipe, exp.params)[0]
        check_pretrained(path, settings)
    elif recipe.startswith("noise.") and key == "teacher":
        _noise_teacher(recipe, path)
    else:
        from core.training import checkpoint

        checkpoint.read(path)  # at least a checkpoint that nkd can open


def _noise_teacher(recipe: str, path: Path) -> None:
    """A teacher's encoder and classifier (the other file of the pair beside the one named);
    an evaluation scores a student's encoder and head too."""
    from core.noise.parts import student_pair, teacher_pair
    from core.runs.refs import part_of_file

    what = f"file {path}"
    try:
        teacher_pair(part_of_file(path, "encoder", what), part_of_file(path, "classifier", what))
    except RunError as not_teacher:
        if recipe != "noise.evaluate":
            raise
        try:
            student_pair(part_of_file(path, "encoder", what), what)
        except RunError:
            raise not_teacher from None
