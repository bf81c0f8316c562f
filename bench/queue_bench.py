"""The queue's figures: how soon a queued run starts after the one before it ends, and what one
scheduler cycle costs with 1,000 queued runs.

The handover is measured from the user's side, by the scripts' own clocks: from one queued
script's last line to the next one's first line (each writes time.time() there), against the
same scripts run back to back by a plain loop in the same run; and, from the runs' own event
times, where the time goes (the worker recording the end, the scheduler taking the next run,
the next worker starting its script).

    .venv/bin/python bench/queue_bench.py

Targets: handover <= 0.25 s; one cycle with 1,000 queued runs <= 20 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.backends.gpus import from_json  # noqa: E402
from core.registry.workspace import Workspace  # noqa: E402
from core.store import Store  # noqa: E402
from core.store.events import FINAL, EventLog  # noqa: E402


def _gpus(n: int, busy: bool) -> dict:
    return {"gpus": [{"index": i, "uuid": f"GPU-{i}", "name": "H100", "memory_total_mib": 81559,
                      "memory_used_mib": 0, "utilization": 0} for i in range(n)]} if not busy \
        else {"gpus": [{"index": i, "uuid": f"GPU-{i}", "name": "H100",
                        "memory_total_mib": 81559, "memory_used_mib": 80000, "utilization": 99,
                        "processes": [{"pid": 1, "user": "other", "memory_mib": 80000}]}
                       for i in range(n)]}


SCRIPT = """import os, sys, time
def say(what):
    with open(sys.argv[1], "a") as fh:
        fh.write(f"{os.environ.get('NKD_RUN_ID', 'plain')} {what} {time.time()!r}\\n")
say("first")
time.sleep(0.5)
say("last")
"""


def _gaps(clock: Path) -> list[float]:
    """Each script's first line after the last line of the one before it, from the clock file."""
    marks = [line.split() for line in clock.read_text().splitlines()]
    firsts = [float(t) for _, what, t in marks if what == "first"]
    lasts = [float(t) for _, what, t in marks if what == "last"]
    return [b - a for a, b in zip(lasts, firsts[1:], strict=False)]


def plain(root: Path, runs: int = 6) -> list[float]:
    """The same scripts back to back in a plain loop: the yardstick."""
    import subprocess

    script, clock = root / "short.py", root / "plain.txt"
    script.write_text(SCRIPT)
    for _ in range(runs):
        subprocess.run([sys.executable, str(script), str(clock)], check=True)
    return _gaps(clock)


def handover(root: Path, runs: int = 6) -> tuple[list[float], dict[str, list[float]]]:
    """Queue `runs` half-second command runs on one described GPU; the gaps between one
    script's last line and the next one's first (their own clocks), and where they went."""
    from nkd_tui.cli import main

    (root / "gpus.json").write_text(json.dumps(_gpus(1, busy=False)))
    os.environ["NKD_GPUS"] = str(root / "gpus.json")
    os.environ["NKD_QUEUE_IDLE_S"] = "2"
    script, clock = root / "short.py", root / "queued.txt"
    script.write_text(SCRIPT)
    reg = root / "experiments.toml"
    reg.write_text(f'[experiments.short]\ncommand = ["{sys.executable}", "{script}", "{clock}"]\n'
                   f'gpus = 1\n')
    for _ in range(runs):
        assert main(["--registry", str(reg), "run", "short", "--queue"]) == 0
    store = Store(root / "nkd.db")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = store.list_runs()
        if len(rows) == runs and all(r["status"] in FINAL for r in rows):
            break
        time.sleep(0.2)
    marks = {}  # run -> its script's first and last line
    for line in clock.read_text().splitlines():
        run, what, t = line.split()
        marks.setdefault(run, {})[what] = float(t)
    parts: dict[str, list[float]] = {"end recorded": [], "next claimed": [],
                                      "its script started": []}
    before = None
    for row in sorted(store.list_runs(), key=lambda r: r["started_at"] or 0):
        events = list(EventLog(root / "runs" / row["id"] / "events.jsonl"))
        claimed = next(e["t"] for e in events if e["type"] == "status"
                       and e["status"] == "starting")
        ended = next(e["t"] for e in reversed(events)
                     if e["type"] == "status" and e["status"] in FINAL)
        if before is not None:
            parts["end recorded"].append(before[1] - marks[before[0]]["last"])
            parts["next claimed"].append(claimed - before[1])
            parts["its script started"].append(marks[row["id"]]["first"] - claimed)
        before = (row["id"], ended)
    store.close()
    return _gaps(clock), parts


def cycle_cost(root: Path, queued: int = 1000, repeats: int = 20) -> tuple[float, float]:
    """Median and max time of Queue.decide() with `queued` runs waiting for 4 busy GPUs."""
    from core.backends.queue.scheduler import Queue

    reg = root / "experiments.toml"
    reg.write_text('[experiments.x]\ncommand = ["true"]\n')
    store = Store(root / "nkd.db")
    with store.write() as conn:
        for i in range(queued):
            conn.execute(
                "INSERT INTO runs (id, experiment, recipe, status, params, created_at, "
                "queued_at, needs_gpus, priority) VALUES (?, 'x', 'command', 'queued', '{}', ?, "
                "?, 1, ?)", (f"x_20260101_000000_{i}", float(i), float(i), i % 3))
    gpus = from_json(_gpus(4, busy=True), "bench")
    queue = Queue(Workspace.at(reg), store)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        decisions = queue.decide(gpus)
        times.append(time.perf_counter() - t)
    assert len(decisions) == queued and all(d.state == "wait" for d in decisions)
    store.close()
    return statistics.median(times), max(times)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        gaps, parts = handover(Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        loop = plain(Path(tmp))
    print(f"queue handover, one script's last line -> the next one's first (their clocks): "
          f"median {statistics.median(gaps):.3f} s, max {max(gaps):.3f} s over {len(gaps)} "
          f"(target <= 0.25 s); a plain loop of the same scripts: median "
          f"{statistics.median(loop):.3f} s")
    print("  of which (medians, from the runs' events): " + ", ".join(
        f"{name} {statistics.median(v):.3f} s" for name, v in parts.items()))
    with tempfile.TemporaryDirectory() as tmp:
        median, worst = cycle_cost(Path(tmp))
    print(f"one scheduler cycle, 1,000 queued runs, 4 busy GPUs: median {median * 1000:.1f} ms, "
          f"max {worst * 1000:.1f} ms (target <= 20 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
