"""The `nkd` command line, one module per command group; each gets what it shares with the others
from `nkd_tui.cli.context` (and `follow` for a run shown in the foreground), never from a sibling.

entry        the parser and `main`: exit codes, one line per error;  `nkd tui`
experiments  nkd check, list, keys           queue     nkd run, sync, queue
runs         nkd ps, show, logs              control   pause/resume/suspend/stop, restart, kill,
                                                       reindex
notes        nkd tag, note, archive          capture   nkd capture, import
lineage      nkd lineage, blend, eval        data      nkd data synth/index/prepare
compare      nkd compare
"""

from typing import Any

__all__ = ["build_parser", "main"]


def __getattr__(name: str) -> Any:
    # on first use: `nkd` itself (nkd_tui.cli.console) starts before the commands are imported
    if name in __all__:
        from nkd_tui.cli import entry

        return getattr(entry, name)
    raise AttributeError(f"module 'nkd_tui.cli' has no attribute {name!r}")
