"""Files that readers never see half-written: atomic writes of bytes, text and JSON; CSV text."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from core.errors import DiskFullError


def atomic_write(path: Path, write: Callable[[BinaryIO], None], suffix: str = "",
                 sync: bool = True) -> Path:
    """Write a file so that readers see the old or the new content, never half of it:
    `write` fills a temporary file beside it, which then replaces `path` in one rename.
    `sync=False` skips the fsync (files made again by running again: kept excerpts)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # where a file is written: the worker starts sooner without it

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        full = _disk_full(exc, path.parent)  # asked before the partial file frees its space
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise DiskFullError(f"{path}: disk full (no space left on the device of "
                                f"{path.parent}); the file was not written, its previous "
                                f"version is kept") from None
        raise
    return path


FULL_BELOW = 1 << 20  # free bytes under which a failed write is taken as a full disk


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write failed for a full disk: ENOSPC, or a writer that does not say
    (torch.save's `unexpected pos`) on a disk with almost nothing free."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(exc, Exception) or isinstance(exc, OSError):
        return False
    import shutil  # after a failed write only: every process that writes a file imports this

    try:
        return shutil.disk_usage(folder).free < FULL_BELOW
    except OSError:
        return False


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def csv_text(rows: list[list[Any]]) -> str:
    """Rows as CSV text with plain newlines."""
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def atomic_write_json(path: Path, data: Any, sort_keys: bool = True) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def tree_bytes(root: Path) -> int:
    """The bytes of the files under `root` (links not followed, unreadable entries skipped)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if not stat.S_ISLNK(st.st_mode):
                total += st.st_size
    return total
