"""The worker's signals as bytes in a pipe, read by its main loop when it looks.

The interpreter's C-level handler writes each signal's number to the pipe the moment the signal
arrives, on whichever thread the kernel delivered it (`signal.set_wakeup_fd`). The Python-level
handler is not relied on: on Python 3.11 the flag that makes the main thread run it is shared by
all threads, and another thread taking the GIL can clear it, so a signal that lands while the
worker's other threads are busy can wait unhandled for as long as nothing else contends for the
GIL; a paused run has nothing else. The pipe is read at the worker's own pace: every tick of a
command run's loop, every batch boundary of a recipe, every 50 ms while paused.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Iterable


def _noted(_signum: int, _frame: object) -> None:
    """The Python-level handler: nothing. Installing it is what makes the interpreter's
    C-level handler catch the signal and write its number to the pipe."""


class SignalPipe:
    """Catches `signals` (their default action, ending the process, no longer applies) and
    keeps each arrival as one byte until `take` reads it. Made and closed in the main thread."""

    def __init__(self, signals: Iterable[int]) -> None:
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)
        for sig in signals:
            signal.signal(sig, _noted)
        self._previous = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def take(self, timeout: float = 0.0) -> list[int]:
        """The signals that arrived since the last look, in order; waits up to `timeout`
        seconds for the first when there is none yet."""
        if timeout > 0:
            try:
                select.select([self._read], [], [], timeout)
            except InterruptedError:
                pass
        try:
            return list(os.read(self._read, 4096))
        except (BlockingIOError, InterruptedError):
            return []

    def close(self) -> None:
        """The previous wake-up fd back. The signals stay caught: one that arrives while the
        worker records how its run ended is ignored, not the end of the worker."""
        signal.set_wakeup_fd(self._previous)
        os.close(self._read)
        os.close(self._write)
