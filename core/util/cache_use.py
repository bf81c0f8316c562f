"""Which entries of the workspace's derived caches (prepared audio, features) this process
read or wrote, so a run's end can record its share of them: the entries' bytes and a key that
names the set, the same for every run that used the same entries (the runs of one data set at
one rate). `nkd du`, `nkd show` and `nkd ps --json` divide the bytes among the runs with that
key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.util.checksum import sha256

_USED: dict[str, int] = {}  # entry path -> its bytes


def note(path: Path, size: int) -> None:
    """An entry of a cache this process read or wrote."""
    _USED[str(path)] = size


def summary() -> dict[str, Any]:
    """`cache_bytes` and `cache_key` of the entries used so far ({} for none), for the run's
    final status event."""
    if not _USED:
        return {}
    names = "\n".join(sorted(Path(p).name for p in _USED))
    return {"cache_bytes": sum(_USED.values()),
            "cache_key": sha256(names.encode()).hexdigest()[:16]}


__all__ = ["note", "summary"]
