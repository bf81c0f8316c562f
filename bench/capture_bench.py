"""`@nkd` capture: how many lines a second an unpaced script's records reach the store.

A command experiment prints N `@nkd {"epoch": e, "train_loss": ...}` lines as fast as it can;
the run goes through `nkd run` (a real worker following the script). Prints the lines per second
between the first and the last recorded epoch (from the run's own events), and the whole run's
time from `nkd run` to its end, as the median of a few runs.

    .venv/bin/python bench/capture_bench.py [--lines 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.store import FINAL, Store  # noqa: E402
from core.store.events import EventLog  # noqa: E402

SCRIPT = """
import json, sys
for e in range(1, int(sys.argv[1]) + 1):
    print("@nkd " + json.dumps({"epoch": e, "train_loss": 1.0 / e}), flush=True)
"""


def one(root: Path, lines: int) -> tuple[float, float, int]:
    """(lines per second while recording, the run's wall time, epochs recorded)."""
    from nkd_tui.cli import main

    script = root / "unpaced.py"
    script.write_text(SCRIPT)
    reg = root / "experiments.toml"
    reg.write_text(f'[experiments.unpaced]\ncommand = ["{sys.executable}", "{script}", '
                   f'"{lines}"]\n')
    started = time.perf_counter()
    assert main(["--registry", str(reg), "run", "unpaced", "--detach"]) == 0
    store = Store(root / "nkd.db")
    try:
        run_id = store.list_runs()[0]["id"]
        deadline = time.monotonic() + 600
        while store.get_run(run_id)["status"] not in FINAL:
            assert time.monotonic() < deadline, "the run did not end"
            time.sleep(0.05)
        wall = time.perf_counter() - started
        epochs = [e for e in EventLog(root / "runs" / run_id / "events.jsonl")
                  if e["type"] == "epoch"]
    finally:
        store.close()
    span = epochs[-1]["t"] - epochs[0]["t"]
    return (len(epochs) - 1) / span if span > 0 else float("inf"), wall, len(epochs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rates, walls = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            rate, wall, got = one(Path(tmp), args.lines)
            assert got == args.lines, f"{got} of {args.lines} epochs recorded"
            rates.append(rate)
            walls.append(wall)
    print(f"capture: {statistics.median(rates):,.0f} @nkd lines/s recorded (median of "
          f"{args.repeat}; {args.lines} lines, run {statistics.median(walls):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
