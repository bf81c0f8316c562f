"""Prepared audio: every file decoded and resampled once, kept as float32 `.npy` in the workspace.

A prepared file is stored per (file content, sample rate, channels) under
`<cache>/audio/<aa>/<sha256>_<rate>_<mono|multi>_v1.npy` (`<cache>`: the workspace's `cache/`),
frames first (`[n, channels]`) so that a training segment is one contiguous read. Every run
reuses it; a file whose content changes gets a new entry. Content is identified by its SHA-256,
which is recomputed only when the file's stat signature (size, mtime, ctime, inode) differs from
the one recorded beside the hash in `<cache>/audio/files.db`; ctime cannot be set back by a copy
that preserves mtime, so an edited file is always rehashed. Segments are read with `pread`, not
through a memory map, so a run's resident memory does not grow with the data it has touched
(page cache is not the worker's memory).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data import audio
from core.util import cache_use
from core.util.files import atomic_write

FORMAT = 1  # bump when the stored layout changes: old entries are then simply not found
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Prepared:
    """One prepared file: where its samples are and how they are laid out."""

    path: Path  # the .npy
    frames: int
    channels: int
    offset: int  # byte offset of the samples in the .npy

    def array(self) -> np.ndarray:
        """All samples [channels, frames] as a read-only memory map (a transposed view)."""
        return np.load(self.path, mmap_mode="r").T

    def read(self) -> np.ndarray:
        """All samples [channels, frames], read into memory."""
        return np.ascontiguousarray(self.segment(0, self.frames))

    def segment(self, start: int, length: int) -> np.ndarray:
        """Samples [channels, length] from frame `start`, one read straight into the array
        (through a descriptor kept open for the file); zeros past the end."""
        out = np.empty((length, self.channels), dtype=np.float32)
        have = max(0, min(self.frames, start + length) - start)
        if have:
            want = have * self.channels * 4
            got = os.preadv(_descriptor(self.path), [memoryview(out).cast("B")[:want]],
                            self.offset + start * self.channels * 4)
            if got < want:  # pragma: no cover - a file cut short under us
                raise OSError(f"{self.path}: {got} of {want} bytes read")
        out[have:] = 0.0
        return out.T


# prepared files kept open for segment reads. An entry's name is its content (the source's
# sha256, rate, layout), so one replaced under us (another run prepared it at the same time)
# holds the same samples, and the descriptor of either reads the same
_OPEN: dict[Path, int] = {}
_OPEN_MAX = 256  # beyond this many, the oldest is closed
_OPEN_PID = [os.getpid()]  # descriptors are this process's own: a forked loader opens its own


def _descriptor(path: Path) -> int:
    if _OPEN_PID[0] != os.getpid():
        _OPEN.clear()  # inherited from the parent: leave them to it
        _OPEN_PID[0] = os.getpid()
    fd = _OPEN.get(path)
    if fd is None:
        if len(_OPEN) >= _OPEN_MAX:
            os.close(_OPEN.pop(next(iter(_OPEN))))
        fd = _OPEN[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return fd


class AudioCache:
    """The workspace's prepared-audio cache."""

    def __init__(self, cache_dir: Path) -> None:
        self.dir = cache_dir / "audio"
        self._db: sqlite3.Connection | None = None

    # ── content hashes, remembered by stat signature ─────────────────────────────────────────

    def _index(self) -> sqlite3.Connection:
        if self._db is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.dir / "files.db", timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, signature TEXT, "
                "sha256 TEXT)"
            )
        return self._db

    def content_hash(self, path: Path) -> str:
        st = path.stat()
        signature = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
        db = self._index()
        row = db.execute("SELECT signature, sha256 FROM files WHERE path = ?",
                         (str(path),)).fetchone()
        if row and row[0] == signature:
            return row[1]
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(HASH_CHUNK):
                digest.update(chunk)
        sha = digest.hexdigest()
        db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?)", (str(path), signature, sha))
        return sha

    # ── prepared files ───────────────────────────────────────────────────────────────────────

    def entry(self, sha: str, sample_rate: int, mono: bool) -> Path:
        kind = "mono" if mono else "multi"
        return self.dir / sha[:2] / f"{sha}_{sample_rate}_{kind}_v{FORMAT}.npy"

    def find(self, path: Path, sample_rate: int, mono: bool = False) -> Prepared | None:
        """The file's prepared entry if it is there, else None (nothing decoded)."""
        return _open(self.entry(self.content_hash(path), sample_rate, mono))

    def prepared(self, path: Path, sample_rate: int, mono: bool = False) -> Prepared:
        """The file decoded at `sample_rate` (mono or its own channels), prepared on first use."""
        target = self.entry(self.content_hash(path), sample_rate, mono)
        found = _open(target)
        if found is not None:
            return found
        samples = audio.read(path, sample_rate, mono=mono)
        frames_first = np.ascontiguousarray(np.atleast_2d(samples).T, dtype=np.float32)
        _write_atomic(target, frames_first)
        found = _open(target)
        if found is None:  # pragma: no cover - only a disk that loses what was just written
            raise OSError(f"{target}: prepared audio could not be read back")
        return found

    def prepare_all(
        self,
        files: Iterable[Path],
        sample_rate: int,
        mono: bool = False,
        label: str = "preparing audio",
        log: Callable[[str], None] | None = None,
    ) -> list[Prepared]:
        """Every file prepared, with a progress line (a bar on a terminal, a line every few
        seconds in a log)."""
        files = list(files)
        progress = Progress(label, len(files), log)
        out = []
        for path in files:
            out.append(self.prepared(path, sample_rate, mono))
            progress.advance(path.stat().st_size)
        progress.done()
        return out


