"""The `nkd` command itself: for what looks like `nkd run EXPERIMENT` (one run, now), the
run's worker is started before anything else is imported (nkd_tui.cli.early), so that its
start-up overlaps the launcher's; then `main`, and out at once."""

from __future__ import annotations

import os
import sys
import threading

from nkd_tui.cli.early import guess_run, prestart


def console() -> None:
    """A command's work is committed by the time main returns; tearing down the interpreter's
    modules would add tens of milliseconds to every command, so the process ends at once
    (the normal way out is kept while another non-daemon thread still runs)."""
    argv = sys.argv[1:]
    guessed = guess_run(argv)
    early = prestart(*guessed) if guessed else None
    try:
        from nkd_tui.cli.entry import main

        code = main(argv, prestarted=early)
    finally:
        if early is not None:
            early.cancel()  # nothing, once the launch released it
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)
