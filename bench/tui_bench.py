"""TUI benchmark: start-up to the first painted run table, and chart redraw time.

1. A store of 10,000 runs and 1,000,000 epoch rows; a fresh `python` process starts the nkd app
   (headless) and reports when the run table first has rows; in the same run, a fresh process
   starts an empty Textual app and reports its first paint, each timed from its spawn by the
   parent. Pairs interleaved, on an idle machine and again with every core kept busy by another
   process. Target: nkd <= 2x the empty app.
2. Redraw of the loss chart for runs of 1,000 and 1,000,000 epochs: after a new epoch (decimate +
   plotext build) and with the same data under a new title (the decimated series is kept).
   Target: <= 25 ms for both.
3. One live update: a run table of 10,000 runs of one experiment, 50 of them running, each of
   which has reported a new epoch since the last poll; the time the app's thread spends applying
   the poller's snapshot (tree labels, the 50 changed rows' cells, chart, log). The snapshot
   itself is read in a worker thread and is timed beside it. Target: <= 16 ms of the app's thread.
4. The log viewer on a 100 MB output.log (1.28 million lines): time until every line is indexed
   and shown, a jump to the end (G), and a search that finds nothing (it reads the whole file).
   The viewer holds line offsets, not lines; its memory growth is printed too.
Usage: python bench/tui_bench.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

NKD_CHILD = """
import sys, time
t_spawn = float(sys.argv[2])
from nkd_tui.app import NkdApp, make_app

class Timed(NkdApp):
    def _apply(self, snap):
        super()._apply(snap)
        if self.query_one("#runs").row_count and not getattr(self, "_done", False):
            self._done = True
            self.call_after_refresh(self._finish)

    def _finish(self):
        print(f"{time.time() - t_spawn:.4f}", flush=True)
        self.exit()

app = make_app(sys.argv[1])
app.__class__ = Timed
app.run(headless=True, size=(100, 30))
"""

EMPTY_CHILD = """
import sys, time
t_spawn = float(sys.argv[1])
from textual.app import App
from textual.widgets import Footer, Static

class Empty(App):
    def compose(self):
        yield Static("empty")
        yield Footer()

    def on_mount(self):
        self.call_after_refresh(self._finish)

    def _finish(self):
        print(f"{time.time() - t_spawn:.4f}", flush=True)
        self.exit()

Empty().run(headless=True, size=(100, 30))
"""


def first_paint(code: str, *args: str) -> float:
    """Seconds from spawning a child to its first paint. The child may read and write cached
    bytecode, as `nkd` does on a researcher's box: without it (PYTHONDONTWRITEBYTECODE, as some
    CI images set) nkd's own modules are compiled at every start while Textual's, compiled when
    pip installed them, are not, and the comparison would measure the compiler."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t = time.time()
    out = subprocess.run([sys.executable, "-c", code, *args, str(t)], capture_output=True,
                         text=True, cwd=ROOT, check=True, timeout=120, env=env).stdout
    return float(out.strip().splitlines()[-1])


