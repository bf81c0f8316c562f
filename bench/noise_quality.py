"""Does the shipped knowledge distillation make a better student? Measured on a noise set the
project synthesizes to be hard, over several seeds, through `nkd run` as a user would.

The set: three classes (thumping, water, daily_human); each clip is a background bed (hum, fan,
pink noise) with the class's event at a random time and length, at an SNR of -5 to +10 dB, through a
random EQ (tilt and band limits), and in one clip of three a faint event of another class under it
(-10 dB). A labelled folder (class sub-folders) and an unlabelled pool of the same making.

Per seed (the seed of every run; the clips are fixed by --data-seed), each on the same test clips
(the folder's test split):
  linear baseline        logistic regression on the mean and spread of each log-mel band
  mark1 teacher          ViLD-text, three classes
  mark1 student          ViLD-image, on the teacher's soft labels of the pool
  mark1 ensemble         teacher and student probabilities
  kd_teacher             the hybrid-KD line's teacher, three classes
  hybrid KD              mark2.5 as shipped (alpha 0.7, T 4, the early-stopped teacher: ESKD):
                         thumping against the rest
  no-KD twin             the same with alpha 0 (its own cross-entropy alone)
  KD from the last teacher   teacher_checkpoint last (not early-stopped)
  KD, best by accuracy   the shipped one with select_by val_accuracy

and last: `KD gain: X ± Y points over the no-KD twin (N seeds)`, the paired difference of test
accuracy (hybrid KD as shipped minus its twin), mean ± sample standard deviation.

--quick: 3 seeds, 20 minutes on 2 CPU cores with one torch thread (the README's figure).
Usage: python bench/noise_quality.py [--quick] [--seeds N] [--workdir DIR] [--data-seed S]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.data import audio  # noqa: E402
from core.data.noise_index import split_of  # noqa: E402
from core.noise import synth  # noqa: E402
from core.store import Store  # noqa: E402

CLASSES = ["thumping", "water", "daily_human"]
GENERATOR = {"thumping": synth.floor_impact, "water": synth.water, "daily_human": synth.speech}
SR = synth.SR
MODES = {
    "quick": {"seeds": 3, "per_class": 150, "pool": 150, "teacher_epochs": 25,
              "student_epochs": 25, "kd_epochs": 30},
    "full": {"seeds": 5, "per_class": 400, "pool": 600, "teacher_epochs": 60,
             "student_epochs": 60, "kd_epochs": 80},
}
BINARY = '{ thumping = ["thumping"], other = ["water", "daily_human"] }'
THREE = '["thumping", "water", "daily_human"]'


def _eq(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """A random tilt (±6 dB per decade around 1 kHz) and band limits."""
    spectrum = np.fft.rfft(x)
    freqs = np.maximum(np.fft.rfftfreq(x.size, 1 / SR), 20.0)
    tilt = rng.uniform(-0.3, 0.3)
    low, high = rng.uniform(20, 300), rng.uniform(3000, SR / 2)
    gain = (freqs / 1000.0) ** tilt * ((freqs >= low) & (freqs <= high))
    return np.fft.irfft(spectrum * gain, x.size)


def _event(rng: np.random.Generator, label: str, n: int) -> np.ndarray:
    """The class's sound, 0.3 to 1 of the clip long, at a random time in it."""
    length = int(n * rng.uniform(0.3, 1.0))
    sound = GENERATOR[label](rng, length)
    out = np.zeros(n)
    at = int(rng.integers(0, n - length + 1))
    out[at:at + length] = sound / (np.abs(sound).max() + 1e-9)
    return out


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x)) + 1e-12)


