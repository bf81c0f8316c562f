"""`@nkd` capture, and what `nkd run` adds to a script's time, each against its yardstick in
the same run.

1. Unpaced: a command experiment prints N `@nkd {"epoch": e, "train_loss": ...}` lines as fast
   as it can, through a real worker; the lines per second between the first and the last
   recorded epoch (the run's own events). Target >= 20,000 lines/s, every line recorded.
2. Paced: a script printing 5,000 `@nkd` lines a second for 5 s, `nkd run` (foreground, whole
   process timed from outside) against the script alone. Target <= 1.1x, every line recorded.
3. Start: `nkd run` of `python -c pass` against `python -c pass` alone. Target <= +0.2 s.

Medians of --repeat runs.

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


PACED = """
import json, sys, time
n, rate = int(sys.argv[1]), float(sys.argv[2])
start = time.perf_counter()
for e in range(1, n + 1):
    print("@nkd " + json.dumps({"epoch": e, "train_loss": 1.0 / e}), flush=True)
    ahead = start + e / rate - time.perf_counter()
    if ahead > 0:
        time.sleep(ahead)
"""


def whole(argv: list[str], cwd: Path) -> float:
    """A whole process's wall time, timed from outside."""
    import subprocess

    t = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return time.perf_counter() - t


def beside(root: Path, script: list[str], repeat: int) -> tuple[float, float, int]:
    """(`nkd run` of the script, the script alone, epochs the last run recorded), medians."""
    nkd = str(Path(sys.executable).parent / "nkd")
    reg = root / "experiments.toml"
    reg.write_text("[experiments.s]\ncommand = [" + ", ".join(f'"{a}"' for a in script) + "]\n")
    ours, alone = [], []
    for _ in range(repeat):
        alone.append(whole(script, root))
        ours.append(whole([nkd, "--registry", str(reg), "run", "s"], root))
    store = Store(root / "nkd.db")
    try:
        run_id = store.list_runs()[0]["id"]
        epochs = len(store.epochs(run_id))
    finally:
        store.close()
    return statistics.median(ours), statistics.median(alone), epochs


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
          f"{args.repeat}; {args.lines} lines, run {statistics.median(walls):.2f} s; "
          f"target >= 20,000)")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "paced.py"
        script.write_text(PACED)
        ours, alone, got = beside(Path(tmp), [sys.executable, str(script), "25000", "5000"],
                                  args.repeat)
    print(f"paced script, 25,000 @nkd lines at 5,000 a second: nkd run {ours:.2f} s, alone "
          f"{alone:.2f} s: {ours / alone:.2f}x (target <= 1.1x), {got:,} of 25,000 recorded")
    with tempfile.TemporaryDirectory() as tmp:
        ours, alone, _ = beside(Path(tmp), [sys.executable, "-c", "pass"], args.repeat)
    print(f"start: nkd run of python -c pass {ours:.2f} s, alone {alone:.2f} s: "
          f"+{ours - alone:.2f} s (target <= +0.2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
