"""A folder path where a data source is expected: `nkd run mark1 --set data=/path/to/clips`.

The kind is detected from what the folder holds, and said in one line:

* track folders: sub-folders that each hold a `mixture.*` file (MUSDB18 layout) -> separation;
* class sub-folders: sub-folders of audio files -> noise clips labelled by folder name;
* filename prefixes: audio files named `<class>_<n>.wav` directly in it, of two classes or more
  -> noise clips labelled by the prefix;
* any other audio files directly in it (`clip_000.wav` ...: one prefix is no class) -> an
  unlabelled pool, for soft labels and a student's training, never read as one class.

Nothing is written into the folder: its index and prepared audio live in the workspace.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core.util.audio_names import EXTENSIONS

PREFIXED = re.compile(r"^(?P<label>[A-Za-z][A-Za-z0-9-]*(?:_[A-Za-z][A-Za-z0-9-]*)*)_\d+$")


def looks_like_folder(value: str) -> bool:
    return "/" in value or value.startswith((".", "~"))


def resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def detect(root: Path) -> tuple[dict[str, Any], str] | None:
    """(data-source settings, what was detected in words) for a folder, or None when it holds
    nothing nkd can use."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    tracks = [d for d in subdirs
              if any(f.stem == "mixture" and f.suffix.lower() in EXTENSIONS for f in d.iterdir())]
    if tracks and len(tracks) == len(subdirs):
        return ({"kind": "separation"},
                f"{len(tracks)} track folders with mixture and stems (separation)")
    classes = [d for d in subdirs if any(f.suffix.lower() in EXTENSIONS for f in d.rglob("*"))]
    if classes:
        return ({"kind": "noise", "label_from": "folder"},
                f"{len(classes)} class sub-folders ({', '.join(d.name for d in classes[:6])}"
                f"{', ...' if len(classes) > 6 else ''}): noise clips labelled by folder")
    files = [f for f in root.iterdir() if f.is_file() and f.suffix.lower() in EXTENSIONS]
    labels = sorted({m["label"] for f in files if (m := PREFIXED.match(f.stem))})
    if len(labels) > 1:
        return ({"kind": "noise", "label_from": "prefix"},
                f"{len(files)} clips named <class>_<n> ({', '.join(labels[:6])}"
                f"{', ...' if len(labels) > 6 else ''}): noise clips labelled by prefix")
    if files:  # one name for all (clip_000.wav ...) or none: a pool, never a class of one
        return ({"kind": "noise", "unlabeled": True},
                f"{len(files)} clips without class names (no class sub-folders, "
                f"{'one prefix, ' + repr(labels[0]) if labels else 'no <class>_<n> names'}): "
                f"an unlabelled pool")
    return None


def why_not(root: Path) -> str:
    if not root.exists():
        return "does not exist"
    if not root.is_dir():
        return "is not a folder"
    return ("holds no track folders (<track>/mixture.wav), class sub-folders of audio, or "
            "clips named <class>_<n>.wav")
