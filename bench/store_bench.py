"""Store benchmark: 10,000 runs and 1,000,000 epoch rows.

Prints the time to list every run with its best values, and to read one run's epochs.
Targets on the 2-core reference machine: list <= 10 ms, one run's epochs <= 1 ms.
Usage: python bench/store_bench.py [--runs 10000] [--epochs-per-run 100]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.store import FULL_COLUMNS, Store  # noqa: E402


def build(store: Store, runs: int, per_run: int) -> list[str]:
    rng = random.Random(0)
    ids = [f"exp{i % 40}_20260101_{i:06d}" for i in range(runs)]
    t0 = 1_780_000_000.0
    with store.write() as conn:
        conn.executemany(
            "INSERT INTO runs (id, experiment, recipe, status, params, created_at, started_at, "
            "ended_at, epoch, epochs_total, best_epoch, best_val_loss, best_train_loss, "
            "accuracy, sdr) VALUES (?, ?, 'separation.train', 'finished', ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?, ?)",
            [
                (rid, f"exp{i % 40}", json.dumps({"lr": 1e-4, "hidden_size": 512}), t0 + i,
                 t0 + i, t0 + i + 3600, per_run, per_run, rng.randrange(per_run),
                 rng.random(), rng.random(), rng.random(), rng.uniform(-2, 4))
                for i, rid in enumerate(ids)
            ],
        )
        for rid in ids:
            conn.executemany(
                "INSERT INTO epochs (run, epoch, train_loss, val_loss, lr, at) "
                "VALUES (?, ?, ?, ?, 1e-4, ?)",
                [(rid, e, 1.0 / e, 1.1 / e, t0 + e) for e in range(1, per_run + 1)],
            )
    return ids


def timed(fn, repeat: int) -> float:
    fn()  # warm the page cache
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--epochs-per-run", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "nkd.db")
        t = time.perf_counter()
        ids = build(store, args.runs, args.epochs_per_run)
        built = time.perf_counter() - t
        rows = store.conn.execute("SELECT count(*) FROM epochs").fetchone()[0]
        print(f"store: {len(ids):,} runs, {rows:,} epoch rows (built in {built:.1f} s)")
        listed = timed(lambda: store.list_runs(), 30)
        n = len(store.list_runs())
        one = timed(lambda: store.epochs(ids[len(ids) // 2]), 200)
        exp = timed(lambda: store.list_runs("exp7"), 100)
        full = timed(lambda: store.list_runs(columns=FULL_COLUMNS), 10)
        print(f"list all runs with best values: {listed * 1e3:7.2f} ms  ({n:,} rows; "
              f"target <= 10 ms)")
        print(f"one run's epochs:               {one * 1e3:7.3f} ms  ({args.epochs_per_run} rows; "
              f"target <= 1 ms)")
        print(f"one experiment's runs:          {exp * 1e3:7.3f} ms")
        print(f"for comparison, all {len(FULL_COLUMNS)} run columns: {full * 1e3:7.2f} ms "
              f"({full / listed:.1f}x the listing)")
        store.close()
        ps, bare = nkd_ps(Path(tmp))
        print(f"`nkd ps --all`, the whole process: {ps * 1e3:7.1f} ms, median of 7 "
              f"(`python -c pass`: {bare * 1e3:.1f} ms; {ps / bare:.1f}x)")


def nkd_ps(root: Path) -> tuple[float, float]:
    """The whole `nkd ps --all` process on this store, timed from outside, beside a bare
    interpreter's start."""
    import subprocess

    (root / "experiments.toml").write_text("")
    ps = [sys.executable, "-m", "nkd_tui.cli", "--registry", str(root / "experiments.toml"),
          "ps", "--all"]
    bare = [sys.executable, "-c", "pass"]

    def run(argv: list[str]) -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)

    return timed(lambda: run(ps), 7), timed(lambda: run(bare), 7)


if __name__ == "__main__":
    main()
