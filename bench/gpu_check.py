"""The GPU check, in one go on a machine with one NVIDIA GPU (well under 8 minutes on an H100 or
H200). It prints one table:

* the `gpu`-marked tests and every CUDA test of the suite;
* training throughput of the mark1 teacher and of the U-Net CRNN at the registry's sizes, run as
  `nkd run` would (samples per second over the training part of the epochs after the first, GPU
  utilisation sampled with NVML while the run trains, the GPU memory its worker held at most,
  and the time from the launch to the first training step);
* BSS Eval of a 4-minute stereo track on the GPU against the CPU (time, largest difference);
* the machine each run's worker recorded (torch, CUDA, cuDNN, driver, GPU models);
* suspend and resume on CUDA, compared bit for bit: mark1 run straight, run straight again (is
  CUDA deterministic here at all?), and run with a suspend inside an epoch and a resume.

    python bench/gpu_check.py

It needs the project importable by that interpreter (on a machine without a registry to install
from: `pip install --no-deps -e .` and wheels of what the image lacks, e.g. soundfile, soxr,
sqlite-utils, plotext, textual) and `nvidia-ml-py` for the utilisation column. Without a CUDA
device it says so in one line and exits 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRAINED = {"mark1": 4, "unet_crnn_rhythm": 3}  # experiment -> epochs
rows: list[tuple[str, str]] = []


def say(what: str, result: str) -> None:
    rows.append((what, result))
    print(f"  {what}: {result}", flush=True)


def nkd(ws: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", "import sys; from nkd_tui.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", *args], cwd=ws, env=env,
                          capture_output=True, text=True, check=check)


def events(run_dir: Path) -> list[dict]:
    out = []
    path = run_dir / "events.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def final(run_dir: Path, timeout: float) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for e in events(run_dir):
            if e["type"] == "status" and e["status"] in ("finished", "failed", "stopped",
                                                          "killed", "suspended"):
                return e
        time.sleep(0.2)
    raise SystemExit(f"{run_dir.name}: no final status within {timeout:.0f} s")


class Sampler(threading.Thread):
    """NVML every 0.2 s: GPU 0's utilisation while a run trains and the most memory any
    process held on it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.util: list[float] = []
        self.peak_mib = 0.0
        self.stop = threading.Event()
        self.training = threading.Event()

    def run(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            h = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - no NVML: the columns say so
            return
        while not self.stop.is_set():
            if self.training.is_set():
                self.util.append(float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu))
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                self.peak_mib = max(self.peak_mib, (p.usedGpuMemory or 0) / 2**20)
            time.sleep(0.2)


def launch(ws: Path, exp: str, *sets: str) -> tuple[Path, float]:
    launched = time.time()
    out = nkd(ws, "run", exp, "--detach", "--set", "device=cuda", *sets)
    run_id = out.stdout.split(":", 1)[0].strip()
    return ws / "runs" / run_id, launched


def throughput(ws: Path, exp: str, epochs: int) -> None:
    from core.registry import load_registry

    batch = int(load_registry(ws / "experiments.toml").resolve(exp).params["batch_size"])
    sampler = Sampler()
    sampler.start()
    run_dir, launched = launch(ws, exp, "--set", f"epochs={epochs}", "--set", "patience=0")
    first = None
    while first is None:
        evs = events(run_dir)
        first = next((e for e in evs if e["type"] == "progress"), None)
        if any(e["type"] == "status" and e["status"] == "failed" for e in evs):
            raise SystemExit(f"{exp} failed: see {run_dir}/output.log")
        time.sleep(0.05)
    sampler.training.set()
    end = final(run_dir, 300)
    sampler.stop.set()
    evs = events(run_dir)
    steps = max((e.get("steps") or 0) for e in evs if e["type"] == "progress")
    timed = [e for e in evs if e["type"] == "epoch" and e["epoch"] > 1]
    seconds = sum(e.get("train_seconds", e["seconds"]) for e in timed)
    rate = len(timed) * steps * batch / seconds if seconds else float("nan")
    util = sum(sampler.util) / len(sampler.util) if sampler.util else float("nan")
    say(f"{exp} ({end['status']}, batch {batch})",
        f"{rate:,.0f} samples/s, GPU util {util:.0f} %, peak GPU memory "
        f"{sampler.peak_mib:,.0f} MiB, first step {first['t'] - launched:.1f} s after launch")
    from core.runs.machine import last
    from core.runs.provenance import machine_text

    recorded = last(run_dir)  # the worker's record: torch, CUDA, cuDNN, driver, GPU models
    say(f"{exp}: the machine its worker recorded",
        machine_text(recorded) if recorded else "NOT RECORDED")


