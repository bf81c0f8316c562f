"""Errors that reach the user as one clear line and an exit status."""

from __future__ import annotations


class NkdError(Exception):
    """An error for the user: its message is one line; `exit_code` is the process status."""

    exit_code = 1


class RegistryError(NkdError):
    """Bad experiments.toml or bad --set override: nothing is started or written."""

    exit_code = 2


class RunError(NkdError):
    """A run that cannot be found, started or controlled."""

    exit_code = 1
