"""Folders of procedurally made demo data: written once per settings, never over real files."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.errors import RunError

MARKER = ".nkd_synth"  # inside a folder nkd wrote: the settings it was written with


def claim(root: Path, source: str, stamp: str, log=print) -> bool:
    """True when `root` is to be (re)written for `stamp`: it is empty, missing, or an older demo
    set of ours (then emptied). False when it already holds this very set. A folder with files
    that nkd did not write is refused: real recordings are never overwritten."""
    marker = root / MARKER
    if marker.is_file() and marker.read_text() == stamp:
        log(f"{source}: {root} is up to date")
        return False
    if root.exists() and any(root.iterdir()) and not marker.is_file():
        raise RunError(
            f"data source '{source}': {root} already holds files that nkd did not write; "
            f"not overwriting them (move them or point the source elsewhere)"
        )
    if root.exists():
        shutil.rmtree(root)
    return True


def seal(root: Path, stamp: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(stamp)