def _open(target: Path) -> Prepared | None:
    """A prepared entry if it is there and whole, else None (a damaged one is removed)."""
    if not target.is_file() or target.is_symlink():
        return None
    try:
        with open(target, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = header(fh)
            offset = fh.tell()
        size = target.stat().st_size
        if (dtype != np.float32 or fortran or len(shape) != 2
                or offset + shape[0] * shape[1] * 4 != size):
            raise ValueError("unexpected layout")
    except (OSError, ValueError):
        target.unlink(missing_ok=True)
        return None
    cache_use.note(target, size)  # the run's share of the cache counts it
    return Prepared(target, int(shape[0]), int(shape[1]), offset)


def _write_atomic(target: Path, data: np.ndarray) -> None:
    atomic_write(target, lambda fh: np.save(fh, data, allow_pickle=False), suffix=".npy")


class Progress:
    """`label: 12/150 files, 1.2 GB` as a bar on a terminal, or a line every 5 s in a log."""

    def __init__(self, label: str, total: int, log: Callable[[str], None] | None = None) -> None:
        self.label, self.total, self.count, self.bytes = label, total, 0, 0
        self.tty = log is None and sys.stdout.isatty()
        self.log = log or (lambda line: print(line, flush=True))
        self.started = self.last = time.monotonic()

    def _line(self) -> str:
        return f"{self.label}: {self.count}/{self.total} files, {self.bytes / 1e9:.2f} GB read"

    def advance(self, nbytes: int) -> None:
        self.count += 1
        self.bytes += nbytes
        now = time.monotonic()
        if self.tty:
            width = 24
            filled = int(width * self.count / max(1, self.total))
            sys.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self._line()}")
            sys.stdout.flush()
        elif now - self.last >= 5.0:
            self.last = now
            self.log(self._line())

    def done(self) -> None:
        if self.tty:
            sys.stdout.write("\n")
        if self.total and (self.tty or time.monotonic() - self.started >= 1.0):
            self.log(f"{self._line()} in {time.monotonic() - self.started:.1f} s")
