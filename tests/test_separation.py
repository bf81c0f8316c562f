"""Separation: models, STFT, data checks, training through real workers, fine-tune, freezing,
blends, gain-corrected evaluation and lineage, on a small synthesized multitrack set."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data import tracks as data
from core.data.cache import AudioCache
from core.errors import RunError
from core.separation.blend import average
from core.separation.models import CRNN, UNetCRNN, focal_loss
from core.separation.spectral import Stft
from core.store import Store
from core.training import checkpoint
from nkd_tui.cli import main

ROOT = Path(__file__).resolve().parent.parent
SMALL = [
    "--set",
    "hidden_size=32",
    "--set",
    "num_layers=1",
    "--set",
    "segment_seconds=1.0",
    "--set",
    "device=cpu",
    "--set",
    "threads=1",
]


# ── units ───────────────────────────────────────────────────────────────────────────────────


def test_model_shapes() -> None:
    x = torch.randn(2, 1, 512, 40)
    torch.set_grad_enabled(False)
    assert CRNN(4, 32, 2)(x).shape == (2, 4, 512, 40)
    masks, onsets = UNetCRNN(4, 32, 1, rhythm_head=True)(x)
    assert masks.shape == (2, 4, 512, 40) and onsets.shape == (2, 40)
    assert 0 <= float(masks.min()) and float(masks.max()) <= 1
    masks, onsets = UNetCRNN(4, 32, 1, rhythm_head=False)(x)
    torch.set_grad_enabled(True)
    assert onsets is None


def test_focal_loss_down_weights_easy_frames() -> None:
    target = torch.tensor([1.0, 0.0])
    easy, hard = torch.tensor([4.0, -4.0]), torch.tensor([-1.0, 1.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert focal_loss(easy, target) / bce(easy, target) < focal_loss(hard, target) / bce(
        hard, target
    )


def test_stft_drops_and_restores_the_nyquist_bin() -> None:
    stft = Stft(22050, 1024, 256)
    t = torch.arange(22050) / 22050
    wave = torch.sin(2 * torch.pi * 440 * t)[None].repeat(2, 1)
    spec = stft.spec(wave)
    assert spec.shape == (2, 512, 22050 // 256 + 1)
    back = stft.wave(spec, wave.shape[-1])
    assert torch.allclose(back[:, 1024:-1024], wave[:, 1024:-1024], atol=1e-4)
    with pytest.raises(ValueError, match="n_fft 2048 gives 1025 bins"):
        Stft(22050, 2048, 256).spec(wave)


def _track(folder: Path, stems: list[str], n: int = 2205) -> None:
    from core.data import audio

    folder.mkdir(parents=True)
    for name in ["mixture", *stems]:
        audio.write(folder / f"{name}.wav", np.zeros((2, n), np.float32) + 0.01, 22050)


def test_stem_files_are_checked_by_track_and_name(tmp_path: Path) -> None:
    stems = ("bass", "drums", "other", "vocals")
    _track(tmp_path / "ok" / "song_a", list(stems))
    assert len(data.load(tmp_path / "ok", "musdb", stems, 22050, AudioCache(tmp_path))) == 1
    _track(tmp_path / "missing" / "song_b", ["bass", "drums", "other"])
    with pytest.raises(RunError, match="track 'song_b' is missing vocals.wav"):
        data.load(tmp_path / "missing", "musdb", stems, 22050, AudioCache(tmp_path))
    _track(tmp_path / "extra" / "song_c", [*stems, "piano"])
    with pytest.raises(RunError, match="track 'song_c' has unexpected stem file.*piano.wav"):
        data.load(tmp_path / "extra", "musdb", stems, 22050, AudioCache(tmp_path))
    _track(tmp_path / "short" / "song_d", list(stems))
    from core.data import audio

    audio.write(tmp_path / "short" / "song_d" / "drums.wav", np.zeros((2, 100), np.float32), 22050)
    with pytest.raises(RunError, match="song_d': stems differ in length"):
        data.load(tmp_path / "short", "musdb", stems, 22050, AudioCache(tmp_path))


def test_blend_arithmetic_and_refusals() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    same = average([("a", a), ("a2", {k: v.clone() for k, v in a.items()})], [0.5, 0.5])
    assert torch.equal(same["w"], a["w"])  # equal checkpoints blend to themselves
    mixed = average([("a", a), ("b", b)], [0.8, 0.2])
    assert torch.allclose(mixed["w"], torch.tensor([1.4, 2.8])) and int(mixed["n"]) == 3
    with pytest.raises(RunError, match=r"sum to 1.1, not 1"):
        average([("a", a), ("b", b)], [0.9, 0.2])
    with pytest.raises(RunError, match=r"key 'w': shape \(2,\) in a but \(3,\) in c"):
        average([("a", a), ("c", {"w": torch.zeros(3), "n": torch.tensor(1)})], [0.5, 0.5])
    with pytest.raises(RunError, match="key 'n' is in a but not in d"):
        average([("a", a), ("d", {"w": torch.zeros(2)})], [0.5, 0.5])


# ── through real workers ────────────────────────────────────────────────────────────────────


class Space:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = root / "experiments.toml"

    def nkd(self, *args: str) -> int:
        return main(["--registry", str(self.registry), *args])

    def run(self, name: str) -> dict:
        store = Store(self.root / "nkd.db")
        try:
            return store.latest_run(name)
        finally:
            store.close()

    def best(self, name: str) -> Path:
        return self.root / "checkpoints" / self.run(name)["id"] / "best_separator_model.pth"


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Space]:
    root = tmp_path_factory.mktemp("sep")
    shutil.copy(ROOT / "experiments.toml", root / "experiments.toml")
    s = Space(root)
    assert s.nkd("data", "synth", "separation", "--tracks", "3", "--seconds", "4") == 0
    steps = [
        ("crnn_long", ["--set", "epochs=3", "--set", "lr=2e-3"]),
        ("crnn_large_finetune", ["--set", "epochs=1"]),
        ("crnn_large_finetune_ver1", ["--set", "epochs=1"]),
        ("crnn_large_final_tune", ["--set", "epochs=1"]),
        (
            "retrain_frozen_output",
            ["--set", "epochs=1", "--set", "pretrained=crnn_large_finetune_ver1"],
        ),
    ]
    for name, extra in steps:
        code = s.nkd("run", name, *SMALL, *extra)
        assert code == 0, f"{name}: {s.run(name)['error']}"
    assert s.nkd("run", "crnn_large_merged") == 0, s.run("crnn_large_merged")["error"]
    assert (
        s.nkd("run", "crnn_large_merged_0_8_0_2_gain", "--set", "pretrained=crnn_large_merged") == 0
    )
    yield s


def test_training_lowers_validation_loss_and_scores_every_stem(space: Space) -> None:
    run = space.run("crnn_long")
    store = Store(space.root / "nkd.db")
    epochs = store.epochs(run["id"])
    metrics = store.metrics(run["id"])
    store.close()
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    stems = {m["stem"] for m in metrics if m["name"] == "sdr" and m["track"] is None}
    assert stems == {"bass", "drums", "other", "vocals", "mean"}
    assert {m["definition"] for m in metrics if m["name"] in ("sdr", "sar")} == {
        "bsseval_v4_images"
    }
    assert {m["definition"] for m in metrics if m["name"] == "si_sdr"} == {"si_sdr"}
    assert run["sdr"] is not None
    csv_text = (Path(run["run_dir"]) / "eval_result_vocals.csv").read_text().splitlines()
    assert csv_text[0] == "track,sdr,isr,sir,sar,si_sdr" and len(csv_text) == 3  # 2 val tracks
    meta = checkpoint.load(space.best("crnn_long"))["meta"]
    assert meta["stft"] == {"sample_rate": 22050, "n_fft": 1024, "hop_length": 256}
    assert meta["norm_mean"].shape == (512,)
    out = (Path(run["run_dir"]) / "output.log").read_text()
    assert "threads: 1 (the registry's `threads`)" in out
    # what the worker cost, and where it was inside its epochs, are on the run's row
    assert run["peak_rss_mb"] > 100 and run["cpu_s"] > 0
    assert run["steps"] >= 1 and run["step"] >= 1 and run["step_at"] is not None
    # the tracks were decoded once, into the workspace's cache, never into the data folders
    prepared = list((space.root / "cache" / "audio").rglob("*.npy"))
    assert len(prepared) == 5 * (3 + 2 + 2)  # mixture and stems of 3 train, 2 val, 2 test tracks
    assert not any((space.root / "data").rglob("*.npy"))
    # and its share of that cache is on its row: the entries it used (its train and validation
    # tracks; the test tracks were prepared for another run), named by one key
    sizes = sorted(p.stat().st_size for p in prepared)
    assert sum(sizes[:25]) <= run["cache_bytes"] <= sum(sizes[-25:])
    assert run["cache_key"] and len(run["cache_key"]) == 16


def test_data_prepare_fills_the_cache_once_and_names_unknown_sources(space: Space,
                                                                     capsys) -> None:
    before = sorted((space.root / "cache" / "audio").rglob("*.npy"))
    assert space.nkd("data", "prepare", "musdb_train") == 0
    assert "musdb_train: 3 tracks" in capsys.readouterr().out
    assert sorted((space.root / "cache" / "audio").rglob("*.npy")) == before  # all there
    assert space.nkd("data", "prepare", "musdb_trian") == 2
    assert "no data source 'musdb_trian'" in capsys.readouterr().err


def test_fine_tune_starts_from_its_parent(space: Space) -> None:
    out = (Path(space.run("crnn_large_finetune_ver1")["run_dir"]) / "output.log").read_text()
    assert "fine-tuning from" in out and "crnn_large_finetune_" in out


def test_the_same_settings_train_the_same_model(space: Space) -> None:
    runs = []
    for _ in range(2):
        assert space.nkd("run", "unet_crnn_rhythm", *SMALL, "--set", "epochs=1") == 0
        runs.append(space.run("unet_crnn_rhythm"))
    assert runs[0]["id"] != runs[1]["id"]
    store = Store(space.root / "nkd.db")
    try:
        losses = [[(e["train_loss"], e["val_loss"]) for e in store.epochs(r["id"])] for r in runs]
    finally:
        store.close()
    assert losses[0] and losses[0] == losses[1]  # seeded before the model is built


def test_frozen_layers_stay_bit_identical(space: Space) -> None:
    before = checkpoint.load(space.best("crnn_large_finetune_ver1"))["state_dict"]
    after = checkpoint.load(space.best("retrain_frozen_output"))["state_dict"]
    frozen = [k for k in before if k.startswith(("encoder", "lstm"))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["decoder.weight"], after["decoder.weight"])


def test_blend_records_lineage_and_its_evaluation(space: Space) -> None:
    blend_run = space.run("crnn_large_merged")
    payload = checkpoint.load(space.best("crnn_large_merged"))
    a = checkpoint.load(space.best("crnn_large_finetune_ver1"))["state_dict"]
    b = checkpoint.load(space.best("crnn_large_final_tune"))["state_dict"]
    key = "decoder.weight"
    assert torch.allclose(payload["state_dict"][key], 0.5 * a[key] + 0.5 * b[key], atol=1e-6)
    store = Store(space.root / "nkd.db")
    rows = {
        (r["parent"].split("/")[0], r["relation"], r["weight"])
        for r in store.lineage()
        if r["child"].startswith(blend_run["id"])
    }
    store.close()
    assert rows == {
        (space.run("crnn_large_finetune_ver1")["id"], "blend", 0.5),
        (space.run("crnn_large_final_tune")["id"], "blend", 0.5),
    }
    assert blend_run["sdr"] is not None  # evaluated as part of the blend run


def test_gain_corrected_evaluation(space: Space) -> None:
    """The gains are fitted on the validation tracks only and applied unchanged to the test
    tracks; every test SDR says where its gains came from, the test mean has its own column."""
    run = space.run("crnn_large_merged_0_8_0_2_gain")
    store = Store(space.root / "nkd.db")
    metrics = store.metrics(run["id"])
    gains = [m for m in metrics if m["name"] == "gain"]
    assert {g["stem"] for g in gains} == {"bass", "drums", "other", "vocals"}
    assert all(g["value"] > 0 for g in gains)
    assert {g["split"] for g in gains} == {"val"}  # fitted on val: there is no way to fit on test
    sdr = [m for m in metrics if m["name"] == "sdr"]
    assert {m["split"] for m in sdr} == {"val", "test"}
    assert {m["gains"] for m in sdr} == {"val:musdb_val"}
    test_tracks = {m["track"] for m in sdr if m["split"] == "test" and m["track"]}
    val_tracks = {m["track"] for m in sdr if m["split"] == "val" and m["track"]}
    assert test_tracks and val_tracks and not test_tracks & val_tracks
    mean = {m["split"]: m["value"] for m in sdr if m["stem"] == "mean"}
    assert run["sdr"] == mean["val"] and run["test_sdr"] == mean["test"]
    assert (Path(run["run_dir"]) / "eval_result_vocals_test.csv").is_file()

    # the same checkpoint without the correction: other test numbers, and they say "none"
    assert space.nkd("run", "crnn_large_merged_0_8_0_2_gain", "--set", "gain_correction=false",
                     "--set", "pretrained=crnn_large_merged") == 0
    plain = space.run("crnn_large_merged_0_8_0_2_gain")
    plain_metrics = store.metrics(plain["id"])
    store.close()
    assert {m["gains"] for m in plain_metrics if m["name"] == "sdr"} == {"none"}
    assert not [m for m in plain_metrics if m["name"] == "gain"]
    assert plain["test_sdr"] != run["test_sdr"]


def test_blend_command_checks_weights_and_warns_about_strangers(space: Space, capsys) -> None:
    assert space.nkd("blend", "crnn_long", "crnn_large_finetune", "--weights", "0.9,0.2") == 2
    assert (
        "weights 0.9,0.2 must be positive and sum to 1 (they sum to 1.1)" in capsys.readouterr().err
    )
    assert space.nkd("blend", "crnn_long", "crnn_large_finetune", "--weights", "0.5,0.5") == 0
    run = space.run("blend_crnn_long_0_5_crnn_large_finetune_0_5")
    out = (Path(run["run_dir"]) / "output.log").read_text()
    assert "share no ancestor" in out and run["sdr"] is not None


def test_different_architectures_are_refused_by_name() -> None:
    from core.separation.blend import check_compatible

    base = {"model": "crnn", "stems": ["bass"], "hidden_size": 256, "num_layers": 3}
    with pytest.raises(RunError, match="hidden_size is 256 in a.pth but 512 in b.pth"):
        check_compatible([("a.pth", base), ("b.pth", {**base, "hidden_size": 512})])


def test_lineage_reads_as_the_history(space: Space, capsys) -> None:
    capsys.readouterr()
    assert space.nkd("lineage", "crnn_large_merged_0_8_0_2_gain") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(space.run("crnn_large_finetune")["id"])
    for piece in (
        "pretrained → crnn_large_finetune_ver1_",
        "blend 0.5 → crnn_large_merged_",
        "evaluated → crnn_large_merged_0_8_0_2_gain_",
        "◀",
        "SDR",
    ):
        assert piece in out


def test_a_stopped_run_restarts_from_its_last_epoch(space: Space) -> None:
    import time

    from core.runs.status import resolve_run

    assert space.nkd("run", "crnn_long", *SMALL, "--set", "epochs=4", "--detach") == 0
    store = Store(space.root / "nkd.db")
    try:
        run_id = resolve_run(store, "crnn_long")
        deadline = time.monotonic() + 120
        while len(store.epochs(run_id)) < 1:
            assert time.monotonic() < deadline, "no epoch"
            time.sleep(0.2)
        assert space.nkd("stop", run_id) == 0
        while store.get_run(run_id)["status"] != "stopped":
            assert time.monotonic() < deadline, store.get_run(run_id)["status"]
            time.sleep(0.2)
        done = len(store.epochs(run_id))
        assert done < 4
        assert space.nkd("restart", run_id) == 0  # follows it to the end
        row = store.get_run(run_id)
        assert row["status"] == "finished", row["error"]
        assert [e["epoch"] for e in store.epochs(run_id)] == [1, 2, 3, 4]
        log = (Path(row["run_dir"]) / "output.log").read_text()
        assert f"resumed separator after epoch {done}" in log
    finally:
        store.close()
    assert space.nkd("restart", run_id) == 2  # finished: nothing to restart


def test_references_say_which_run(space: Space, capsys) -> None:
    """best:EXP takes the best-scored finished run, EXP@key=value the newest with those
    settings; the run each resolved to is said in the log and kept in events.jsonl; no match
    fails the run with one line."""
    store = Store(space.root / "nkd.db")
    finished = [store.get_run(r) for (r,) in store.conn.execute(
        "SELECT id FROM runs WHERE experiment = 'crnn_long' AND status = 'finished' "
        "ORDER BY created_at DESC").fetchall()]
    store.close()
    best = max((r for r in finished if r["sdr"] is not None), key=lambda r: r["sdr"])["id"]
    newest = next(r["id"] for r in finished  # newest first
                  if r["params"].get("lr") == 2e-3 and r["params"].get("hidden_size") == 32)
    for ref, expected in (("best:crnn_long", best), ("crnn_long@lr=0.002", newest),
                          ("crnn_long@lr=2e-3@hidden_size=32", newest)):
        assert space.nkd("run", "crnn_large_finetune", *SMALL, "--set", "epochs=1",
                         "--set", f"pretrained={ref}") == 0
        run = space.run("crnn_large_finetune")
        log = (Path(run["run_dir"]) / "output.log").read_text()
        assert f"pretrained: {ref} -> run {expected}" in log
        events = (Path(run["run_dir"]) / "events.jsonl").read_text()
        assert f'"run": "{expected}"' in events and '"type": "reference"' in events
    capsys.readouterr()
    assert space.nkd("show", run["id"]) == 0
    assert f"reference   pretrained {ref} -> run {expected}" in capsys.readouterr().out
    before = space.run("crnn_large_finetune")["id"]
    assert space.nkd("run", "crnn_large_finetune", *SMALL, "--set", "epochs=1",
                     "--set", "pretrained=crnn_long@lr=0.5") == 2  # refused: nothing recorded
    assert "no finished run of crnn_long with lr=0.5" in capsys.readouterr().err
    assert space.run("crnn_large_finetune")["id"] == before


def test_a_folder_path_works_where_a_source_is_expected(space: Space, capsys) -> None:
    """`--set data=./data/train`: the kind is detected and said in one line, the run trains,
    and nothing is written into the folder; a folder nkd cannot use is one line, exit 2."""
    assert space.nkd("run", "crnn_long", *SMALL, "--set", "epochs=1",
                     "--set", "data=./data/train") == 0
    run = space.run("crnn_long")
    log = (Path(run["run_dir"]) / "output.log").read_text()
    assert "data ./data/train: 3 track folders with mixture and stems (separation)" in log
    assert not [p for p in (space.root / "data").rglob("*")
                if p.is_file() and p.suffix not in (".wav",) and p.name != ".nkd_synth"]
    empty = space.root / "not_audio"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    capsys.readouterr()
    assert space.nkd("run", "crnn_long", "--set", "data=./not_audio") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 'data': folder" in err and "not_audio" in err


def test_folder_kinds_are_detected(tmp_path: Path) -> None:
    from core.registry import folders

    _track(tmp_path / "tracks" / "song_a", ["bass", "drums", "other", "vocals"])
    settings, said = folders.detect(tmp_path / "tracks")
    assert settings == {"kind": "separation"} and said.startswith("1 track folders")
    for label in ("water", "hum"):
        (tmp_path / "classes" / label).mkdir(parents=True)
        audio_write = __import__("core.data.audio", fromlist=["write"]).write
        audio_write(tmp_path / "classes" / label / "a.wav", np.zeros(800, np.float32), 16000)
        audio_write(tmp_path / "flat" / f"{label}_003.wav", np.zeros(800, np.float32), 16000)
    assert folders.detect(tmp_path / "classes")[0] == {"kind": "noise", "label_from": "folder"}
    settings, said = folders.detect(tmp_path / "flat")
    assert settings == {"kind": "noise", "label_from": "prefix"} and "hum, water" in said
    (tmp_path / "nothing").mkdir()
    assert folders.detect(tmp_path / "nothing") is None


def test_eval_scores_one_checkpoint_on_two_folders_as_two_runs(space: Space, capsys) -> None:
    """`nkd eval crnn_long --data ./data/test` and `--data ./data/val --split val`: two runs,
    each with its own split's metrics and lineage to the same checkpoint."""
    parent = space.run("crnn_long")
    ids = []
    for folder, split in (("./data/test", "test"), ("./data/val", "val")):
        assert space.nkd("eval", "crnn_long", "--data", folder, "--split", split,
                         "--set", "threads=1") == 0
        ids.append(capsys.readouterr().out.split(":", 1)[0].strip().splitlines()[-1])
    store = Store(space.root / "nkd.db")
    try:
        for run_id, split in zip(ids, ("test", "val"), strict=True):
            run = store.get_run(run_id)
            assert run["status"] == "finished" and run["recipe"] == "separation.evaluate"
            sdr = [m for m in store.metrics(run_id) if m["name"] == "sdr"]
            assert sdr and {m["split"] for m in sdr} == {split}
            node = next(c for c in store.checkpoints(run_id) if c["role"] == "evaluation")
            parents = store.conn.execute(
                "SELECT parent FROM lineage WHERE child = ?", (node["id"],)).fetchall()
            assert parents == [(f"{parent['id']}/best_separator_model.pth",)]
        assert ids[0] != ids[1]
    finally:
        store.close()
    assert space.nkd("eval", "crnn_long", "--data", "./data/noise_nothing") == 2
    assert "eval: --data ./data/noise_nothing" in capsys.readouterr().err
    assert space.nkd("eval", "crnn_long", "--data", "./data/test", "--set", "mask_scal=2") == 2
    assert "eval: --set mask_scal=2: unknown key 'mask_scal'" in capsys.readouterr().err
    assert space.nkd("eval", "crnn_lng", "--data", "./data/test") == 2
    assert "'crnn_lng' is not a run, an experiment" in capsys.readouterr().err


