"""TUI benchmark: start-up to the first painted run table, and chart redraw time.

1. A store of 10,000 runs and 1,000,000 epoch rows; a fresh `python` process starts the nkd app
   (headless) and reports when the run table first has rows; in the same run, a fresh process
   starts an empty Textual app and reports its first paint. Target: nkd <= 2x the empty app.
2. Redraw of the loss chart (decimate + plotext build) for runs of 1,000 and 1,000,000 epochs.
   Target: <= 25 ms for both.
Usage: python bench/tui_bench.py
"""

from __future__ import annotations

import asyncio
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
    def _update_table(self, snap):
        super()._update_table(snap)
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
    t = time.time()
    out = subprocess.run([sys.executable, "-c", code, *args, str(t)], capture_output=True,
                         text=True, cwd=ROOT, check=True, timeout=120).stdout
    return float(out.strip().splitlines()[-1])


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
        nkd, empty = [], []
        for _ in range(repeat):  # interleaved, so both see the same machine load
            empty.append(first_paint(EMPTY_CHILD))
            nkd.append(first_paint(NKD_CHILD, str(registry)))
        e, n = statistics.median(empty), statistics.median(nkd)
        print("start-up to first paint (fresh process, headless, median of "
              f"{repeat}; store of 10,000 runs / 1,000,000 epochs):")
        print(f"  empty Textual app:            {e * 1e3:7.1f} ms")
        print(f"  nkd, run table painted:       {n * 1e3:7.1f} ms  ({n / e:.2f}x the empty app; "
              f"target <= 2x)")


async def redraw_times() -> None:
    from textual.app import App, ComposeResult

    from nkd_tui.app import LossChart

    class One(App):
        def compose(self) -> ComposeResult:
            yield LossChart(id="chart")

    app = One()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        chart = app.query_one(LossChart)
        print("chart redraw (decimate + plotext build), median of 20:")
        for n in (1_000, 1_000_000):
            chart.run_id = f"bench_{n}"
            chart.epochs = array("d", range(1, n + 1))
            chart.train = array("d", (1.0 / (1 + i * 1e-3) for i in range(n)))
            chart.val = array("d", (1.1 / (1 + i * 1e-3) + (i % 7) * 1e-3 for i in range(n)))
            samples = []
            for _ in range(20):
                t = time.perf_counter()
                chart.redraw()
                chart.render()
                samples.append(time.perf_counter() - t)
            print(f"  {n:>9,} points:              {statistics.median(samples) * 1e3:7.2f} ms"
                  f"  (target <= 25 ms)")


def main() -> None:
    startup(repeat=5)
    asyncio.run(redraw_times())


if __name__ == "__main__":
    main()
