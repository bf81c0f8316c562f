"""Waking the workspace's scheduler at once instead of on its next poll: a named pipe in the
workspace (`nkd.queue.wake`) that the scheduler reads while it waits, and that a worker writes a
byte to as soon as its run's end is recorded, so the next queued run starts without waiting out
the poll. Nothing is written anywhere but into that pipe: not through a link, not into a file
of that name, not when no scheduler is reading it."""

from __future__ import annotations

import os
import select
import stat
from pathlib import Path

WAKE_NAME = "nkd.queue.wake"


class Waker:
    """The scheduler's end of the pipe: made if missing, held open for reading and writing (so
    it never reads as closed while no worker has it open)."""

    def __init__(self, root: Path) -> None:
        self.path = root / WAKE_NAME
        self.fd = -1
        try:
            if not self.path.exists() and not self.path.is_symlink():
                os.mkfifo(self.path, 0o600)
            if stat.S_ISFIFO(os.lstat(self.path).st_mode):
                self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError:
            self.fd = -1  # polling alone, as before

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, less when woken; True when woken."""
        if self.fd < 0:
            select.select([], [], [], seconds)
            return False
        ready, _, _ = select.select([self.fd], [], [], seconds)
        if not ready:
            return False
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def wake(root: Path) -> bool:
    """Tell the workspace's scheduler to look at the queue now; False when none is listening
    (no pipe, no reader, or something else in its place)."""
    path = root / WAKE_NAME
    try:
        if not stat.S_ISFIFO(os.lstat(path).st_mode):
            return False
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:  # none there, no reader (ENXIO), or a link (ELOOP)
        return False
    try:
        os.write(fd, b"!")
        return True
    except OSError:  # EAGAIN: the pipe is full, so it is woken already
        return False
    finally:
        os.close(fd)


__all__ = ["WAKE_NAME", "Waker", "wake"]