def bsseval() -> None:
    import numpy as np
    import torch

    from core.separation.bsseval import bss_eval

    rng = np.random.default_rng(0)
    n = 240 * 44100
    refs = rng.standard_normal((4, n, 2)).astype(np.float64) * 0.1
    est = refs + 0.05 * rng.standard_normal(refs.shape)
    t = time.perf_counter()
    cpu = bss_eval(refs, est)
    cpu_s = time.perf_counter() - t
    bss_eval(refs[:, : 10 * 44100], est[:, : 10 * 44100], device="cuda")  # warm-up
    torch.cuda.synchronize()
    t = time.perf_counter()
    gpu = bss_eval(refs, est, device="cuda")
    torch.cuda.synchronize()
    gpu_s = time.perf_counter() - t
    diff = max(float(np.nanmax(np.abs(getattr(cpu, k).numpy() - getattr(gpu, k).cpu().numpy())))
               for k in ("sdr", "isr", "sir", "sar"))
    say("BSS Eval, 4 min stereo, 4 stems", f"GPU {gpu_s:.2f} s, CPU {cpu_s:.2f} s "
        f"({cpu_s / gpu_s:.1f}x), largest difference {diff:.1e} dB")


def weights(run_dir: Path) -> dict:
    from core.training import checkpoint

    ckpt = run_dir.parent.parent / "checkpoints" / run_dir.name
    return {p.name: checkpoint.load(p)["state_dict"] for p in sorted(ckpt.glob("teacher_*.pth"))}


def same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(
        a[f].keys() == b[f].keys() and all(torch.equal(a[f][k], b[f][k]) for k in a[f]) for f in a)


def suspend_resume(ws: Path) -> None:
    sets = ("--set", "epochs=3", "--set", "patience=0")
    straight, _ = launch(ws, "mark1", *sets)
    final(straight, 300)
    again, _ = launch(ws, "mark1", *sets)
    final(again, 300)
    broken, _ = launch(ws, "mark1", *sets)
    while not any(e["type"] == "progress" and e["epoch"] == 2 for e in events(broken)):
        time.sleep(0.02)
    nkd(ws, "suspend", broken.name)
    suspended = final(broken, 120)
    state = [e for e in events(broken) if e["type"] == "status"]
    nkd(ws, "resume", broken.name)
    deadline = time.time() + 300
    while time.time() < deadline and not any(
        e["type"] == "status" and e["status"] == "finished" for e in events(broken)
    ):
        time.sleep(0.2)
    base = weights(straight)
    say("CUDA determinism: mark1 straight, twice", "identical" if same(base, weights(again))
        else "differ (nondeterministic kernels: the resume row cannot be bit-identical)")
    say(f"suspend ({suspended['status']}, {len(state)} status events) and resume on CUDA",
        "bit-identical weights" if same(base, weights(broken)) else "weights differ")


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; this check is for a machine with an NVIDIA GPU")
        return 0
    print(f"gpu_check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-k", "gpu or cuda or nvml", "tests"], cwd=ROOT, capture_output=True, text=True)
    say("gpu and CUDA tests", (tests.stdout.strip().splitlines() or ["no output"])[-1])
    base = Path(tempfile.mkdtemp(prefix="nkd_gpu_check_"))
    try:
        shutil.copy(ROOT / "experiments.toml", base / "experiments.toml")
        nkd(base, "data", "synth", "noise")
        nkd(base, "data", "synth", "separation", "--tracks", "16", "--seconds", "30")
        for exp, epochs in TRAINED.items():
            throughput(base, exp, epochs)
        bsseval()
        suspend_resume(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    width = max(len(w) for w, _ in rows)
    print(f"\n{'check':<{width}}  result")
    for what, result in rows:
        print(f"{what:<{width}}  {result}")
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
