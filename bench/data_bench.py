"""Training data at size: the separation worker's peak memory and time to its first training
step with 4 minutes and with 2 hours of training audio, and the loader's speed against the
model's.

    .venv/bin/python bench/data_bench.py [--small-only]

For each size a fresh workspace gets a synthesized MUSDB18-style set (`nkd data synth
separation --tracks/--seconds`), `nkd data prepare` fills its audio cache, then `nkd run
crnn_long` (the registry's sizes, one epoch) starts detached. The time from the launch to the
run's first step-progress event is the time to first step with the cache warm (measured for the
first run after the data was made and for the next one); once it has
trained STEPS steps (fewer than one epoch of the 4-minute set, so both runs are measured in the
same phase: training) the run is stopped and its worker's peak resident memory is read from its
final status.

Targets: peak memory with 2 hours within 25 % of that with 4 minutes; time to first step
<= 10 s for both. The last table compares training segments per second from the loader alone
(in this process and with DataLoader workers) with what the CRNN consumes on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NKD = [str(Path(sys.executable).parent / "nkd")]
SIZES = {"4 min": (4, 60.0), "2 h": (30, 240.0)}  # training tracks, seconds per track
STEPS = 6


def nkd(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*NKD, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=True)


def events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def one_size(label: str, tracks: int, seconds: float, base: Path) -> dict:
    ws = base / label.replace(" ", "")
    ws.mkdir(parents=True)
    shutil.copy(ROOT / "experiments.toml", ws / "experiments.toml")
    t = time.perf_counter()
    nkd(ws, "data", "synth", "separation", "--tracks", str(tracks), "--seconds", str(seconds))
    synth_s = time.perf_counter() - t
    t = time.perf_counter()
    nkd(ws, "data", "prepare", "musdb_train")
    nkd(ws, "data", "prepare", "musdb_val")
    prepare_s = time.perf_counter() - t
    os.sync()  # the synthesized wavs' writeback is not what a run's start is measured against
    first, peak, steps = launch(ws)  # the first run after the data was made
    again, _, _ = launch(ws)  # and the next one, as a researcher's day goes
    data_bytes = sum(p.stat().st_size for p in (ws / "data").rglob("*.wav"))
    return {
        "label": label, "synth_s": synth_s, "prepare_s": prepare_s, "first_step_s": first,
        "again_s": again, "peak_mb": peak, "steps": steps, "wav_gb": data_bytes / 1e9, "ws": ws,
    }


def launch(ws: Path) -> tuple[float, float | None, int]:
    """Time from `nkd run` to the first training step, the worker's peak memory after STEPS
    steps, and the steps it made."""
    launched = time.time()
    out = nkd(ws, "run", "crnn_long", "--detach", "--set", "epochs=1")
    run_id = out.stdout.split(":", 1)[0].strip()
    run_dir = ws / "runs" / run_id
    first = None
    deadline = time.time() + 300
    while first is None and time.time() < deadline:
        first = next((e for e in events(run_dir) if e["type"] == "progress"), None)
        if any(e["type"] == "status" and e["status"] in ("failed", "finished")
               for e in events(run_dir)):
            break
        time.sleep(0.05)
    if first is None:
        raise SystemExit(f"no training step within 300 s; see {run_dir}/output.log")
    steps = 0
    while steps < STEPS and time.time() < deadline:
        time.sleep(0.1)
        steps = max(e["step"] for e in events(run_dir) if e["type"] == "progress")
    nkd(ws, "stop", run_id)
    final = None
    while final is None and time.time() < deadline + 120:
        final = next((e for e in events(run_dir) if e["type"] == "status"
                      and e["status"] in ("stopped", "finished", "failed", "killed")), None)
        time.sleep(0.2)
    return first["t"] - launched, (final or {}).get("peak_rss_mb"), steps


def throughput(ws: Path) -> list[tuple[str, float]]:
    """Training segments per second: the loader alone (0 and 2 workers) and the CRNN's
    forward and backward at the registry's sizes, on this CPU."""
    import torch

    from core.data.cache import AudioCache
    from core.data.tracks import prepare
    from core.registry import load_registry
    from core.registry.settings import resolve as resolve_settings
    from core.separation.models import build, masks_of
    from core.separation.segments import SegmentSet, StepBatches, loader
    from core.separation.spectral import Stft

    registry = load_registry(ws / "experiments.toml")
    exp = registry.resolve("crnn_long")
    p, _origin = resolve_settings(exp.recipe, exp.params, exp.from_defaults)  # as a run reads them
    stems = tuple(p["stems"])
    stft = Stft.from_params(p)
    tracks = prepare(ws / "data" / "train", "musdb_train", stems, stft.sample_rate,
                     AudioCache(ws / "cache"))
    seg = int(float(p.get("segment_seconds", 2.0)) * stft.sample_rate)
    dataset = SegmentSet(tracks, seg, p, stems, seed=0)
    batch = int(p["batch_size"])
    out = []
    for workers in (0, 2):
        sampler = StepBatches(0, min(len(dataset), 80 * batch), batch)
        it = iter(loader(dataset, workers, torch.device("cpu"), batch_sampler=sampler))
        next(it)  # workers started
        t, n = time.perf_counter(), 0
        for b in it:
            n += b["mix"].shape[0]
        out.append((f"loader, {workers} workers", n / (time.perf_counter() - t)))
    torch.manual_seed(0)
    model = build({"model": p.get("model", "crnn"), "stems": list(stems),
                   "hidden_size": int(p["hidden_size"]), "num_layers": int(p["num_layers"]),
                   "dropout": 0.0, "rhythm_head": False, "stft": stft.as_meta()})
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    norm = dataset.norm(stft, count=16)
    batches = [dataset[(0, i)] for i in range(batch * 4)]
    mix = torch.stack([b["mix"] for b in batches]).view(4, batch, -1)
    target = torch.stack([b["stems"] for b in batches]).view(4, batch, len(stems), -1)
    t = time.perf_counter()
    for i in range(4):
        spec = stft.spec(mix[i])
        masks, _ = masks_of(model, norm(spec.abs())[:, None])
        loss = (masks.float() * spec.abs()[:, None] - stft.spec(target[i]).abs()).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out.append((f"CRNN {p['hidden_size']}/{p['num_layers']} train step (CPU, "
                f"{torch.get_num_threads()} threads)", 4 * batch / (time.perf_counter() - t)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-only", action="store_true", help="the 4-minute set only")
    parser.add_argument("--keep", action="store_true", help="keep the workspaces (printed)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="nkd_data_bench_"))
    try:
        sizes = {k: v for k, v in SIZES.items() if not args.small_only or k == "4 min"}
        rows = [one_size(label, *size, base) for label, size in sizes.items()]
        print(f"\n{'training audio':<16}{'wav GB':>8}{'synth s':>9}{'prepare s':>11}"
              f"{'first step s':>14}{'again s':>9}{'steps':>7}"
              f"{'peak MiB':>10}")
        for r in rows:
            peak = r["peak_mb"] or float("nan")
            print(f"{r['label']:<16}{r['wav_gb']:>8.2f}{r['synth_s']:>9.1f}"
                  f"{r['prepare_s']:>11.1f}{r['first_step_s']:>14.2f}{r['again_s']:>9.2f}{r['steps']:>7}"
                  f"{peak:>10.0f}")
        if len(rows) == 2 and rows[0]["peak_mb"] and rows[1]["peak_mb"]:
            ratio = rows[1]["peak_mb"] / rows[0]["peak_mb"]
            print(f"peak memory, 2 h / 4 min: {ratio:.3f}  (target <= 1.25)")
        worst = max(max(r["first_step_s"], r["again_s"]) for r in rows)
        print(f"time to first step, worst: {worst:.2f} s (target <= 10 s)")
        print(f"\n{'segments per second':<48}{'seg/s':>10}")
        for name, rate in throughput(rows[-1]["ws"]):
            print(f"{name:<48}{rate:>10.1f}")
    finally:
        if args.keep:
            print(f"workspaces kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
