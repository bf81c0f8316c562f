"""Reporting from the researcher's own training script: `@nkd {json}` lines on stdout.

    from core.report import report
    report(epoch=3, train_loss=0.41, val_loss=0.52)
    report(name="accuracy", value=0.93, split="val")

Any script can print the same lines itself; outside nkd they are harmless log lines.
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


def parse_line(line: str) -> dict[str, Any] | None:
    """The event carried by one output line, or None for an ordinary log line.

    Raises ValueError for a line that starts with `@nkd` but carries no JSON object.
    """
    if not line.startswith(PREFIX.rstrip()):
        return None
    payload = json.loads(line[len(PREFIX.rstrip()):].strip())
    if not isinstance(payload, dict):
        raise ValueError("an @nkd line must carry a JSON object")
    # a checkpoint or metric line may name its epoch too, so those are recognised first
    if "checkpoint" in payload:
        return {"type": "checkpoint", "path": payload.pop("checkpoint"), **payload}
    if "name" in payload and "value" in payload:
        return {"type": "metric", **payload}
    if "epoch" in payload:
        return {"type": "epoch", **payload}
    if "epochs_total" in payload:
        return {"type": "meta", **payload}
    raise ValueError("an @nkd line needs 'epoch', 'checkpoint', 'epochs_total' or name/value")
