"""Every shipped chain on a researcher's own folders, as the README's "Your own data" says: a
workspace holding only the shipped experiments.toml and the user's folders (class sub-folders,
`<class>_<n>.wav` clips, MUSDB-style tracks), no demo data. Each run is started with `nkd run
EXP --set data=FOLDER` (val_data / test_data where a user has them) and must finish: the demo-only
parts (zero-shot types, the unlabelled pool, musdb_val) are left out with one notice, never a
failure after training. Real workers, real store.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_noise_e2e import Space

from nkd_tui.cli import main

ROOT = Path(__file__).resolve().parent.parent
FAST_NOISE = ["epochs=1"]
FAST_SEP = ["epochs=1", "hidden_size=32", "num_layers=1"]
VAL = ["val_data=mine/tracks_val"]

# chain -> [(experiment, --set values)], in the order a researcher runs them
CHAINS: dict[str, list[tuple[str, list[str]]]] = {
    "mark1": [(e, ["data=mine/clips", *FAST_NOISE])
              for e in ("mark1", "mark1.soft_labels", "mark1.student", "mark1.ensemble")],
    "mark2": [(e, ["data=mine/clips", *FAST_NOISE])
              for e in ("mark2", "mark2.soft_labels", "mark2.student", "mark2.ensemble")],
    "mark3": [(e, ["data=mine/clips", *FAST_NOISE])
              for e in ("mark3", "mark3.soft_labels", "mark3.student", "mark3.ensemble")],
    "hybrid_kd": [(e, ["data=mine/fine", *FAST_NOISE])  # ESKD: the early-stopped teacher
                  for e in ("kd_teacher", "mark2.5", "mark2.6", "mark2.7", "mark2.8", "mark2.9")],
    "crnn": [
        ("crnn_long", ["data=mine/tracks", *FAST_SEP]),  # no val_data: tracks held out
        ("crnn_large_finetune", ["data=mine/tracks", *VAL, *FAST_SEP]),
        ("crnn_large_finetune_ver1", ["data=mine/tracks", *VAL, *FAST_SEP]),
        ("crnn_large_final_tune", ["data=mine/tracks", *VAL, *FAST_SEP]),
        ("crnn_large_merged", VAL),
        ("crnn_large_ultimate_4db", ["data=mine/tracks", *VAL, *FAST_SEP]),
        ("crnn_large_final_fix", ["data=mine/tracks", *VAL, *FAST_SEP]),
        ("crnn_large_merged_0_8_0_2", VAL),
        ("crnn_large_merged_0_8_0_2_gain", [*VAL, "test_data=mine/tracks_test"]),
        ("crnn_large_merged_0_9_0_1", VAL),
        ("retrain_with_augmentation", ["data=mine/tracks", *FAST_SEP]),
        ("retrain_target_stem_vocals", ["data=mine/tracks", *FAST_SEP]),
        ("retrain_frozen_output", ["data=mine/tracks", *FAST_SEP]),
    ],
    "unet": [("unet_crnn_rhythm", ["data=mine/tracks", *FAST_SEP])],
}


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Space]:
    demo = tmp_path_factory.mktemp("demo")  # where the user's folders come from
    shutil.copy(ROOT / "experiments.toml", demo / "experiments.toml")
    # small folders (the chains must finish on them, not learn): the suite's longest test
    for kind, size in (("noise", ["--per-class", "16"]),
                       ("separation", ["--tracks", "3", "--seconds", "4"])):
        assert main(["--registry", str(demo / "experiments.toml"), "data", "synth", kind,
                     *size]) == 0
    root = tmp_path_factory.mktemp("user")
    shutil.copy(ROOT / "experiments.toml", root / "experiments.toml")
    mine = root / "mine"
    for theirs, ours in [("noise", "clips"), ("noise_fine", "fine"), ("train", "tracks"),
                         ("val", "tracks_val"), ("test", "tracks_test")]:
        shutil.copytree(demo / "data" / theirs, mine / ours)
    assert not (root / "data").exists()  # nothing of the demo set is there
    yield Space(root)


@pytest.mark.parametrize("chain", list(CHAINS))
def test_every_shipped_chain_finishes_on_a_users_folders(
    user: Space, chain: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for experiment, sets in CHAINS[chain]:
        args = [a for s in sets for a in ("--set", s)]
        code = user.nkd("run", experiment, *args)
        out = capsys.readouterr()
        run = user.latest(experiment)
        assert code == 0 and run["status"] == "finished", (experiment, out.err, run["error"])
        log = (Path(run["run_dir"]) / "output.log").read_text()
        assert "does not exist" not in log, (experiment, log[-2000:])
        if experiment.endswith((".soft_labels", ".ensemble")):  # trains nothing: EPOCH `-`
            assert run["epochs_total"] is None and run["epoch"] in (None, 0)
        if experiment == "mark1":  # the zero-shot types are the demo's: left out, said once
            notice = "eval_data 'noise_zero_shot'"
            assert notice in out.err and log.count(notice) == 1
            assert "left out, its zero-shot check is skipped" in log
        if experiment == "crnn_long":  # musdb_val is the demo's: validation on held-out tracks
            assert "val_data 'musdb_val'" in out.err
            assert "held out for validation" in log
            assert run["sdr"] is not None


def test_an_evaluation_on_a_users_folder_is_named_after_what_it_scores(
    user: Space, capsys: pytest.CaptureFixture[str]
) -> None:
    if user.latest("mark2.5")["status"] != "finished":
        pytest.skip("needs the hybrid_kd chain")
    assert user.nkd("eval", "mark2.5", "--data", "mine/fine") == 0
    evaluation = user.latest("eval_mark2.5_on_fine")  # not eval_mark2_on_fine
    assert evaluation["status"] == "finished" and evaluation["accuracy"] is not None
    capsys.readouterr()
    assert user.nkd("compare", "mark2.5", "eval_mark2.5_on_fine") == 0
    table = capsys.readouterr().out
    assert "accuracy test" in table and "eval_mark2.5_on_fine" in table


def test_a_chain_on_classes_of_the_users_own(
    user: Space, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder of three classes nobody shipped (sub-folders thud, drip, hum): the shipped
    teacher's classes are refused at launch, naming the labels found and how to give them;
    with the user's classes the hybrid-KD chain runs. A pool of clip_<n>.wav files is indexed
    as unlabelled, never as one class 'clip', and a student needing labels on it is refused."""
    mine = user.root / "mine"
    for ours, theirs in (("thud", "thumping"), ("drip", "water"), ("hum", "background")):
        (mine / "own" / ours).mkdir(parents=True)
        for n, clip in enumerate(sorted((mine / "fine").glob(f"{theirs}_*.wav"))):
            shutil.copy(clip, mine / "own" / ours / f"{n:03d}.wav")
    capsys.readouterr()
    runs_before = len(list((user.root / "runs").iterdir()))
    assert user.nkd("run", "kd_teacher", "--set", "data=mine/own") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the labels it holds are drip, hum, thud" in err
    assert """--set 'classes=["drip","hum","thud"]'""" in err
    assert len(list((user.root / "runs").iterdir())) == runs_before  # nothing recorded
    own = ["--set", "data=mine/own", "--set", 'classes=["thud", "drip", "hum"]',
           "--set", "epochs=1"]
    assert user.nkd("run", "kd_teacher", *own) == 0
    assert user.latest("kd_teacher")["status"] == "finished"
    kd = ["--set", "data=mine/own", "--set", 'classes={ thud = ["thud"], other = ["drip", '
          '"hum"] }', "--set", "epochs=1"]
    assert user.nkd("run", "mark2.5", *kd) == 0
    assert user.latest("mark2.5")["status"] == "finished"
    pool, water = mine / "pool", next((mine / "fine").glob("water_*.wav"))
    pool.mkdir()
    for n in range(4):  # a pool: every clip the same prefix
        shutil.copy(water, pool / f"clip_{n:03d}.wav")
    capsys.readouterr()
    assert user.nkd("data", "index", "mine/pool") == 0
    indexed = capsys.readouterr().out
    assert "(unlabeled " in indexed and "clip" not in indexed.split("segments by split")[1]
    store = user.store()
    teacher = store.latest_run("mark1")
    store.close()
    if teacher is None or teacher["status"] != "finished":
        pytest.skip("the student's refusal needs the mark1 chain's teacher")
    assert user.nkd("run", "mark1.student", "--set", "data=mine/pool") == 2
    err = capsys.readouterr().err
    assert "unlabelled pool" in err and "set val_data=FOLDER" in err
