"""Errors that reach the user as one clear line and an exit status.

Exit statuses, the same for every command: 0 done (also a no-op such as pausing a paused run),
1 the run failed (or ended lost or killed), 2 bad input or a refused request (unknown run, bad
registry, a run that is not running, a broken database), 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130


class NkdError(Exception):
    """An error for the user: its message is one line; `exit_code` is the process status."""

    exit_code = EXIT_REFUSED


class RegistryError(NkdError):
    """Bad experiments.toml or bad --set override: nothing is started or written."""


class RunError(NkdError):
    """A run that cannot be found, started or controlled."""


class StoreError(NkdError):
    """The run database cannot be opened or written; the message says the way out."""


class DiskFullError(RunError):
    """A file could not be written because its disk is full; the message names the file."""
