"""The labels a noise recipe needs, checked at launch against what its folders hold: a folder
read by name only (sub-folder names or `<class>_<n>` prefixes), no audio decoded.

A recipe that trains or scores against labels is refused, in one line that names the classes
found and how to give them (`--set 'classes=["a","b","c"]'`), when a class it asks for has no
clip; one that needs labelled clips is refused when its folder is an unlabelled pool (which is
never read as a class of one).
"""

from __future__ import annotations

from typing import Any

from core.errors import RunError
from core.registry import Experiment, Registry, data_source

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


def check_labels(registry: Registry, exp: Experiment, where: str) -> None:
    """RunError (exit 2, nothing written) for a labelled key on a pool, or classes a folder
    does not hold."""
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
            raise RunError(f"{where}: key '{key}': data source '{src.name}' ({src.root}) is an "
                           f"unlabelled pool (no class sub-folders or <class>_<n> names): "
                           f"{need}; nothing was started")
        classes = params.get("classes")
        if classes:
            _classes_held(where, key, src.name, src.root, settings, classes)


def _classes_held(where: str, key: str, name: str, root: Any, settings: dict[str, Any],
                  classes: Any) -> None:
    from core.data.noise_index import audio_files, class_map, label_of

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
        f"{where}: key 'classes': data source '{name}' ({root}) holds no clips of class "
        f"{', '.join(map(repr, missing))}; the labels it holds are {shown or 'none'} (by "
        f"{'sub-folder' if label_from == 'folder' else 'file-name prefix'}); name yours with "
        f"--set 'classes={example}' (a,b,c would be a sweep); nothing was started")
