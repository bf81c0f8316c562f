"""The workspace's placement lock: held while GPUs are chosen and the choice recorded, so that
a direct `nkd run` and the scheduler never hand out the same free GPU twice. Its own module:
a run started now takes it without loading the scheduler."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from core.registry.workspace import Workspace

PLACE_LOCK_NAME = "nkd.place.lock"


@contextmanager
def placement_lock(ws: Workspace) -> Iterator[None]:
    fd = os.open(ws.root / PLACE_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
