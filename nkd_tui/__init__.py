"""nkd's terminal interface: the `nkd` command line and the Textual app. Never imports torch."""
