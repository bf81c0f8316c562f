"""The queue's two figures: how soon a queued run starts after a lease ends, and what one
scheduler cycle costs with 1,000 queued runs.

    .venv/bin/python bench/queue_bench.py

Targets: lease end -> next worker started <= 1 s; one cycle with 1,000 queued runs <= 20 ms.
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


def handover(root: Path, runs: int = 6) -> list[float]:
    """Queue `runs` one-second command runs on one described GPU; the gaps between one run's
    final status and the next one's worker start."""
    from nkd_tui.cli import main

    (root / "gpus.json").write_text(json.dumps(_gpus(1, busy=False)))
    os.environ["NKD_GPUS"] = str(root / "gpus.json")
    os.environ["NKD_QUEUE_IDLE_S"] = "2"
    script = root / "short.py"
    script.write_text("import time\ntime.sleep(1.0)\n")
    reg = root / "experiments.toml"
    reg.write_text(f'[experiments.short]\ncommand = ["{sys.executable}", "{script}"]\ngpus = 1\n')
    for _ in range(runs):
        assert main(["--registry", str(reg), "run", "short", "--queue"]) == 0
    store = Store(root / "nkd.db")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = store.list_runs()
        if len(rows) == runs and all(r["status"] in FINAL for r in rows):
            break
        time.sleep(0.2)
    ends, starts = [], []
    for row in sorted(store.list_runs(), key=lambda r: r["started_at"] or 0):
        events = list(EventLog(root / "runs" / row["id"] / "events.jsonl"))
        starts.append(next(e["t"] for e in events if e["type"] == "worker"))
        ends.append(next(e["t"] for e in reversed(events)
                         if e["type"] == "status" and e["status"] in FINAL))
    store.close()
    return [start - end for end, start in zip(ends, starts[1:], strict=False)]


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
        gaps = handover(Path(tmp))
    print(f"lease end -> next worker started: median {statistics.median(gaps):.3f} s, "
          f"max {max(gaps):.3f} s over {len(gaps)} handovers (target <= 1 s)")
    with tempfile.TemporaryDirectory() as tmp:
        median, worst = cycle_cost(Path(tmp))
    print(f"one scheduler cycle, 1,000 queued runs, 4 busy GPUs: median {median * 1000:.1f} ms, "
          f"max {worst * 1000:.1f} ms (target <= 20 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
