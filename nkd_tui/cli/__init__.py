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

from nkd_tui.cli.entry import build_parser, console, main

__all__ = ["build_parser", "console", "main"]
