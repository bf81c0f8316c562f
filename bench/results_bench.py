"""What seeing and hearing a model's outputs costs.

1. Drawing one spectrogram panel of the results screen (a kept 48 × 200 spectrogram resampled to
   a panel of 38 × 10 cells, colour half blocks and the NO_COLOR shades), median of 50.
   Target: <= 30 ms.
2. An evaluation on the demo separation set with what it keeps (results_tracks = 3: excerpts,
   spectrograms, per-second and global SDR) against the same evaluation keeping no excerpts
   (results_tracks = 0), after one evaluation not counted (the first after training reads
   the checkpoint and the test tracks from disk), in alternating order (keeping first, then
   none first); each run's own time from its start to its end, median. Target: keeping adds
   <= 5 %.

    .venv/bin/python bench/results_bench.py [--repeat 5] [--tracks 8] [--seconds 8]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core.results.spectrogram import spectrograms  # noqa: E402
from nkd_tui.cli import main as nkd  # noqa: E402
from nkd_tui.spectro import render  # noqa: E402


def panel() -> tuple[float, float]:
    rate = 22050
    t = np.arange(rate * 10) / rate
    audio = np.sin(2 * np.pi * 440 * t) + 0.1 * np.random.default_rng(0).normal(size=t.size)
    spec = spectrograms({"mixture": audio}, rate)["mixture"]
    out = []
    for color in (True, False):
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            render(spec, 38, 10, color=color)
            times.append((time.perf_counter() - t0) * 1000)
        out.append(statistics.median(times))
    return out[0], out[1]


def evaluation(repeat: int, tracks: int, seconds: float) -> tuple[list[float], list[float]]:
    from core.store import Store

    root = Path(tempfile.mkdtemp(prefix="nkd-results-bench-"))
    try:
        shutil.copy(ROOT / "experiments.toml", root / "experiments.toml")
        reg = ["--registry", str(root / "experiments.toml")]
        assert nkd([*reg, "data", "synth", "separation", "--tracks", str(tracks), "--seconds",
                    str(seconds)]) == 0
        assert nkd([*reg, "run", "crnn_long", "--set", "epochs=1", "--set", "threads=2"]) == 0
        times: dict[int, list[float]] = {3: [], 0: []}
        order = [0] + [k for i in range(repeat) for k in ((3, 0) if i % 2 == 0 else (0, 3))]
        for at, kept in enumerate(order):
            assert nkd([*reg, "eval", "crnn_long", "--data", "./data/test", "--set",
                        f"results_tracks={kept}", "--set", "threads=2"]) == 0
            store = Store(root / "nkd.db")
            run = store.list_runs(limit=1)[0]
            store.close()
            if at:  # the first: files read from disk, not counted
                times[kept].append(run["ended_at"] - run["started_at"])
        return times[3], times[0]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tracks", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    colour, plain = panel()
    kept, bare = evaluation(args.repeat, args.tracks, args.seconds)
    print(f"one spectrogram panel, 38 x 10 cells: {colour:.2f} ms in colour, {plain:.2f} ms "
          f"NO_COLOR (median of 50; target <= 30 ms)")
    k, b = statistics.median(kept), statistics.median(bare)
    print(f"evaluation of the demo test tracks, run start to end (median of {args.repeat}): "
          f"{k:.2f} s keeping 3 tracks' excerpts and spectrograms, {b:.2f} s keeping none: "
          f"{(k / b - 1) * 100:+.1f} % (target <= +5 %)")
    print(f"  each: keeping {', '.join(f'{v:.2f}' for v in kept)} s; none "
          f"{', '.join(f'{v:.2f}' for v in bare)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
