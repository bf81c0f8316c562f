"""What a noise run names, checked at launch as its recipe reads it, before anything is
recorded: the labels its folders hold (by sub-folder name or `<class>_<n>` prefix, no audio
decoded) against the classes it asks for, an unlabelled pool where labels are needed, and a
`teacher` file: an nkd teacher's encoder and classifier of one training (or, for an evaluation,
a student's encoder and head). The recipe calls the same functions when it loads them.

A classes refusal names the classes found and how to give them (`--set 'classes=["a","b","c"]'`);
a pool is never read as a class of one. torch is imported only for a run that names a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.data.noise_index import audio_files, class_map, label_of
from core.errors import RunError
from core.registry import data_source
from core.registry.experiment import Experiment
from core.registry.keys import KEYS
from core.registry.model import Registry, named_files
from core.store import Store


def check(registry: Registry, exp: Experiment, store: Store) -> None:
    """RunError, naming the key, for labels the folders lack or a teacher file the recipe
    would refuse."""
    check_labels(registry, exp)
    if exp.recipe in ("noise.hybrid_kd", "noise.soft_labels", "noise.student"):
        _teacher_agrees(exp, store)
    named, _sources = named_files(registry, exp)
    for key, path in named:
        if key == "teacher":
            try:
                _noise_teacher(exp.recipe or "", path)
            except RunError as exc:
                raise RunError(f"key 'teacher': {exc}") from None


# recipe -> the data keys it reads labels from (a student trains on a pool's soft labels, and
# is validated on labelled clips: val_data, or the held-out part of data when there is none)
LABELLED: dict[str, tuple[str, ...]] = {
    "noise.teacher": ("data", "val_data", "test_data"),
    "noise.hybrid_kd": ("data", "val_data", "test_data"),
    "noise.ensemble": ("data",),
    "noise.evaluate": ("data",),
    "noise.student": ("val_data", "test_data"),
}
SHOWN = 8  # labels named in a refusal


def _teacher_agrees(exp: Experiment, store: Store) -> None:
    """The classes a run sets against its teacher's (the finished run the reference names, its
    classes as it ran). Soft labels and a ViLD-image student keep the teacher's class order
    exactly (their probabilities and text embeddings line up by it). A hybrid-KD student's
    labels must each be one of the teacher's classes, unless the teacher has a text model (then
    their prompts are scored, zero-shot)."""
    from core.runs.lookup import find_run

    ref = exp.references.get("teacher")
    classes = exp.params.get("classes")
    if ref is None or ref.kind == "file" or not classes:
        return
    try:
        teacher = find_run(store, ref.kind, ref.target, "teacher")
    except RunError:
        return  # said by the reference check, with the same words as before
    params = teacher.get("params") or {}
    known = class_map(params.get("classes") or [])[0]
    names, mapping = class_map(classes)
    if exp.recipe != "noise.hybrid_kd":
        if names != known:
            raise RunError(f"key 'classes': {', '.join(names)} is not teacher run "
                           f"{teacher['id']}'s class order ({', '.join(known)}): its soft "
                           f"labels and text embeddings line up by it; leave classes unset or "
                           f"give the teacher's")
        return
    labels = sorted(mapping)
    missing = [label for label in labels if label not in known]
    text_model = params.get("text_model", KEYS["text_model"].default)
    if not missing or names == known or text_model != "fixed":
        return
    raise RunError(f"key 'teacher': teacher run {teacher['id']} knows only {', '.join(known)} "
                   f"(fixed class embeddings, no text model), so it cannot score "
                   f"{', '.join(missing)}; give the student classes made of the teacher's, or "
                   f"train the teacher with a text model")


def check_labels(registry: Registry, exp: Experiment) -> None:
    """RunError for a labelled key on a pool, or classes a folder does not hold."""
    keys = LABELLED.get(exp.recipe or "")
    if keys is None:
        return
    params = exp.params
    if exp.recipe == "noise.student" and "val_data" not in params:
        keys = ("data", *keys)
    for key in keys:
        if not params.get(key):
            continue
        src = data_source(registry, str(params[key]))
        settings = src.settings
        if settings.get("kind") == "separation" or not src.root.is_dir():
            continue  # said elsewhere: the kind by the registry, a missing folder by inputs
        if settings.get("unlabeled"):
            need = ("the student is validated on labelled clips; set val_data=FOLDER"
                    if exp.recipe == "noise.student" and key == "data"
                    else f"{exp.recipe} reads labels from it")
            raise RunError(f"key '{key}': data source '{src.name}' ({src.root}) is an "
                           f"unlabelled pool (no class sub-folders or <class>_<n> names): "
                           f"{need}")
        classes = params.get("classes")
        if classes:
            _classes_held(src.name, src.root, settings, classes)


def _classes_held(name: str, root: Any, settings: dict[str, Any], classes: Any) -> None:
    label_from = str(settings.get("label_from", "folder"))
    found = sorted({label for f in audio_files(root)
                    if (label := label_of(f.relative_to(root), label_from))})
    names, mapping = class_map(classes)
    held = {mapping[label] for label in found if label in mapping}
    missing = [n for i, n in enumerate(names) if i not in held]
    if not missing:
        return
    shown = ", ".join(found[:SHOWN]) + (f", ... ({len(found)} in all)" if len(found) > SHOWN
                                         else "")
    example = "[" + ",".join(f'"{c}"' for c in found[:3]) + "]" if found else '["a","b"]'
    raise RunError(
        f"key 'classes': data source '{name}' ({root}) holds no clips of class "
        f"{', '.join(map(repr, missing))}; the labels it holds are {shown or 'none'} (by "
        f"{'sub-folder' if label_from == 'folder' else 'file-name prefix'}); name yours with "
        f"--set 'classes={example}' (a,b,c would be a sweep)")


def _noise_teacher(recipe: str, path: Path) -> None:
    """A teacher's encoder and classifier (the other file of the pair beside the one named);
    an evaluation scores a student's encoder and head too."""
    from core.noise.parts import student_pair, teacher_pair  # torch: only for a named file
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
