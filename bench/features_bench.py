"""Features benchmark: batched torch log-mel vs a per-clip librosa loop, and teacher epoch time.

Prints clips per second of (a) the per-clip librosa loop, (b) the batched torch features in
float32 (the on-the-fly path of augmented batches) and (c) in float64 (the cache's path), measured
in the same run, with the ratios to the loop; then the epoch time of the mark1 teacher on cached
features (a synthesized set, CPU or CUDA, whichever `device=auto` picks).
Target on the 2-core reference machine: batched >= 5x the librosa loop.
Usage: python bench/features_bench.py [--clips 2000] [--epochs 3] [--per-class 40]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.data.features import LogMel, MelSettings  # noqa: E402
from core.noise.synth import clip  # noqa: E402


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def features(clips: int, repeats: int, device: torch.device) -> None:
    import librosa

    labels = ["apartment_noise", "daily_noise", "background_noise", "water", "drilling"]
    base = np.stack([clip(labels[i % 5], i, 1.0) for i in range(200)])
    waves = np.tile(base, (clips // 200 + 1, 1))[:clips]
    loop_n = min(clips, 500)

    def loop() -> None:
        for y in waves[:loop_n]:
            librosa.power_to_db(
                librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=160, n_mels=64)
            )

    mel = LogMel(MelSettings(16000, 512, 160, 64))
    x32 = torch.from_numpy(waves).to(device)
    x64 = x32.double()

    def batched(x: torch.Tensor):
        def run() -> None:
            mel(x)
            if device.type == "cuda":
                torch.cuda.synchronize()

        return run

    loop_rate = loop_n / _best(loop, max(1, repeats - 1))
    rate32 = clips / _best(batched(x32), repeats)
    rate64 = clips / _best(batched(x64), repeats)
    print(
        f"log-mel [1, 64, 101] per 1 s clip, n_fft 512, hop 160 ({torch.get_num_threads()} "
        f"threads, {device}, backend {mel.backend})"
    )
    print(f"  librosa loop, one clip at a time   {loop_rate:9.0f} clips/s")
    print(
        f"  batched torch float32              {rate32:9.0f} clips/s   "
        f"{rate32 / loop_rate:5.1f}x the loop (target >= 5x)"
    )
    print(
        f"  batched torch float64 (cache path) {rate64:9.0f} clips/s   "
        f"{rate64 / loop_rate:5.1f}x the loop"
    )


def teacher_epochs(epochs: int, per_class: int) -> None:
    from core.store import Store
    from nkd_tui.cli import main

    root = Path(tempfile.mkdtemp(prefix="nkd-features-bench-"))
    try:
        shutil.copy(ROOT / "experiments.toml", root / "experiments.toml")
        reg = str(root / "experiments.toml")
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            main(["--registry", reg, "data", "synth", "noise", "--per-class", str(per_class)])
            code = main(
                [
                    "--registry",
                    reg,
                    "run",
                    "mark1",
                    "--set",
                    f"epochs={epochs}",
                    "--set",
                    "patience=0",
                ]
            )
        store = Store(root / "nkd.db")
        run = store.latest_run("mark1")
        rows = store.epochs(run["id"])
        store.close()
        if code != 0 or not rows:
            print(f"  mark1 teacher run failed: {run and run['error']}")
            return
        seconds = [r["seconds"] for r in rows]
        later = seconds[1:] or seconds
        from core.data.noise_index import INDEX_NAME
        from core.registry.workspace import Workspace, index_dir

        index = index_dir(Workspace.at(root / "experiments.toml").cache_dir, "noise") / INDEX_NAME
        clips_train = sum(1 for line in index.read_text().splitlines()[1:] if ",train," in line)
        print(
            f"mark1 teacher on cached features ({run['device']}, {clips_train} training clips, "
            f"batch 16): first epoch {seconds[0]:.2f} s, later epochs median "
            f"{statistics.median(later):.2f} s ({clips_train / statistics.median(later):.0f} "
            f"training clips/s incl. validation)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    features(args.clips, args.repeats, torch.device(args.device))
    teacher_epochs(args.epochs, args.per_class)


if __name__ == "__main__":
    main()