def test_an_evaluation_keeps_what_to_see_and_hear(space: Space, capsys) -> None:
    """After a run and its evaluation on the demo tracks: per-second and global SDR per track
    and stem, the worst / median / best tracks' excerpts (FLAC that decodes) and spectrograms,
    `nkd results` worst first, and the challenges' global SDR recorded as a metric."""
    import soundfile

    from core.results.kept import load

    assert space.nkd("eval", "crnn_long", "--data", "./data/test", "--set", "threads=1") == 0
    run_id = capsys.readouterr().out.split(":", 1)[0].strip().splitlines()[-1]
    run = space.run("crnn_long")  # its final validation kept its own
    for rid, split in ((run_id, "test"), (run["id"], "val")):
        store = Store(space.root / "nkd.db")
        row, metrics = store.get_run(rid), store.metrics(rid)
        store.close()
        [res] = [r for r in load(Path(row["run_dir"])) if r.split == split]
        tracks = res.doc["tracks"]
        # the test folder's two tracks; the training run's validation tracks, however many
        assert (len(tracks) == 2 if split == "test" else tracks) and res.missing() == []
        assert [t["mean_sdr"] for t in tracks] == sorted(t["mean_sdr"] for t in tracks)
        assert [t["kept"]["why"] for t in tracks][:2] == ["worst", "best"][:len(tracks)]
        for t in tracks:
            assert set(t["frames"]) == {"bass", "drums", "other", "vocals"}
            assert len(t["frames"]["vocals"]) == 4  # 4 s tracks, 1 s frames
            audio = res.path(t["kept"]["signals"]["drums/estimate"]["audio"])
            data, rate = soundfile.read(str(audio))
            assert rate == 22050 and data.shape == (4 * 22050, 2)
        glob = {m["stem"]: m for m in metrics if m["name"] == "sdr_global" and not m["track"]}
        assert set(glob) == {"bass", "drums", "other", "vocals", "mean"}
        assert glob["mean"]["definition"] == "global_sdr_mdx_mean_over_tracks"
        assert "global SDR (MDX/SDX challenges)" in res.doc["definitions"]["sdr_global"]
    capsys.readouterr()
    assert space.nkd("results", run_id) == 0
    out = capsys.readouterr().out
    sdrs = [float(line.split()[2]) for line in out.splitlines()[2:10]]
    assert sdrs == sorted(sdrs)  # worst first


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _checked_in_chromium(url: str) -> str:
    """The page's own check (every audio element loads until it can play through, every image
    decodes), as a real headless Chromium ran it."""
    import re
    import subprocess

    done = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--mute-audio",
         "--allow-file-access-from-files", "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<p id="check">([^<]*)</p>', done.stdout)
    return found.group(1) if found else f"no verdict (exit {done.returncode})"


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (.ci/run installs it)")
def test_the_listening_page_and_the_report_load_in_a_real_browser(space: Space) -> None:
    import re
    import subprocess
    import sys

    run = space.run("crnn_large_merged_0_8_0_2_gain")  # a blend-based fine-tune, and its parent
    listen = subprocess.Popen(
        [sys.executable, "-m", "nkd_tui.cli", "--registry", str(space.registry), "listen",
         run["id"], "crnn_large_merged", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = listen.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        assert "ssh -N -L" in listen.stdout.readline()
        verdict = _checked_in_chromium(f"http://127.0.0.1:{port}/?check=1")
        assert re.fullmatch(r"checked (\d+) audio (\d+) images 0 failed", verdict), verdict
        assert int(verdict.split()[1]) >= 18  # two runs' kept tracks
    finally:
        listen.terminate()
        listen.wait(timeout=10)
    report = space.root / "report"  # the folder, opened from disk as someone it was sent to
    assert space.nkd("report", run["id"], "--out", str(report)) == 0
    verdict = _checked_in_chromium(f"{(report / 'index.html').as_uri()}?check=1")
    assert re.fullmatch(r"checked \d+ audio \d+ images 0 failed", verdict), verdict
    flac = next(report.rglob("*.flac"))
    flac.write_bytes(flac.read_bytes()[:300])  # the check itself notices a file cut short
    assert _checked_in_chromium(f"{(report / 'index.html').as_uri()}?check=1").endswith(
        " 1 failed")
