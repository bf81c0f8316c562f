"""Reporting from the researcher's own training script: `@nkd {json}` lines on stdout.

    from core.report import report
    report(epoch=3, train_loss=0.41, val_loss=0.52)
    report(name="accuracy", value=0.93, split="val")

Any script can print the same lines itself; outside nkd they are harmless log lines. What a line
may hold is checked by the worker (`core/capture/records.py`).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

PREFIX = "@nkd "


def report(**values: Any) -> None:
    """Print one `@nkd` line (flushed at once, so the run sees it while the script runs)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in values.items()}
    sys.stdout.write(PREFIX + json.dumps(clean) + "\n")
    sys.stdout.flush()