def hard_clip(label: str, index: int, seed: int, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(synth._seed("hard", seed, label, index))
    n = int(seconds * SR)
    bed = synth.background(rng, n)
    bed = bed / _rms(bed)
    event = _event(rng, label, n)
    snr = rng.uniform(-5.0, 10.0)
    y = bed + event / _rms(event) * 10 ** (snr / 20)
    if rng.random() < 1 / 3:  # a faint event of another class under it
        other = rng.choice([c for c in CLASSES if c != label])
        faint = _event(rng, str(other), n)
        y = y + faint / _rms(faint) * 10 ** ((snr - 10) / 20)
    y = _eq(rng, y)
    return (0.5 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def write_set(data: Path, per_class: int, pool: int, seed: int) -> None:
    for label in CLASSES:
        for i in range(per_class):
            audio.write(data / "hard" / label / f"{i:04d}.wav", hard_clip(label, i, seed), SR)
    for i in range(pool):
        label = CLASSES[i % len(CLASSES)]
        audio.write(data / "hard_pool" / f"clip_{i:04d}.wav",
                    hard_clip(label, 100_000 + i, seed), SR)


def linear_baseline(data: Path, seed: int) -> float:
    """Logistic regression on the mean and standard deviation of each log-mel band, trained on
    the folder's train split, scored on its test split (the split nkd's recipes use)."""
    import torch

    from core.data.features import LogMel, MelSettings

    logmel = LogMel(MelSettings(sample_rate=SR, n_fft=512, hop_length=160, n_mels=64))
    feats: dict[str, list] = {"train": [], "test": []}
    for k, label in enumerate(CLASSES):
        for path in sorted((data / "hard" / label).glob("*.wav")):
            split = split_of(f"{label}/{path.name}")
            if split not in feats:
                continue
            mel = logmel(torch.as_tensor(audio.read(path, SR))[None]).reshape(64, -1)
            feats[split].append((torch.cat([mel.mean(-1), mel.std(-1)]), k))
    x_tr = torch.stack([f for f, _ in feats["train"]])
    y_tr = torch.tensor([k for _, k in feats["train"]])
    x_te = torch.stack([f for f, _ in feats["test"]])
    y_te = torch.tensor([k for _, k in feats["test"]])
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    torch.manual_seed(seed)
    model = torch.nn.Linear(x_tr.shape[1], len(CLASSES))
    opt = torch.optim.LBFGS(model.parameters(), max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model((x_tr - mean) / std), y_tr) \
            + 1e-3 * model.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((model((x_te - mean) / std).argmax(1) == y_te).float().mean())


def nkd(registry: Path, *args: str) -> None:
    argv = [sys.executable, "-m", "nkd_tui.cli", "--registry", str(registry), *args]
    done = subprocess.run(argv, cwd=ROOT, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"nkd {' '.join(args)}: exit {done.returncode}\n{done.stderr[-2000:]}")


def accuracy(registry: Path, experiment: str, name: str = "accuracy") -> float:
    store = Store(registry.parent / "nkd.db")
    try:
        run = store.latest_run(experiment)
        if run is None or run["status"] != "finished":
            raise SystemExit(f"{experiment}: {run and run['status']}")
        values = [m["value"] for m in store.metrics(run["id"])
                  if m["name"] == name and m["split"] == "test" and not m["track"]]
    finally:
        store.close()
    if not values:
        raise SystemExit(f"{experiment}: no test {name}")
    return values[-1]


def one_seed(registry: Path, mode: dict, seed: int) -> dict[str, float]:
    common = ["--set", f"seed={seed}", "--set", "threads=1", "--set", "device=cpu"]
    teacher = [*common, "--set", "data=./data/hard", "--set", f"classes={THREE}",
               "--set", f"epochs={mode['teacher_epochs']}"]
    out: dict[str, float] = {}
    nkd(registry, "run", "mark1", *teacher)
    out["mark1 teacher (ViLD-text)"] = accuracy(registry, "mark1")
    nkd(registry, "run", "mark1.soft_labels", *common, "--set", "data=./data/hard_pool")
    nkd(registry, "run", "mark1.student", *common, "--set", "data=./data/hard_pool",
        "--set", "val_data=./data/hard", "--set", f"classes={THREE}",
        "--set", f"epochs={mode['student_epochs']}")
    out["mark1 student (ViLD-image)"] = accuracy(registry, "mark1.student")
    nkd(registry, "run", "mark1.ensemble", *common, "--set", "data=./data/hard",
        "--set", f"classes={THREE}")
    out["mark1 ensemble"] = accuracy(registry, "mark1.ensemble")
    nkd(registry, "run", "kd_teacher", *teacher)
    out["kd_teacher"] = accuracy(registry, "kd_teacher")
    kd = [*common, "--set", "data=./data/hard", "--set", f"classes={BINARY}",
          "--set", f"epochs={mode['kd_epochs']}"]
    for row, extra in (("hybrid KD (α 0.7, T 4, ESKD, as shipped)", []),
                       ("no-KD twin (α 0)", ["--set", "alpha=0"]),
                       ("KD from the last teacher", ["--set", "teacher_checkpoint=last"]),
                       ("KD, best epoch by val accuracy", ["--set", "select_by=val_accuracy"])):
        nkd(registry, "run", "mark2.5", *kd, *extra)
        out[row] = accuracy(registry, "mark2.5")
    return out


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the 20-minute CPU budget")
    ap.add_argument("--seeds", type=int, help="how many seeds (default: the mode's)")
    ap.add_argument("--data-seed", type=int, default=0, help="which clips")
    ap.add_argument("--workdir", type=Path, help="kept afterwards (default: a temporary folder)")
    args = ap.parse_args()
    mode = MODES["quick" if args.quick else "full"]
    seeds = args.seeds or mode["seeds"]
    start = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="nkd-noise-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        registry = work / "experiments.toml"
        shutil.copy(ROOT / "experiments.toml", registry)
        if not (work / "data" / "hard").is_dir():
            write_set(work / "data", mode["per_class"], mode["pool"], args.data_seed)
        print(f"data: {mode['per_class']} clips per class of {', '.join(CLASSES)} and a pool "
              f"of {mode['pool']} in {work / 'data'}", flush=True)
        rows: dict[str, list[float]] = {}
        for seed in range(seeds):
            rows.setdefault("linear baseline (log-mel mean+std)", []).append(
                linear_baseline(work / "data", seed))
            for name, value in one_seed(registry, mode, seed).items():
                rows.setdefault(name, []).append(value)
            print(f"seed {seed} done after {(time.perf_counter() - start) / 60:.1f} min",
                  flush=True)
        print(f"\ntest accuracy over {seeds} seeds (mean ± sd); the three-class rows and the "
              f"binary thumping-vs-rest rows (hybrid KD and its variants) are separate tasks")
        for name, values in rows.items():
            print(f"  {name:<42} {spread(values)}   ({', '.join(f'{v:.3f}' for v in values)})")
        gains = [100 * (k - t) for k, t in zip(rows["hybrid KD (α 0.7, T 4, ESKD, as shipped)"],
                                               rows["no-KD twin (α 0)"], strict=True)]
        print(f"minutes: {(time.perf_counter() - start) / 60:.1f}")
        sd = statistics.stdev(gains) if len(gains) > 1 else 0.0
        print(f"KD gain: {statistics.mean(gains):+.1f} ± {sd:.1f} points over the no-KD twin "
              f"({seeds} seeds)")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
