"""Checkpoints a script writes where it always has: files matching the registry's
`checkpoints` globs (relative to the registry's folder, `{key}` from the run's settings) that
appear or change during the run are recorded with their sha256 and epoch, and hard-linked (or
copied, or left) into the run's checkpoint folder; the script's own files are never moved."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from core.registry import PLACEHOLDER
from core.util.checksum import sha256_file

MODES = ("link", "copy", "none")


def patterns_of(spec: Any) -> list[tuple[str | None, str]]:
    """(role or None, glob) from a list of globs or a table {best = ..., last = ...}."""
    if isinstance(spec, dict):
        return [(role, pattern) for role, pattern in spec.items()]
    return [(None, pattern) for pattern in spec or []]


def fill_placeholders(pattern: str, params: dict[str, Any], escape: bool = False) -> str:
    """`{key}` replaced by the run's setting (glob-escaped for a pattern)."""
    own = params.get("params", {})

    def value(match: Any) -> str:
        key = match.group(1)
        found = params.get(key, own.get(key))
        if found is None:
            return match.group(0)
        return glob.escape(str(found)) if escape else str(found)

    return PLACEHOLDER.sub(value, pattern)


class CheckpointWatch:
    """Polled by the worker: which matching files are new or changed and done being written."""

    def __init__(self, spec: Any, params: dict[str, Any], root: Path, dest: Path, mode: str,
                 since: float) -> None:
        self.patterns = [(role, fill_placeholders(p, params, escape=True))
                         for role, p in patterns_of(spec)]
        self.root = root
        self.dest = dest
        self.mode = mode
        self.since = since
        self.seen: dict[str, tuple[float, int]] = {}  # recorded: path -> (mtime, size)
        self.pending: dict[str, tuple[float, int]] = {}  # changed once, waiting to settle
        # what matches already when the run starts is another run's, however recent (`since`
        # keeps a second of slack for coarse clocks, and a run of the same experiment that
        # ended just before would otherwise lend this one its checkpoint); a file only counts
        # once it is new or changed
        self.before = {str(path): key for path, key, _ in self._matches()}

    def _matches(self) -> list[tuple[Path, tuple[float, int], str]]:
        """Every regular file the patterns match now: (path, (mtime, size), role given)."""
        found = []
        for role, pattern in self.patterns:
            full = pattern if os.path.isabs(pattern) else str(self.root / pattern)
            for name in sorted(glob.glob(full)):
                path = Path(name)
                try:
                    st = path.stat()
                except OSError:
                    continue
                if path.is_file() and not path.is_symlink():
                    found.append((path, (st.st_mtime, st.st_size), role))
        return found

    def poll(self, final: bool = False) -> list[tuple[Path, str]]:
        """Files to record now, with their role: changed since the run started and unchanged
        since the previous poll (a file still being written waits), or any change when final."""
        out = []
        for path, key, role in self._matches():
            name = str(path)
            if key[0] < self.since or self.seen.get(name) == key or self.before.get(name) == key:
                continue
            if final or self.pending.get(name) == key:
                self.pending.pop(name, None)
                self.seen[name] = key
                out.append((path, role or ("best" if "best" in path.name.lower() else "last")))
            else:
                self.pending[name] = key
        return out

    def record(self, path: Path, role: str, epoch: int | None) -> dict[str, Any]:
        """The checkpoint event for one file; linked or copied into the run's folder first."""
        kept = path
        if self.mode != "none":
            kept = self._keep(path)
        try:
            digest: str | None = sha256_file(kept)
        except OSError:
            digest = None
        return {"type": "checkpoint", "path": str(kept), "role": role, "epoch": epoch,
                "sha256": digest, "source": str(path)}

    def _keep(self, path: Path) -> Path:
        import shutil  # on a checkpoint's first copy: a run's worker starts without them
        import tempfile

        self.dest.mkdir(parents=True, exist_ok=True)
        target = self.dest / path.name
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.dest)
        os.close(fd)
        os.unlink(tmp)
        try:
            if self.mode == "link":
                try:
                    os.link(path, tmp)
                except OSError:  # another filesystem: a copy instead
                    shutil.copy2(path, tmp)
            else:
                shutil.copy2(path, tmp)
            os.replace(tmp, target)  # a link at `target` is replaced, never written through
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            return path
        return target
