"""False `lost` under load: real fast foreground runs, and runs with a tight reconcile loop beside.

Prints how many of N runs were ever recorded `lost` (in events.jsonl or the store) although they
finished, and how many `nkd run` exits were not 0. Both must be 0.

    .venv/bin/python bench/lost_race.py [--runs 10] [--beside 40] [--epochs 2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.registry import load_registry  # noqa: E402
from core.registry.workspace import Workspace  # noqa: E402
from core.runs.launch import launch  # noqa: E402
from core.runs.status import reconcile, wait_for  # noqa: E402
from core.store import FINAL, Store  # noqa: E402
from core.store.events import EventLog  # noqa: E402

SCRIPT = """
import json, sys
n = int(sys.argv[1])
for e in range(1, n + 1):
    print("@nkd " + json.dumps({"epoch": e, "train_loss": 1.0 / e}), flush=True)
"""


def _false_lost(root: Path, store: Store) -> int:
    bad = 0
    for row in store.list_runs():
        statuses = [e["status"] for e in EventLog(root / "runs" / row["id"] / "events.jsonl")
                    if e["type"] == "status"]
        if "lost" in statuses or row["status"] != "finished":
            bad += 1
    return bad


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10, help="foreground `nkd run`s")
    ap.add_argument("--beside", type=int, default=40, help="runs with a reconcile loop beside")
    ap.add_argument("--epochs", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "fast.py").write_text(SCRIPT)
        registry = root / "experiments.toml"
        registry.write_text(
            f'[experiments.fast]\ncommand = ["{sys.executable}", "{root / "fast.py"}", '
            f'"{args.epochs}"]\n'
        )
        started = time.perf_counter()
        nonzero = 0
        for _ in range(args.runs):
            done = subprocess.run(
                [sys.executable, "-m", "nkd_tui.cli", "--registry", str(registry), "run", "fast"],
                capture_output=True, cwd=ROOT, check=False,
            )
            nonzero += done.returncode != 0
        store = Store(root / "nkd.db")
        lost = _false_lost(root, store)
        print(f"foreground: {args.runs} runs of {args.epochs} epochs, {lost} recorded lost, "
              f"{nonzero} exits not 0 ({time.perf_counter() - started:.1f} s)")

        ws = Workspace.at(registry)
        stop = threading.Event()
        marked: list[str] = []

        def beside() -> None:
            own = Store(ws.db_path)
            while not stop.is_set():
                marked.extend(reconcile(own, ws))
            own.close()

        thread = threading.Thread(target=beside, daemon=True)
        thread.start()
        before = {r["id"] for r in store.list_runs()}
        reg = load_registry(registry)
        for _ in range(args.beside):
            run_id = launch(reg, "fast", (), store=store).run_id
            wait_for(store, run_id, FINAL, 120)
        stop.set()
        thread.join()
        beside_lost = _false_lost(root, store) - lost
        fresh = len({r["id"] for r in store.list_runs()} - before)
        print(f"reconcile loop beside: {fresh} runs, {beside_lost} recorded lost, "
              f"{len(marked)} marked lost by the loop")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
