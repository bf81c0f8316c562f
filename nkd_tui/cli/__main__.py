"""`python -m nkd_tui.cli ...`, the same as `nkd ...`."""

import sys

from nkd_tui.cli.entry import main

sys.exit(main())
