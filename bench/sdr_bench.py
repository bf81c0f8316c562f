"""SDR benchmark: BSS Eval v4 (SDR, ISR, SIR, SAR) of one 30 s stereo 4-stem track at 44.1 kHz,
ours against museval in the same run, with the largest difference of each metric in dB.

Target on the 2-core reference machine: >= 20x faster than museval, no difference above 0.01 dB.
museval's metrics are loaded alone (bench/museval_ref.py: no ffmpeg needed); without museval
installed only our time is printed.
Usage: python bench/sdr_bench.py [--seconds 30] [--repeats 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.museval_ref import museval_metrics, v4  # noqa: E402
from core.separation.bsseval import bss_eval  # noqa: E402

SR = 44100


def track(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four stereo stems (bass-, drum-, voice- and pad-like) and imperfect estimates of them."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    bass = np.sin(2 * np.pi * 55 * t * (1 + 0.02 * np.sin(2 * np.pi * 0.25 * t)))
    drums = lfilter([1.0], [1, -0.97], (rng.random(n) < 4 / SR) * rng.standard_normal(n) * 20)
    drums += 0.3 * rng.standard_normal(n) * np.exp(-((t * 8) % 1) * 30)
    voice = np.sin(2 * np.pi * 220 * t + 3 * np.sin(2 * np.pi * 5 * t)) * (np.sin(np.pi * t) ** 2)
    pad = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 3
    stems = []
    for i, x in enumerate((bass, drums, voice, pad)):
        stereo = np.stack([x, 0.8 * np.roll(x, 7 + i)], -1)  # panned and slightly delayed
        stems.append(stereo + 0.01 * rng.standard_normal((n, 2)))  # each channel's own noise
    refs = np.stack(stems)
    ests = refs.copy()
    ests[0] = 0.8 * lfilter([1, 0.4], [1], refs[0], axis=0) + 0.05 * refs[1]
    ests[1] = refs[1] + 0.1 * rng.standard_normal(refs[1].shape)
    ests[2] = 1.2 * refs[2] + 0.1 * refs[3] + 0.02 * rng.standard_normal(refs[2].shape)
    ests[3] = lfilter([0.3, 0.3, 0.2], [1, -0.1], refs[3], axis=0) + 0.05 * refs[0]
    return refs, ests


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    refs, ests = track(args.seconds)
    bss_eval(refs[:, : SR * 3], ests[:, : SR * 3], device=args.device)  # warm-up
    ours_times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ours = bss_eval(refs, ests, device=args.device)
        ours_times.append(time.perf_counter() - t)
    ours_s = statistics.median(ours_times)
    print(
        f"BSS Eval v4 (images), one {args.seconds:g} s stereo 4-stem track at 44.1 kHz, "
        f"1 s windows and hops"
    )
    print(
        f"  ours ({args.device})   {ours_s:7.2f} s per track (median of {args.repeats}; "
        f"best {min(ours_times):.2f} s)"
    )
    metrics = museval_metrics()
    if metrics is None:
        print("  museval is not installed; no comparison")
        return
    t = time.perf_counter()
    theirs = v4(metrics, refs, ests, SR)
    museval_s = time.perf_counter() - t
    print(f"  museval      {museval_s:7.2f} s per track")
    print(f"  speed-up     {museval_s / ours_s:7.1f}x (our median; target >= 20x)")
    for name, ref in zip(("SDR", "ISR", "SIR", "SAR"), theirs, strict=True):
        ours_v = getattr(ours, name.lower()).cpu().numpy()
        diff = np.nanmax(np.abs(ours_v - ref))
        print(
            f"  {name}: largest difference {diff:.2e} dB over {ref.size} values "
            f"(median per stem: {', '.join(f'{v:.2f}' for v in np.nanmedian(ours_v, 1))})"
        )


if __name__ == "__main__":
    main()