def busy(cores: int) -> list[subprocess.Popen]:
    """`cores` processes that keep a core busy each, as other work on the box would."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]


def startup(repeat: int) -> None:
    from store_bench import build

    from core.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        registry = Path(tmp) / "experiments.toml"
        registry.write_text("".join(
            f'[experiments.exp{i}]\ngroup = "g{i // 10}"\ncommand = ["true"]\n\n'
            for i in range(40)
        ))
        store = Store(Path(tmp) / "nkd.db")
        build(store, 10_000, 100)
        store.close()
        first_paint(EMPTY_CHILD)  # a first start of each writes its bytecode cache
        first_paint(NKD_CHILD, str(registry))
        print("start-up to first paint (fresh processes, headless, bytecode cached, interleaved "
              f"pairs, median of {repeat}; store of 10,000 runs / 1,000,000 epochs):")
        for label, hogs in (("idle", 0), ("all cores busy", os.cpu_count() or 2)):
            workers = busy(hogs)
            try:
                nkd, empty = [], []
                for _ in range(repeat):  # interleaved, so both see the same machine load
                    empty.append(first_paint(EMPTY_CHILD))
                    nkd.append(first_paint(NKD_CHILD, str(registry)))
            finally:
                for w in workers:
                    w.kill()
                    w.wait()
            e, n = statistics.median(empty), statistics.median(nkd)
            pairs = statistics.median(b / a for a, b in zip(empty, nkd, strict=True))
            print(f"  {label + ':':17} empty Textual app {e * 1e3:6.1f} ms, nkd with its run table "
                  f"{n * 1e3:6.1f} ms: {n / e:.2f}x (median of pair ratios {pairs:.2f}x; "
                  f"target <= 2x)")


async def redraw_times() -> None:
    from textual.app import App, ComposeResult

    from nkd_tui.run_chart import LossChart

    class One(App):
        def compose(self) -> ComposeResult:
            yield LossChart(id="chart")

    app = One()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        chart = app.query_one(LossChart)
        print("chart redraw, median of 20: after a new epoch (the series cut to the width, then"
              " plotext's build) / same data, new title (the cut is kept):")
        for n in (1_000, 1_000_000):
            chart.run_id = f"bench_{n}"
            epochs = array("d", range(1, n + 1))
            chart.series = {
                "train_loss": (epochs, array("d", (1.0 / (1 + i * 1e-3) for i in range(n)))),
                "val_loss": (epochs, array("d", (1.1 / (1 + i * 1e-3) + (i % 7) * 1e-3
                                                 for i in range(n)))),
            }
            chart.last_epoch = n
            medians = []
            for keep_cut in (False, True):
                samples = []
                for i in range(20):
                    if not keep_cut:
                        chart.cuts.clear()
                    chart.progress = f"step {i}"
                    t = time.perf_counter()
                    chart.redraw()
                    chart.render()
                    samples.append(time.perf_counter() - t)
                medians.append(statistics.median(samples) * 1e3)
            print(f"  {n:>9,} points:              {medians[0]:7.2f} ms / {medians[1]:5.2f} ms"
                  f"  (target <= 25 ms)")


async def live_update(runs: int = 10_000, running: int = 50) -> None:
    from core.store import Store
    from nkd_tui.app import make_app

    with tempfile.TemporaryDirectory() as tmp:
        registry = Path(tmp) / "experiments.toml"
        registry.write_text('[experiments.exp0]\ngroup = "g"\ncommand = ["true"]\n')
        store = Store(Path(tmp) / "nkd.db")
        t0 = 1_780_000_000.0
        ids = [f"exp0_20260101_{i:06d}" for i in range(runs)]
        live = ids[-running:]
        with store.write() as conn:
            conn.executemany(
                "INSERT INTO runs (id, experiment, status, created_at, started_at, ended_at, "
                "epoch, epochs_total, best_val_loss) VALUES (?, 'exp0', ?, ?, ?, ?, 3, 100, ?)",
                [(rid, "running" if rid in live else "finished", t0 + i, t0 + i,
                  None if rid in live else t0 + i + 60, 0.5) for i, rid in enumerate(ids)])
        app = make_app(registry, clock=lambda: t0 + runs + 100, poll=False)
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(50):  # every row in the table, as after a minute of use
                await app.workers.wait_for_complete()
                await pilot.pause()
                if app.query_one("#runs").row_count == runs:
                    break
            samples, reads = [], []
            for epoch in range(4, 14):
                with store.write() as conn:
                    conn.executemany("UPDATE runs SET epoch = ?, best_val_loss = ? WHERE id = ?",
                                     [(epoch, 0.5 / epoch, rid) for rid in live])
                t = time.perf_counter()
                snap = app.poller.snapshot(app.experiment, app.run_id, 0, reconcile_runs=False)
                reads.append(time.perf_counter() - t)
                t = time.perf_counter()
                app._apply(snap)
                samples.append(time.perf_counter() - t)
                await pilot.pause()
            rows = app.query_one("#runs").row_count
        store.close()
    print(f"one live update, {rows:,} runs in the table, {running} of them running (median of "
          f"{len(samples)}):")
    print(f"  app thread, applying the poll: {statistics.median(samples) * 1e3:7.2f} ms"
          f"  (target <= 16 ms)")
    print(f"  worker thread, reading it:     {statistics.median(reads) * 1e3:7.2f} ms")


async def big_log(megabytes: int = 100) -> None:
    import resource

    from textual.app import App

    from nkd_tui.log_viewer import LogViewer

    line = "teacher epoch 12/100 step 340/480 loss 0.04521 lr 1.0e-04 val_accuracy 0.9821\n"
    lines = megabytes * 1_000_000 // len(line) // 1000 * 1000
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "output.log"
        with open(log, "w") as fh:
            for _ in range(lines // 1000):
                fh.write(line * 1000)

        class Viewer(App):
            def on_mount(self) -> None:
                self.push_screen(LogViewer(log, "output.log"))

        app = Viewer()
        async with app.run_test(size=(100, 30)) as pilot:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t = time.perf_counter()
            while len(getattr(app.screen, "lines", [])) < lines:
                await pilot.pause(0.02)
            opened = time.perf_counter() - t
            grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
            t = time.perf_counter()
            await pilot.press("G")
            end = time.perf_counter() - t
            t = time.perf_counter()
            await pilot.press("slash", *"no such text", "enter")
            while "no further" not in str(app.screen.query_one("#where").render()):
                await pilot.pause(0.02)
            miss = time.perf_counter() - t
    print(f"log viewer on a {megabytes} MB log ({lines:,} lines):")
    print(f"  every line indexed and shown:  {opened * 1e3:7.0f} ms")
    print(f"  jump to the end (G):           {end * 1e3:7.0f} ms")
    print(f"  search that finds nothing:     {miss * 1e3:7.0f} ms  (in a worker thread)")
    print(f"  peak memory growth:            {grown:7.1f} MiB")


def main() -> None:
    startup(repeat=9)
    asyncio.run(redraw_times())
    asyncio.run(live_update())
    asyncio.run(big_log())


if __name__ == "__main__":
    main()
