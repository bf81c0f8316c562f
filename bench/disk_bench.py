"""What sizes and `nkd gc` cost on a big workspace: 10,000 ended runs with 50,000 checkpoint
files (5 per run, a lineage edge for one run in ten).

1. Sizes in the listing: `nkd ps`'s query (its default 50 newest runs, and `--all`: every run,
   every column) and the TUI poll's query of one experiment, with the two size columns against
   without them; and the TUI tree's sizes per experiment, read every RECONCILE_EVERY_S with the
   liveness check (not each poll), median of 20.
   Target: <= 1 ms added.
2. `nkd gc`'s dry run (the plan: the store read, each candidate file looked at), median of 3.
   Target: <= 2 s.

    .venv/bin/python bench/disk_bench.py [--runs 10000] [--per-run 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.timing import median_ms  # noqa: E402
from core.registry.workspace import Workspace  # noqa: E402
from core.runs import gc  # noqa: E402
from core.store import FULL_COLUMNS, Store  # noqa: E402
from nkd_tui.poll import RECONCILE_EVERY_S, RUN_COLUMNS  # noqa: E402

SIZES = ("checkpoint_bytes", "folder_bytes")


def build(root: Path, runs: int, per_run: int) -> Store:
    store = Store(root / "nkd.db")
    t0 = time.time() - 90 * 86400
    with store.write() as conn:
        conn.executemany(
            "INSERT INTO runs (id, experiment, recipe, status, run_dir, created_at, ended_at, "
            "checkpoint_bytes, folder_bytes) VALUES (?, ?, 'separation.train', 'finished', ?, "
            "?, ?, ?, ?)",
            [(f"exp{i % 40}_{i:06d}", f"exp{i % 40}", str(root / "runs" / f"r{i}"), t0 + i,
              t0 + i + 60, per_run * 4096, 1000) for i in range(runs)])
        rows, edges = [], []
        for i in range(runs):
            run = f"exp{i % 40}_{i:06d}"
            folder = root / "checkpoints" / run
            folder.mkdir(parents=True)
            for k in range(per_run):
                path = folder / f"ckpt_{k}.pth"
                path.write_bytes(b"")
                rows.append((f"{run}/ckpt_{k}.pth", run, str(path), "best" if k == 0 else "last",
                             4096, t0 + i))
            if i % 10 == 1:
                edges.append((f"exp{i % 40}_{i:06d}/ckpt_0.pth", f"exp{(i - 1) % 40}_"
                               f"{i - 1:06d}/ckpt_0.pth", "pretrained", None))
        conn.executemany("INSERT INTO checkpoints (id, run, path, role, bytes, at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO lineage (child, parent, relation, weight) "
                         "VALUES (?, ?, ?, ?)", edges)
    return store


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--per-run", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nkd-disk-bench-") as tmp:
        root = Path(tmp)
        (root / "experiments.toml").write_text("")
        t0 = time.perf_counter()
        store = build(root, args.runs, args.per_run)
        print(f"{args.runs:,} runs, {args.runs * args.per_run:,} checkpoint files, made in "
              f"{time.perf_counter() - t0:.1f} s")
        without = tuple(c for c in FULL_COLUMNS if c not in SIZES)
        for name, cols_with, cols_without, where in (
                ("nkd ps (its 50 newest runs, every column)", FULL_COLUMNS, without, " LIMIT 50"),
                ("nkd ps --all (all runs, every column)", FULL_COLUMNS, without, ""),
                ("TUI poll (one experiment's runs)", RUN_COLUMNS,
                 tuple(c for c in RUN_COLUMNS if c not in SIZES), " WHERE experiment = 'exp7'")):
            def query(cols: tuple[str, ...], where: str = where) -> None:
                limit = " LIMIT 50" if where == " LIMIT 50" else ""
                store.conn.execute(f"SELECT {', '.join(cols)} FROM runs"
                                   f"{'' if limit else where} ORDER BY created_at DESC{limit}"
                                   ).fetchall()

            a = median_ms(lambda cols=cols_with: query(cols), 20)
            b = median_ms(lambda cols=cols_without: query(cols), 20)
            print(f"{name}: {a:.2f} ms with sizes, {b:.2f} ms without: {a - b:+.2f} ms "
                  f"(target <= +1 ms)")
        a = median_ms(store.experiment_bytes, 20)
        b = median_ms(store.experiment_summaries, 20)
        print(f"TUI tree: each experiment's bytes {a:.2f} ms, read with the liveness check (every "
              f"{RECONCILE_EVERY_S:g} s), not each poll: {a / RECONCILE_EVERY_S:.2f} ms a second "
              f"(its per-poll summary of live runs and best scores: {b:.2f} ms)")
        ws = Workspace.at(root / "experiments.toml")
        planned = gc.plan(store, ws)
        ms = median_ms(lambda: gc.plan(store, ws), 3)
        print(f"nkd gc dry run: {ms:.0f} ms for {len(planned.delete):,} to delete and "
              f"{len(planned.kept):,} kept (median of 3; target <= 2,000 ms)")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
