"""What lifts separation toward the IRM oracle (bench/separation_quality.py measures it): the
multichannel Wiener filter, the mask LSTM, the MSE loss, the best epoch chosen by validation
SDR; and the mask_lstm recipe resuming a stopped run exactly, as the others do."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.tracks import Track
from core.separation import synth
from core.separation.evaluate import bss_scores, summarize
from core.separation.models import MaskLSTM, build
from core.separation.oracle import irm
from core.separation.spectral import Stft
from core.separation.wiener import wiener
from core.store import Store
from nkd_tui.cli import main

ROOT = Path(__file__).resolve().parent.parent
STEMS = ["bass", "drums", "other", "vocals"]
TINY = ["--set", "hidden_size=32", "--set", "num_layers=1", "--set", "segment_seconds=1.0",
        "--set", "batch_size=4", "--set", "epochs=3"]


def _track(seconds: float = 3.0) -> Track:
    made = synth.track(2000, seconds, seed=3)
    return Track("t", made["mixture"], np.stack([made[s] for s in STEMS]))


def test_wiener_estimates_sum_to_the_mixture_and_beat_the_ratio_mask() -> None:
    track, stft = _track(), Stft.from_params({})
    spec = stft.spec(torch.as_tensor(track.mixture))
    mags = stft.spec(torch.as_tensor(track.stems)).abs()  # the true magnitudes
    filtered = wiener(spec, mags, iterations=1)
    assert filtered.shape == (4, 2, 512, spec.shape[-1])
    assert torch.allclose(filtered.sum(dim=0), spec, atol=1e-3 * float(spec.abs().max()))
    n = track.mixture.shape[-1]
    by_wiener = summarize(bss_scores(lambda t: stft.wave(filtered, n).numpy(), [track], STEMS,
                                     stft.sample_rate))
    by_mask = summarize(bss_scores(lambda t: irm(t, stft), [track], STEMS, stft.sample_rate))
    assert by_wiener["mean"] > by_mask["mean"], (by_wiener, by_mask)


def test_wiener_on_one_channel_is_the_power_ratio_mask() -> None:
    spec = torch.randn(1, 512, 40, dtype=torch.complex64)
    mags = torch.rand(3, 1, 512, 40)
    want = mags**2 / (mags**2).sum(0, keepdim=True) * spec[None]
    assert torch.allclose(wiener(spec, mags, 1), want, atol=1e-4)


def test_mask_lstm_shapes_and_checkpoint_meta() -> None:
    model = MaskLSTM(stems=4, hidden_size=32, num_layers=2)
    with torch.no_grad():
        masks = model(torch.randn(2, 1, 512, 17))
    assert masks.shape == (2, 4, 512, 17) and 0 <= float(masks.min()) <= float(masks.max()) <= 1
    rebuilt = build({"model": "mask_lstm", "stems": STEMS, "hidden_size": 32, "num_layers": 2})
    assert isinstance(rebuilt, MaskLSTM)


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quality")
    shutil.copy(ROOT / "experiments.toml", root / "experiments.toml")
    reg = str(root / "experiments.toml")
    assert main(["--registry", reg, "data", "synth", "separation", "--tracks", "3",
                 "--seconds", "4"]) == 0
    return root


def _epochs(root: Path, run_id: str) -> list[dict]:
    store = Store(root / "nkd.db")
    try:
        return store.epochs(run_id)
    finally:
        store.close()


def _latest(root: Path, experiment: str) -> dict:
    store = Store(root / "nkd.db")
    try:
        return store.latest_run(experiment)
    finally:
        store.close()


def test_the_best_epoch_is_the_one_with_the_best_validation_sdr(space: Path) -> None:
    reg = str(space / "experiments.toml")
    assert main(["--registry", reg, "run", "mask_lstm", *TINY]) == 0
    run = _latest(space, "mask_lstm")
    epochs = _epochs(space, run["id"])
    sdr = [json.loads(e["extra"])["val_sdr"] for e in epochs]
    assert len(sdr) == 3 and all(np.isfinite(sdr))
    assert run["best_epoch"] == 1 + int(np.argmax(sdr))
    assert run["sdr"] is not None  # scored with its Wiener filter after training


def test_a_stopped_mask_lstm_run_restarts_to_the_same_epochs(space: Path) -> None:
    reg = str(space / "experiments.toml")
    assert main(["--registry", reg, "run", "mask_lstm", *TINY, "--set", "seed=4"]) == 0
    want = [(e["epoch"], e["train_loss"], e["val_loss"], json.loads(e["extra"])["val_sdr"])
            for e in _epochs(space, _latest(space, "mask_lstm")["id"])]
    assert main(["--registry", reg, "run", "mask_lstm", *TINY, "--set", "seed=4",
                 "--detach"]) == 0
    run_id = _latest(space, "mask_lstm")["id"]
    deadline = time.monotonic() + 120
    while len(_epochs(space, run_id)) < 1:
        assert time.monotonic() < deadline, "no epoch"
        time.sleep(0.2)
    assert main(["--registry", reg, "stop", run_id]) == 0
    while _latest(space, "mask_lstm")["status"] != "stopped":
        assert time.monotonic() < deadline, _latest(space, "mask_lstm")["status"]
        time.sleep(0.2)
    if len(_epochs(space, run_id)) < 3:
        assert main(["--registry", reg, "restart", run_id]) == 0
    got = [(e["epoch"], e["train_loss"], e["val_loss"], json.loads(e["extra"])["val_sdr"])
           for e in _epochs(space, run_id)]
    assert [g[0] for g in got] == [1, 2, 3]
    for g, w in zip(got, want, strict=True):
        assert g[1:] == pytest.approx(w[1:], rel=1e-6)


def test_eval_scores_a_model_with_the_inference_settings_it_was_trained_with(
        space: Path, capsys) -> None:
    reg = str(space / "experiments.toml")
    if _latest(space, "mask_lstm") is None:
        assert main(["--registry", reg, "run", "mask_lstm", *TINY]) == 0
    trained = _latest(space, "mask_lstm")
    assert main(["--registry", reg, "eval", trained["id"], "--data", "musdb_val"]) == 0
    kept = Store(space / "nkd.db")
    try:
        run = kept.latest_run("eval_" + trained["id"] + "_on_musdb_val")
        assert run["settings_used"]["wiener_iterations"] == [1, "checkpoint"]
        assert run["settings_used"]["mask_scale"] == [1.0, "checkpoint"]
        log = (Path(run["run_dir"]) / "output.log").read_text()
        assert "wiener_iterations 1 (checkpoint)" in log
        # told otherwise, it scores without the Wiener pass and says so
        assert main(["--registry", reg, "eval", trained["id"], "--data", "musdb_val",
                     "--set", "wiener_iterations=0"]) == 0
        told = kept.latest_run("eval_" + trained["id"] + "_on_musdb_val")
        assert told["id"] != run["id"]
        assert told["settings_used"]["wiener_iterations"] == [0, "experiment"]
    finally:
        kept.close()
    capsys.readouterr()
    assert main(["--registry", reg, "compare", run["id"], told["id"]]) == 0
    out = capsys.readouterr().out
    assert "1 (checkpoint)" in out
    assert main(["--registry", reg, "show", run["id"]]) == 0
    shown = capsys.readouterr().out
    assert any(line.split()[:3] == ["wiener_iterations", "1", "(checkpoint)"]
               for line in shown.splitlines())
    # the registry's [defaults] num_workers = 2 applies beside a GPU; on the CPU the recipe's
    # rule of no loader workers wins, and the run says so
    trained_log = (Path(trained["run_dir"]) / "output.log").read_text()
    assert "num_workers 0 on the CPU (rule; the [defaults] value 2" in trained_log
