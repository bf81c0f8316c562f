"""Separation quality against the IRM oracle, on the project's own synthesized multitrack set.

Synthesizes train / val / test tracks (fixed by --seed; the three splits are different pieces),
trains the best shipped separator recipe through `nkd run` for a fixed budget (epochs), scores the
test split with the project's BSS Eval (1 s frames, median over frames, then over tracks, mean
over stems; the run records it), scores the IRM oracle on the same tracks through the same STFT,
and prints as its last line:

    separation: X dB = Y % of the IRM oracle (Z dB) on the test split

--quick: 30 minutes on 2 CPU cores, one torch thread (the README's figure). The full mode (more
and longer tracks, more epochs) is for a GPU. `--set k=v` passes settings to the run (to measure
one change: `--set wiener_iterations=0`); `--experiment` trains another recipe of the registry.
Usage: python bench/separation_quality.py [--quick] [--experiment NAME] [--epochs N]
                                          [--set k=v ...] [--workdir DIR] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.data.cache import AudioCache  # noqa: E402
from core.data.tracks import prepare  # noqa: E402
from core.separation import synth  # noqa: E402
from core.separation.evaluate import bss_scores, loaded, summarize  # noqa: E402
from core.separation.oracle import irm  # noqa: E402
from core.separation.spectral import Stft  # noqa: E402
from core.separation.wiener import wiener  # noqa: E402
from core.store import Store  # noqa: E402

EXPERIMENT = "mask_lstm"  # the best shipped separator recipe
STEMS = ["bass", "drums", "other", "vocals"]
# tracks per split, seconds per track, epochs
MODES = {
    "quick": {"train": 24, "val": 3, "test": 6, "seconds": 12.0, "epochs": 100},
    "full": {"train": 240, "val": 12, "test": 40, "seconds": 12.0, "epochs": 150},
}


def synthesize(data: Path, mode: dict, seed: int) -> None:
    for split in ("train", "val", "test"):
        t0 = time.perf_counter()
        synth.write(data / split, mode[split], mode["seconds"], seed, split)
        print(f"{split}: {mode[split]} tracks of {mode['seconds']:g} s "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)


def train(registry: Path, experiment: str, epochs: int, sets: list[str], quick: bool) -> dict:
    argv = [sys.executable, "-m", "nkd_tui.cli", "--registry", str(registry), "run", experiment,
            "--set", "data=data/train", "--set", "val_data=data/val",
            "--set", "test_data=data/test", "--set", f"epochs={epochs}"]
    if quick:
        argv += ["--set", "threads=1", "--set", "device=cpu"]
    for item in sets:
        argv += ["--set", item]
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, check=False)
    minutes = (time.perf_counter() - t0) / 60
    store = Store(registry.parent / "nkd.db")
    try:
        run = store.latest_run(experiment)
        if done.returncode != 0 or run is None or run["status"] != "finished":
            raise SystemExit(f"training ended {run and run['status']} (exit {done.returncode})")
        test = {m["stem"]: m["value"] for m in store.metrics(run["id"])
                if m["name"] == "sdr" and m["split"] == "test" and not m["track"]}
        val = {m["stem"]: m["value"] for m in store.metrics(run["id"])
               if m["name"] == "sdr" and m["split"] == "val" and not m["track"]}
    finally:
        store.close()
    print(f"trained {run['id']} in {minutes:.1f} min ({run['epoch']} epochs, best epoch "
          f"{run['best_epoch']})", flush=True)
    return {"run": run, "test": test, "val": val}


def oracles(root: Path, cache: Path) -> dict[str, dict[str, float]]:
    """The oracles on the test tracks: the IRM (p = 1), IRM2 (p = 2), and the recipe's
    post-filter fed the true magnitudes, the ceiling of a separator whose estimates are
    Wiener-filtered across the channels (SiSEC 2018's MWF oracle, one pass)."""
    import torch

    stft = Stft.from_params({})
    tracks = prepare(root, "test", tuple(STEMS), stft.sample_rate, AudioCache(cache))

    def filtered(track):
        spec = stft.spec(torch.as_tensor(track.mixture))
        mags = stft.spec(torch.as_tensor(track.stems)).abs()
        return stft.wave(wiener(spec, mags, 1), track.mixture.shape[-1]).numpy()

    ways = {"irm1": lambda t: irm(t, stft, 1.0), "irm2": lambda t: irm(t, stft, 2.0),
            "wiener": filtered}
    return {name: summarize(bss_scores(way, loaded(tracks), STEMS, stft.sample_rate))
            for name, way in ways.items()}


def line(name: str, scores: dict[str, float]) -> str:
    return f"{name:<22}" + "".join(f"{scores.get(s, float('nan')):>9.2f}"
                                    for s in [*STEMS, "mean"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the 30-minute CPU budget")
    ap.add_argument("--experiment", default=EXPERIMENT)
    ap.add_argument("--epochs", type=int, help="the budget (default: the mode's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--seed", type=int, default=0, help="which tracks (and so which split)")
    ap.add_argument("--workdir", type=Path, help="kept afterwards (default: a temporary folder)")
    args = ap.parse_args()
    mode = dict(MODES["quick" if args.quick else "full"])
    start = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="nkd-separation-"))
    work.mkdir(parents=True, exist_ok=True)
    registry = work / "experiments.toml"
    shutil.copy(ROOT / "experiments.toml", registry)
    if not (work / "data" / "test").is_dir():
        synthesize(work / "data", mode, args.seed)
    if args.quick:
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)
    result = train(registry, args.experiment, args.epochs or mode["epochs"], args.set,
                   args.quick)
    found = oracles(work / "data" / "test", work / "cache")
    irm1, irm2, mwf = found["irm1"], found["irm2"], found["wiener"]
    print(f"\n{'SDR (dB)':<22}" + "".join(f"{s:>9}" for s in [*STEMS, "mean"]))
    print(line(f"{args.experiment} val", result["val"]))
    print(line(f"{args.experiment} test", result["test"]))
    print(line("IRM oracle (p=1) test", irm1))
    print(line("IRM2 (p=2) test", irm2))
    print(line("IRM + Wiener test", mwf))
    print(f"settings: {' '.join(args.set) or '(the recipe as shipped)'}; "
          f"{(time.perf_counter() - start) / 60:.1f} min in all; workdir {work}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    x, z = result["test"]["mean"], irm1["mean"]
    print(f"separation: {x:.2f} dB = {100 * x / z:.0f} % of the IRM oracle ({z:.2f} dB) "
          f"on the test split")
    return 0


if __name__ == "__main__":
    sys.exit(main())
