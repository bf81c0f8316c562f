"""A data folder's fingerprint: its files by relative path, size and modification time, folded
into one hash, fast on a folder of 100,000 files.

Each directory gets a digest of the files directly in it (name, size, mtime in ns, sorted); the
folder's fingerprint is a sha256 over (relative directory, its digest) in sorted order, so the
same tree gives the same print whether it was read whole or partly from the cache.

The cache (one JSON file per folder, in the workspace's cache) keeps each directory's digest
beside the directory's own mtime and ctime. A directory whose mtime and ctime are what the cache
saw is not read again: adding, removing or renaming a file changes them, so each of those is
seen. A file rewritten in place under the same name leaves its directory's times alone, so the
cached print misses it: `fingerprint(..., cache=None)` (what `nkd rerun` uses) reads every file.
A directory changed in the last two seconds is never cached (its times may not move again on a
filesystem with coarse timestamps).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from core.util.checksum import sha256
from core.util.files import atomic_write_json

RACY_S = 2.0  # a directory changed this recently is read but not cached
CACHE_VERSION = 1


def _dir_entry(path: str) -> tuple[list[str], dict[str, Any]]:
    """One directory read: its subdirectories, and the digest, count, bytes and unreadable
    count of the files directly in it (hidden names skipped)."""
    files: list[tuple[str, int, int]] = []
    subdirs: list[str] = []
    unreadable = 0
    try:
        with os.scandir(path) as it:
            for entry in it:
                name = entry.name
                if name.startswith("."):
                    continue
                try:
                    if entry.is_dir():
                        subdirs.append(name)
                        continue
                    st = entry.stat()
                except OSError:  # a dangling link, a file gone since the listing
                    unreadable += 1
                    continue
                files.append((name, st.st_size, st.st_mtime_ns))
    except OSError:
        return [], {"digest": "", "files": 0, "bytes": 0, "unreadable": 1}
    files.sort()
    digest = sha256(
        "".join(f"{n}\0{s}\0{m}\n" for n, s, m in files).encode("utf-8", "surrogateescape"))
    return sorted(subdirs), {"digest": digest.hexdigest()[:32], "files": len(files),
                             "bytes": sum(f[1] for f in files), "unreadable": unreadable}


def fingerprint(root: Path, cache: Path | None = None) -> dict[str, Any]:
    """{"root", "files", "bytes", "fingerprint"} (and "unreadable" when some entries could not
    be read) of a folder; `cache`: a JSON file the directory digests are kept in between calls
    (None: every file is read)."""
    old: dict[str, Any] = {}
    if cache is not None:
        try:
            doc = json.loads(cache.read_text(encoding="utf-8"))
            if doc.get("version") == CACHE_VERSION and doc.get("root") == str(root):
                old = doc.get("dirs") or {}
        except (OSError, ValueError, AttributeError):
            old = {}
    now = time.time()
    new: dict[str, Any] = {}
    seen: list[tuple[str, dict[str, Any]]] = []
    stack = [("", str(root))]
    visited: set[tuple[int, int]] = set()  # a linked directory is read once: no cycles
    while stack:
        rel, path = stack.pop()
        try:
            st = os.stat(path)
            times = [st.st_mtime_ns, st.st_ctime_ns]
            if (st.st_dev, st.st_ino) in visited:
                continue
            visited.add((st.st_dev, st.st_ino))
        except OSError:
            times = None
        cached = old.get(rel)
        if times is not None and cached and cached.get("times") == times:
            subdirs, entry = cached["subdirs"], cached["entry"]
        else:
            subdirs, entry = _dir_entry(path)
        if times is not None and now - max(times) / 1e9 > RACY_S and not entry["unreadable"]:
            new[rel] = {"times": times, "subdirs": subdirs, "entry": entry}
        seen.append((rel, entry))
        for name in subdirs:
            stack.append((f"{rel}/{name}" if rel else name, os.path.join(path, name)))
    seen.sort(key=lambda item: item[0])
    digest = sha256()
    for rel, entry in seen:
        if entry["files"]:
            digest.update(f"{rel}\0{entry['digest']}\n".encode("utf-8", "surrogateescape"))
    unreadable = sum(entry["unreadable"] for _, entry in seen)
    out = {"root": str(root), "files": sum(e["files"] for _, e in seen),
           "bytes": sum(e["bytes"] for _, e in seen), "fingerprint": digest.hexdigest()[:16],
           **({"unreadable": unreadable} if unreadable else {})}
    if cache is not None and new != old:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cache, {"version": CACHE_VERSION, "root": str(root), "dirs": new})
        except OSError:
            pass  # a cache that cannot be written only costs the next launch a full read
    return out


def cache_file(cache_dir: Path, root: Path) -> Path:
    """Where the digests of the folder `root` are kept in a workspace's cache."""
    key = sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return cache_dir / "fingerprints" / f"{key}.json"
