"""BSS Eval's time by what the music is: 12 s stereo 4-stem tracks at 22.05 kHz of three
kinds, nkd's BSS Eval against museval's on each, in the same run.

- noise-like: coloured noises, each channel its own;
- instruments: harmonic notes with decays, panned, with a faint noise floor;
- tonal: a centre-panned kick, a sine bass, a mono-centre voice and a pad, both channels
  identical (references that are numerically rank-deficient).

Targets on the 2-core machine: nkd's slowest kind <= 3x its fastest; >= 30x museval on each
kind. Where the references are rank-deficient museval's ISR, SIR and SAR are dominated by
rounding (not comparable), and nkd says it regularised the filters; elsewhere the largest
difference from museval is printed.

    .venv/bin/python bench/bsseval_content_bench.py [--seconds 12] [--repeats 3] [--no-museval]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.museval_ref import museval_metrics, v4  # noqa: E402
from core.separation.bsseval import bss_eval  # noqa: E402

SR = 22050


def kinds(seconds: float, seed: int = 0) -> dict[str, np.ndarray]:
    """References [4, n, 2] of each kind."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    noise = []
    for a in (0.99, 0.9, 0.5, 0.0):
        x = lfilter([1.0], [1, -a], rng.standard_normal((n, 2)), axis=0)
        noise.append(x / np.abs(x).max())
    beat = (t * 2) % 1
    kick = np.sin(2 * np.pi * 50 * t * np.exp(-beat * 3)) * np.exp(-beat * 12)
    bass = np.sin(2 * np.pi * 55 * t)
    voice = np.sin(2 * np.pi * 220 * t + 3 * np.sin(2 * np.pi * 5 * t))
    voice *= np.sin(np.pi * t / 2) ** 2
    pad = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 3
    tonal = [np.stack([x, x], -1) for x in (kick, bass, voice, pad)]
    instruments = []
    for i, f0 in enumerate((55, 110, 220, 330)):
        notes = np.zeros(n)
        for k in range(int(seconds * 2)):
            start = k * SR // 2
            tt = np.arange(min(n - start, SR // 2)) / SR
            f = f0 * (1 + (k * 7 % 5) / 12)
            notes[start:start + tt.size] = sum(
                np.sin(2 * np.pi * f * h * tt) / h for h in range(1, 6)) * np.exp(-tt * 6)
        pan = 0.3 + 0.15 * i
        instruments.append(np.stack([notes * (1 - pan), notes * pan], -1)
                           + 1e-3 * rng.standard_normal((n, 2)))
    return {"noise-like": np.stack(noise), "instruments": np.stack(instruments),
            "tonal": np.stack(tonal)}


def estimates(refs: np.ndarray, seed: int = 1) -> np.ndarray:
    """Each stem at 0.8, a tenth of the mixture leaking in, and a little noise."""
    rng = np.random.default_rng(seed)
    return 0.8 * refs + 0.1 * refs.sum(0)[None] + 0.01 * rng.standard_normal(refs.shape)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-museval", action="store_true")
    args = ap.parse_args()
    metrics = None if args.no_museval else museval_metrics()
    tracks = kinds(args.seconds)
    bss_eval(tracks["noise-like"][:, :SR * 2], estimates(tracks["noise-like"][:, :SR * 2]),
             window=SR, hop=SR)  # warm-up
    print(f"BSS Eval v4 (images) of one {args.seconds:g} s stereo 4-stem track at 22.05 kHz, "
          f"by kind (median of {args.repeats}; museval once)")
    ours_s = {}
    for kind, refs in tracks.items():
        ests = estimates(refs)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ours = bss_eval(refs, ests, window=SR, hop=SR)
            times.append(time.perf_counter() - t)
        ours_s[kind] = float(np.median(times))
        line = f"  {kind:<12} nkd {ours_s[kind]:6.2f} s"
        if metrics is not None:
            t = time.perf_counter()
            theirs = v4(metrics, refs, ests, SR)
            museval_s = time.perf_counter() - t
            line += (f"  museval {museval_s:6.1f} s  {museval_s / ours_s[kind]:5.0f}x "
                     f"(target >= 30x)")
            if ours.loading:
                line += (f"; filters regularised ({ours.loading:g}): museval's ISR/SIR/SAR "
                         f"not comparable")
            else:
                worst = max(float(np.nanmax(np.abs(getattr(ours, name).numpy() - ref)))
                            for name, ref in zip(("sdr", "isr", "sir", "sar"), theirs,
                                                 strict=True))
                line += f"; largest difference from museval {worst:.1e} dB"
            sdr_diff = float(np.nanmax(np.abs(ours.sdr.numpy() - theirs[0])))
            line += f" (SDR {sdr_diff:.1e} dB)"
        print(line, flush=True)
    spread = max(ours_s.values()) / min(ours_s.values())
    print(f"  slowest kind / fastest kind: {spread:.2f}x (target <= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
