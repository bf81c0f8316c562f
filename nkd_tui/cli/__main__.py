"""`python -m nkd_tui.cli ...`, the same as `nkd ...`."""

from nkd_tui.cli.console import console

console()
