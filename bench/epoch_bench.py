"""An epoch through `nkd run` against a hand-written PyTorch loop of the same model, batch and
data, side by side in one run.

A workspace gets a synthesized MUSDB18-style set (`nkd data synth separation`); `nkd run`
trains the registry's `crnn_long` on it (MaskLSTM, one thread: `--set model=mask_lstm
threads=1`) for a few epochs, and each epoch's own training time (its `train_seconds`) is
read from the run's events. The hand-written loop then trains a freshly built model of the same
settings on the same number of segments in the same batches, read once into memory beforehand,
with the same loss and optimiser, one thread; the median epoch of each is compared (the first
epoch of each left out: it warms up). A third figure is the loader alone: one epoch of
segments read from the prepared-audio cache.

    .venv/bin/python bench/epoch_bench.py [--tracks 4] [--seconds 30] [--epochs 4]

Target: nkd's epoch <= 1.05x the hand-written loop's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NKD = str(Path(sys.executable).parent / "nkd")
SETTINGS = ("model=mask_lstm", "threads=1", "batch_size=8", "hidden_size=256", "num_layers=2",
            "remix_prob=0.5")


def nkd(ws: Path, *args: str) -> str:
    return subprocess.run([NKD, *args], cwd=ws, capture_output=True, text=True,
                          check=True).stdout


def through_nkd(ws: Path, epochs: int) -> tuple[list[float], dict]:
    """Each epoch's training seconds of a foreground `nkd run`, and its resolved settings."""
    sets = [x for s in (*SETTINGS, f"epochs={epochs}", "patience=1000") for x in ("--set", s)]
    nkd(ws, "run", "crnn_long", *sets)
    run = max((ws / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    out = []
    for line in (run / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "epoch":
            out.append(float(event["train_seconds"]))
    return out, json.loads((run / "config.json").read_text())["settings"]


def by_hand(ws: Path, p: dict, epochs: int) -> tuple[list[float], float]:
    """Each epoch's seconds of a plain loop over in-memory batches; and one epoch of the
    loader alone, read from the cache."""
    import torch

    from core.data.cache import AudioCache
    from core.data.tracks import prepare
    from core.separation.models import build, masks_of
    from core.separation.segments import SegmentSet
    from core.separation.spectral import Stft

    torch.set_num_threads(1)
    stems = tuple(p["stems"])
    stft = Stft.from_params(p)
    tracks = prepare(ws / "data" / "train", "musdb_train", stems, stft.sample_rate,
                     AudioCache(ws / "cache"))
    seg = int(float(p["segment_seconds"]) * stft.sample_rate)
    data = SegmentSet(tracks, seg, p, stems, seed=int(p["seed"]))
    t = time.perf_counter()
    items = [data[(0, i)] for i in range(len(data))]
    loading = time.perf_counter() - t
    batch = int(p["batch_size"])
    batches = [(torch.stack([x["mix"] for x in items[i:i + batch]]),
                torch.stack([x["stems"] for x in items[i:i + batch]]))
               for i in range(0, len(items), batch)]
    torch.manual_seed(0)
    model = build({"model": p["model"], "stems": list(stems), "hidden_size": int(p["hidden_size"]),
                   "num_layers": int(p["num_layers"]), "dropout": 0.0, "rhythm_head": False,
                   "stft": stft.as_meta()})
    opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]))
    norm = data.norm(stft)
    times = []
    for _ in range(epochs):
        model.train()
        t = time.perf_counter()
        for mix, target in batches:
            spec = stft.spec(mix)
            mag = spec.abs()
            masks, _ = masks_of(model, norm(mag)[:, None])
            loss = (masks.float() * mag[:, None] - stft.spec(target).abs()).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return times, loading


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    ws = Path(tempfile.mkdtemp(prefix="nkd_epoch_bench_"))
    try:
        shutil.copy(ROOT / "experiments.toml", ws / "experiments.toml")
        nkd(ws, "data", "synth", "separation", "--tracks", str(args.tracks), "--seconds",
            str(args.seconds))
        nkd(ws, "data", "prepare", "musdb_train")
        nkd(ws, "data", "prepare", "musdb_val")
        os.sync()
        ours, settings = through_nkd(ws, args.epochs)
        hand, loading = by_hand(ws, settings, args.epochs)
        a, b = statistics.median(ours[1:]), statistics.median(hand[1:])
        print(f"one epoch, MaskLSTM {SETTINGS[3].split('=')[1]}/{SETTINGS[4].split('=')[1]}, "
              f"batch 8, one thread, {args.tracks} tracks of {args.seconds:g} s (median of "
              f"epochs 2-{args.epochs}):")
        print(f"  nkd run            {a:6.2f} s")
        print(f"  hand-written loop  {b:6.2f} s   nkd / loop {a / b:.3f}x (target <= 1.05x)")
        print(f"  the loader alone, one epoch from the cache: {loading:.2f} s")
    finally:
        shutil.rmtree(ws, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
