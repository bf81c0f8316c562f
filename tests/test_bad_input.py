"""Every bad input gets one clear line, the documented exit status, and changes nothing recorded.

One table, run against a workspace that already holds a finished run: registry files, `--set`
values, names, run ids, control of ended runs, audio folders, checkpoint files and broken
databases. Each case asserts: exit status 2 (bad input or refused), exactly one line on stderr
that names the file, key or run, no traceback, and every run folder, checkpoint folder and store
row byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import BASE_REGISTRY, Workspace
from test_registry import BAD as BAD_REGISTRIES

from core.errors import RunError
from nkd_tui.cli import main


@dataclass
class Case:
    id: str
    argv: list[str]  # after `--registry <the workspace's registry>`; {reg} = a bad registry
    words: list[str]  # each must appear in the one line
    registry: str | None = None  # a bad registry file's text, written as bad.toml
    db: Callable[[Path], None] | None = None  # breaks nkd.db before the command
    env: dict[str, str] | None = None  # environment for the command ({root}: the workspace)


SHARED = BASE_REGISTRY + """
[data.empty]
root = "data/empty"
[data.missing]
root = "data/missing"
[data.short]
root = "data/short"
[data.torn]
root = "data/torn"
[data.tracks]
root = "data/tracks"
kind = "separation"
[data.demo_val]
root = "data/demo_val"
kind = "separation"
synth = "separation"

[experiments.student]
group = "noise"
recipe = "noise.student"
teacher = "mark1"
data = "short"
[experiments.sep]
group = "separation"
recipe = "separation.train"
data = "tracks"
val_data = "tracks"
[experiments.tune]
extends = "sep"
pretrained = "sep"
[experiments.merged]
group = "separation"
recipe = "separation.blend"
sources = { sep = 0.5, tune = 0.5 }
val_data = "tracks"
[experiments.merged_demo]
extends = "merged"
val_data = "demo_val"
"""


def _wav(path: Path, seconds: float, truncate: int = 0) -> None:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    soundfile.write(str(path), 0.3 * rng.standard_normal(int(16000 * seconds)), 16000,
                    subtype="PCM_16")
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[:-truncate])


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bad_input")
    workspace = Workspace(root)
    workspace.registry.write_text(SHARED)
    (root / "data" / "empty").mkdir(parents=True)
    _wav(root / "data" / "short" / "a" / "blip.wav", 0.2)
    _wav(root / "data" / "short" / "b" / "blip.wav", 0.1)
    _wav(root / "data" / "torn" / "a" / "cut.wav", 1.0, truncate=4000)
    _wav(root / "data" / "torn" / "b" / "cut.wav", 1.0, truncate=4000)
    for n in range(3):  # an unlabelled pool: one file-name prefix is no class
        _wav(root / "data" / "pool" / f"clip_{n:03d}.wav", 0.5)
    for label in ("thud", "drip", "hum"):  # classes of the user's own, by sub-folder
        _wav(root / "data" / "own" / label / "a.wav", 0.5)
    (root / "data" / "tracks").mkdir(parents=True)
    _checkpoint_files(root / "ckpt")
    reg = str(root / "experiments.toml")
    assert main(["--registry", reg, "run", "tick"]) == 0
    assert main(["--registry", reg, "run", "tick"]) == 0  # two runs: a prefix can be ambiguous
    from core.store import Store

    store = Store(root / "nkd.db")
    run_id = store.list_runs()[0]["id"]
    store.close()
    yield root, run_id
    workspace.cleanup()


def _checkpoint_files(folder: Path) -> None:
    """Files a run may name that no recipe can use: each is refused at launch."""
    import torch

    from core.registry.settings import resolve
    from core.separation.models import build
    from core.separation.recipes import model_meta
    from core.training import checkpoint

    folder.mkdir(parents=True)
    for label, make, _words in BAD_CHECKPOINTS:
        make(folder / f"{label}.pth")
    meta = model_meta(resolve("separation.train", {"hidden_size": 32, "num_layers": 1})[0])
    wide = {**meta, "hidden_size": 48}
    checkpoint.save(folder / "wide.pth", "separator_model", build(wide).state_dict(), wide)
    checkpoint.save(folder / "narrow.pth", "separator_model", build(meta).state_dict(), meta)
    checkpoint.save(folder / "odd.pth", "separator_model", {"w": torch.zeros(2)}, meta)
    checkpoint.save(folder / "x_encoder.pth", "separator_model", {"w": torch.zeros(2)}, meta)
    checkpoint.save(folder / "x_classifier.pth", "separator_model", {"w": torch.zeros(2)}, meta)
    checkpoint.save(folder / "lone_encoder.pth", "teacher_encoder", {"w": torch.zeros(2)}, {})


def _queued(db: Path) -> None:
    """Every run back in the queue: archiving one is refused until it has ended."""
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET status = 'queued'")
    conn.commit()
    conn.close()


def _garbage(db: Path) -> None:
    db.write_bytes(b"this is not a database\n" * 200)


def _directory(db: Path) -> None:
    db.unlink()
    db.mkdir()


def _foreign(db: Path) -> None:
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE runs (x)")  # another program's file of the same name
    conn.commit()
    conn.close()


def _truncated_db(db: Path) -> None:
    db.write_bytes(db.read_bytes()[:100])


BAD_CHECKPOINTS: list[tuple[str, Callable[[Path], None], str]] = [
    ("missing", lambda p: None, "checkpoint not found"),
    ("empty", lambda p: p.write_bytes(b""), "an empty file, not a checkpoint"),
    ("text", lambda p: p.write_text("hello\n"), "not a PyTorch checkpoint file"),
    ("object", lambda p: _torch_save(p, {"x": Path("/")}), "pickled Python objects"),
    ("bare", lambda p: _torch_save(p, {"w": _tensor()}), "a bare state_dict"),
    ("truncated", lambda p: (_torch_save(p, {"format": "x", "w": _tensor()}),
                             p.write_bytes(p.read_bytes()[:200])), "damaged or truncated"),
    ("foreign", lambda p: _torch_save(p, {"format": "other", "state_dict": {}}),
     "not an nkd checkpoint"),
]


def _tensor():
    import torch

    return torch.zeros(3)


def _torch_save(path: Path, obj: object) -> None:
    import torch

    torch.save(obj, path)


def _cases() -> list[Case]:
    cases: list[Case] = []
    # registry files: `check` and `run` both refuse, nothing is started
    for i, (text, words) in enumerate(BAD_REGISTRIES):
        cases.append(Case(f"registry{i:02d}-check", ["check"], words, registry=text))
    for i in (2, 3, 7, 8, 12, 16):
        text, words = BAD_REGISTRIES[i]
        cases.append(Case(f"registry{i:02d}-run", ["run", "a"], words, registry=text))
    # --set values
    for value, words in [
        ("batch_size=0", ["key 'batch_size' must be > 0"]),
        ("lr=nan", ["key 'lr' must be a finite number"]),
        ("lr=0", ["key 'lr' must be > 0"]),
        ("epochs=0", ["key 'epochs' must be > 0"]),
        ("epochs=-2", ["key 'epochs' must be > 0"]),
        ("epochs=abc", ["key 'epochs' must be an integer"]),
        ("seed=-1", ["key 'seed' must be ≥ 0"]),
        ("optimizer=adamm", ["key 'optimizer' must be one of"]),
        ("batchsize=8", ["unknown key 'batchsize'", "did you mean 'batch_size'"]),
        ("=5", ["--set '=5' is not key=value"]),
        ("lr", ["--set 'lr' is not key=value"]),
        ("lr=inf", ["key 'lr' must be a finite number"]),
        ("alpha=2", ["key 'alpha' must be in [0, 1]"]),
        ("alpha=-0.1", ["key 'alpha' must be in [0, 1]"]),
        ("kd_temperature=0", ["key 'kd_temperature' must be > 0"]),
        ("kd_temperature=-4", ["key 'kd_temperature' must be > 0"]),
        ("dropout=1", ["key 'dropout' must be in [0, 1)"]),
        ("results_tracks=-1", ["key 'results_tracks' must be ≥ 0"]),
        ("keep_checkpoints=['last']", ["key 'keep_checkpoints' must be", '"best" or "best:K"']),
        ("keep_checkpoints=['best:x']", ["key 'keep_checkpoints' must be", '"every:N"']),
        ("classes=['x']", ["key 'classes'", "at least two classes"]),
        ("accumulate=0", ["key 'accumulate' must be > 0"]),
        ("grad_clip=-1", ["key 'grad_clip' must be ≥ 0"]),
        ("compile=maybe", ["key 'compile' must be true or false"]),
        ("threads=0", ["key 'threads' must be > 0"]),
        ("test_data=nope", ["key 'test_data': unknown data source 'nope'"]),
        ("data=./data/nowhere", ["key 'data': folder", "does not exist"]),
        ("data=./data/empty", ["key 'data': folder", "holds no track folders"]),
        ("pretrained=best:tik", ["unknown experiment 'tik' in 'best:tik'"]),
        ("pretrained=slow@lr", ["'slow@lr' needs EXP@key=value"]),
        ("loss=l2", ["key 'loss' must be one of", "l1", "mse"]),
        ("wiener_iterations=-1", ["key 'wiener_iterations' must be ≥ 0"]),
        ("wiener_iterations=1.5", ["key 'wiener_iterations' must be an integer"]),
        ("select_by=sdr", ["key 'select_by' must be one of", "val_sdr"]),
        ("model=bsrnn", ["key 'model' must be one of", "mask_lstm"]),
    ]:
        cases.append(Case(f"set-{value}", ["run", "tick", "--set", value],
                          ["experiment 'tick'", *words]))
    cases.append(Case("set-select-by-not-recorded", ["run", "mark1", "--set",
                                                     "select_by=val_sdr"],
                      ["experiment 'mark1'", "key 'select_by': val_sdr is recorded each epoch "
                       "only by separation.train"]))
    cases.append(Case("set-recipe-key-missing", ["run", "mark1", "--set", "data=nope"],
                      ["key 'data'", "unknown data source 'nope'"]))
    cases.append(Case("unknown-experiment", ["run", "tik"],
                      ["unknown experiment 'tik'", "did you mean 'tick'"]))
    # the queue: sweeps, waits, placement settings, queue commands
    for value, words in [
        ("gpus=-1", ["key 'gpus' must be ≥ 0"]),
        ("gpu_memory=lots", ["key 'gpu_memory' must be a size"]),
        ("priority=high", ["key 'priority' must be an integer"]),
        ("lr=1,,2", ["has an empty value in its comma list"]),
        ("lr=range(1,0)", ["range(1,0) is empty"]),
        ("lr=range(a,b)", ["range(a,b) needs numbers"]),
        ("epochs=range(1,5000)", ["has more than 1000 values"]),
    ]:
        cases.append(Case(f"queue-set-{value}", ["run", "tick", "--set", value],
                          ["experiment 'tick'", *words]))
    cases += [
        Case("sample-without-trials", ["run", "tick", "--set", "lr=loguniform(1e-4,1e-2)"],
             ["experiment 'tick'", "lr=...' draws values", "--trials N"]),
        Case("trials-without-sample", ["run", "tick", "--trials", "4"],
             ["experiment 'tick'", "--trials needs a --set key=uniform(a,b)"]),
        Case("sample-bad-bounds", ["run", "tick", "--set", "lr=loguniform(-1,1)", "--trials",
                                   "2"], ["experiment 'tick'", "loguniform needs bounds above 0"]),
        Case("sample-unknown", ["run", "tick", "--set", "lr=normal(0,1)", "--trials", "2"],
             ["experiment 'tick'", "unknown distribution 'normal'"]),
        Case("sweep-show-unknown", ["sweep", "show", "nosuch"], ["no sweep 'nosuch'"]),
        Case("sweep-stop-unknown", ["sweep", "stop", "nosuch"], ["no sweep 'nosuch'"]),
        Case("sweep-pause-unknown", ["sweep", "pause", "nosuch"], ["no sweep 'nosuch'"]),
        Case("compare-sweep-unknown", ["compare", "--sweep", "nosuch"], ["no sweep 'nosuch'"]),
        Case("compare-nothing", ["compare"], ["nkd compare: which runs?"]),
        Case("queue-sweep-name", ["run", "tick", "--set", "epochs=1,2", "--sweep-name", "../x"],
             ["--sweep-name", "'../x' is not a valid name"]),
        Case("queue-after-unknown", ["run", "tick", "--after", "nope"],
             ["no run or experiment with runs named 'nope'"]),
        Case("queue-chain-unknown", ["run", "tick", "tik", "--queue"],
             ["unknown experiment 'tik'"]),
        Case("queue-cancel-ended", ["queue", "cancel", "{run}"], ["{run}", "is finished, not "
                                                                   "queued"]),
        Case("queue-top-ended", ["queue", "top", "{run}"], ["{run}", "is finished, not queued"]),
        Case("queue-priority-ended", ["queue", "priority", "{run}", "3"],
             ["is finished, not queued"]),
        Case("queue-priority-no-n", ["queue", "priority", "{run}"], ["give the priority N"]),
        Case("queue-cancel-no-run", ["queue", "cancel"], ["which run?"]),
        Case("queue-cancel-unknown", ["queue", "cancel", "nope"], ["no run or experiment"]),
        Case("import-missing", ["import", "nope.toml"], ["nope.toml: cannot be read"]),
        Case("import-nothing", ["import"], ["give a manifest (TOML or CSV) or --scan FOLDER"]),
        Case("import-scan-missing", ["import", "--scan", "/nonexistent"],
             ["/nonexistent: not a folder"]),
        Case("import-scan-empty", ["import", "--scan", "{root}/data/empty"],
             ["no file matches"]),
        Case("capture-missing", ["capture", "nope.log"], ["nope.log: cannot be read"]),
        Case("capture-unknown-experiment", ["capture", "nope.log", "-e", "tik"],
             ["unknown experiment 'tik'"]),
        Case("slurm-no-table", ["run", "tick", "--on", "slurm"],
             ["experiment 'tick'", "needs a [backends.slurm] table"]),
        Case("slurm-resume-ended", ["resume", "{run}"], ["is not running (status finished)"]),
        Case("gpus-file-missing", ["run", "tick"], ["NKD_GPUS", "gpus-missing.json"],
             env={"NKD_GPUS": "{root}/gpus-missing.json"}),
        Case("gpus-file-garbage", ["run", "tick"], ["NKD_GPUS", "not readable JSON"],
             env={"NKD_GPUS": "{root}/experiments.toml"}),
    ]
    # names that become paths
    for name in ("../x", "a/b", ".hidden", "x" * 81, "a b", "..", "/abs"):
        cases.append(Case(f"blend-name-{name[:8]}", ["blend", "tick", "slow", "--weights",
                                                    "0.5,0.5", "--name", name],
                          ["blend: --name", "not a valid name"]))
    # run ids
    for ref in ("nope", "tick_1999", "slow", "x" * 300):
        for command in ("show", "logs", "pause", "kill", "restart", "lineage"):
            if ref != "nope" and command not in ("show", "pause"):
                continue
            cases.append(Case(f"run-{command}-{ref[:10]}", [command, ref],
                              ["no run or experiment with runs named", ref[:20]]))
    cases.append(Case("compare-unknown-run", ["compare", "{run}", "nosuch_run"],
                      ["no run or experiment with runs named 'nosuch_run'"]))
    cases.append(Case("diff-unknown-run", ["diff", "nosuch_run", "{run}"],
                      ["no run or experiment with runs named 'nosuch_run'"]))
    cases.append(Case("rerun-unknown-run", ["rerun", "nosuch_run"],
                      ["no run or experiment with runs named 'nosuch_run'"]))
    cases.append(Case("results-none-kept", ["results", "{run}"],
                      ["{run}", "kept no results", "a command experiment"]))
    cases.append(Case("listen-none-kept", ["listen", "{run}", "--port", "0"],
                      ["{run}", "kept no results"]))
    cases.append(Case("report-unknown-run", ["report", "nosuch_run", "--out", "somewhere"],
                      ["no run or experiment with runs named 'nosuch_run'"]))
    cases.append(Case("gc-bad-age", ["gc", "--older", "3x", "--yes"],
                      ["--older '3x'", "nothing was deleted"]))
    cases.append(Case("gc-live-status", ["gc", "--status", "running", "--yes"],
                      ["--status running", "only ended runs"]))
    cases.append(Case("gc-unknown-role", ["gc", "--keep", "best,bset", "--yes"],
                      ["--keep bset", "nothing was deleted"]))
    cases.append(Case("gc-unknown-experiment", ["gc", "--experiment", "nope", "--yes"],
                      ["--experiment 'nope'", "nothing was deleted"]))
    cases.append(Case("run-ambiguous", ["show", "tick_2"], ["run 'tick_2' is ambiguous",
                                                             "2 runs match"]))
    # control of a run that has ended ({run} is the finished run)
    for command, words in [
        ("pause", ["is not running (status finished)"]),
        ("resume", ["is not running (status finished)"]),
        ("suspend", ["is not running (status finished)"]),
        ("stop", ["is not running (status finished)"]),
        ("kill", ["is not running (status finished)"]),
        ("restart", ["is finished; only", "runs restart"]),
    ]:
        cases.append(Case(f"ended-{command}", [command, "{run}"], ["{run}", *words]))
    # audio folders
    # nkd eval and nkd data prepare: the reference, the data, the settings
    cases += [
        Case("eval-unknown-ref", ["eval", "tik", "--data", "tracks"],
             ["eval: 'tik' is not a run, an experiment"]),
        Case("eval-unknown-data", ["eval", "{run}", "--data", "nosuch"],
             ["eval: --data nosuch", "data folder"]),
        Case("eval-empty-folder", ["eval", "{run}", "--data", "./data/empty"],
             ["eval: --data ./data/empty", "holds no track folders"]),
        Case("eval-unknown-key", ["eval", "{run}", "--data", "tracks", "--set", "mask_scal=1"],
             ["eval: --set mask_scal=1: unknown key 'mask_scal'"]),
        Case("eval-bad-set", ["eval", "{run}", "--data", "tracks", "--set", "=1"],
             ["--set '=1' is not key=value"]),
        Case("eval-command-run", ["eval", "{run}", "--data", "tracks"],
             ["eval: {run} was trained by a script of its own"]),
        Case("eval-command-experiment", ["eval", "tick", "--data", "tracks"],
             ["eval: tick was trained by a script of its own"]),
        Case("prepare-unknown", ["data", "prepare", "nosuch"], ["no data source 'nosuch'"]),
        Case("prepare-missing-folder", ["data", "prepare", "missing"],
             ["data source 'missing'", "does not exist"]),
        Case("prepare-no-tracks", ["data", "prepare", "tracks"],
             ["data source 'tracks'", "no track folders"]),
        Case("prepare-bad-folder", ["data", "prepare", "./data/empty"],
             ["data folder", "holds no track folders"]),
    ]
    # what a run reads, checked before it is recorded: references to nothing finished, data
    # folders that are not there (a demo-only source is left out instead, unless it is all)
    nothing = "nothing was started"
    cases += [
        Case("eval-unfinished", ["eval", "mark1", "--data", "./data/short"],
             ["experiment 'eval_mark1_on_short'", "teacher 'mark1' has no finished run yet",
              nothing]),
        Case("eval-unfinished-best", ["eval", "best:mark1", "--data", "./data/short"],
             ["teacher 'best:mark1'", "no finished run of mark1 has a score yet", nothing]),
        Case("run-teacher-unfinished", ["run", "student"],
             ["experiment 'student'", "teacher 'mark1' has no finished run yet", nothing]),
        Case("run-teacher-unfinished-queued", ["run", "student", "--queue"],
             ["experiment 'student'", "teacher 'mark1' has no finished run yet", nothing]),
        Case("run-pretrained-unfinished", ["run", "tune"],
             ["experiment 'tune'", "pretrained 'sep' has no finished run yet", nothing]),
        Case("run-pretrained-best", ["run", "sep", "--set", "pretrained=best:tune"],
             ["experiment 'sep'", "pretrained 'best:tune'", "no finished run of tune"]),
        Case("run-pretrained-where", ["run", "sep", "--set", "pretrained=tune@lr=0.1"],
             ["experiment 'sep'", "no finished run of tune with lr=0.1", nothing]),
        Case("run-pretrained-file", ["run", "sep", "--set", "pretrained=./nope.pth"],
             ["experiment 'sep'", "key 'pretrained': checkpoint file", "nope.pth does not "
              "exist", nothing]),
        Case("run-pretrained-no-run", ["run", "sep", "--set", "pretrained=run:nosuch_run"],
             ["experiment 'sep'", "key 'pretrained': no run 'nosuch_run'", nothing]),
        Case("run-pretrained-run-queued", ["run", "sep", "--set", "pretrained=run:{run}"],
             ["experiment 'sep'", "run '{run}' is queued, not finished", nothing], db=_queued),
        Case("run-blend-unfinished", ["run", "merged"],
             ["experiment 'merged'", "sources 'sep' has no finished run yet", nothing]),
        Case("blend-unfinished", ["blend", "sep", "tune", "--weights", "0.5,0.5"],
             ["sources 'sep' has no finished run yet", nothing]),
        Case("run-data-missing", ["run", "mark1"],
             ["experiment 'mark1'", "key 'data': data source 'noise'", "does not exist",
              nothing]),
        # checkpoint files opened and checked at launch, as the recipe would read them
        *[Case(f"run-pretrained-{label}", ["run", "sep", "--set",
                                            f"pretrained=./ckpt/{label}.pth"],
               ["experiment 'sep'", "key 'pretrained'", f"{label}.pth", words, nothing])
          for label, _make, words in BAD_CHECKPOINTS if label != "missing"],
        Case("run-pretrained-architecture", ["run", "sep", "--set", "hidden_size=32", "--set",
                                             "num_layers=1", "--set", "pretrained=./ckpt/wide.pth"],
             ["key 'pretrained'", "different architectures: hidden_size is 48", nothing]),
        Case("run-pretrained-weights", ["run", "sep", "--set", "pretrained=./ckpt/odd.pth"],
             ["key 'pretrained'", "odd.pth: weights do not fit", nothing]),
        Case("run-pretrained-kind", ["run", "sep", "--set",
                                     "pretrained=./ckpt/lone_encoder.pth"],
             ["key 'pretrained'", "a 'teacher_encoder' checkpoint where 'separator_model'",
              nothing]),
        Case("eval-file-pickle", ["eval", "./ckpt/object.pth", "--data", "tracks"],
             ["key 'pretrained'", "object.pth", "pickled Python objects", nothing]),
        Case("eval-file-truncated", ["eval", "./ckpt/truncated.pth", "--data", "tracks"],
             ["key 'pretrained'", "damaged or truncated", nothing]),
        Case("blend-files-architecture", ["blend", "./ckpt/narrow.pth", "./ckpt/wide.pth",
                                          "--weights", "0.5,0.5", "--val-data", "tracks"],
             ["key 'sources'", "different architectures: hidden_size is 32", nothing]),
        Case("blend-files-text", ["blend", "./ckpt/narrow.pth", "./ckpt/text.pth",
                                  "--weights", "0.5,0.5", "--val-data", "tracks"],
             ["key 'sources'", "text.pth", "not a PyTorch checkpoint file", nothing]),
        Case("blend-files-plain-and-bare", ["blend", "./ckpt/bare.pth", "./ckpt/narrow.pth",
                                            "--weights", "0.5,0.5", "--val-data", "tracks"],
             ["key 'sources'", "under different keys", nothing]),
        Case("run-teacher-separator", ["run", "student", "--set",
                                       "teacher=./ckpt/x_encoder.pth"],
             ["experiment 'student'", "key 'teacher'", "a 'separator_model' checkpoint where "
              "'teacher_encoder'", nothing]),
        Case("run-teacher-no-pair", ["run", "student", "--set",
                                     "teacher=./ckpt/lone_encoder.pth"],
             ["key 'teacher'", "lone_classifier.pth", "is not beside it", nothing]),
        Case("run-device-no-cuda", ["run", "sep", "--set", "device=cuda:7"],
             ["experiment 'sep'", "key 'device'", "'cuda:7'", "no CUDA GPU", nothing],
             env={"NKD_GPUS": ""}),
        Case("run-student-pool", ["run", "student", "--set", "data=./data/pool", "--set",
                                  "teacher=./ckpt/lone_encoder.pth"],
             ["experiment 'student'", "key 'data'", "is an unlabelled pool",
              "the student is validated on labelled clips; set val_data=FOLDER", nothing]),
        Case("run-teacher-pool", ["run", "mark1", "--set", "data=./data/pool"],
             ["experiment 'mark1'", "key 'data'", "is an unlabelled pool",
              "noise.teacher reads labels from it", nothing]),
        Case("run-teacher-own-classes", ["run", "mark1", "--set", "data=./data/own"],
             ["experiment 'mark1'", "key 'classes'", "no clips of class 'apartment_noise', "
              "'daily_noise'", "the labels it holds are drip, hum, thud (by sub-folder)",
              """--set 'classes=["drip","hum","thud"]'""", nothing]),
        Case("run-teacher-own-classes-some", ["run", "mark1", "--set", "data=./data/own",
                                              "--set", 'classes=["thud","water"]'],
             ["key 'classes'", "no clips of class 'water'", nothing]),
        Case("run-device-unknown", ["run", "sep", "--set", "device=gpu0"],
             ["experiment 'sep'", "key 'device' must be auto, cpu, cuda or cuda:N", "'gpu0'"]),
        Case("run-demo-val-only", ["run", "merged_demo"],
             ["experiment 'merged_demo'", "key 'val_data': data source 'demo_val'",
              "nkd data synth separation", "--set val_data=FOLDER", nothing]),
    ]
    # tags, notes, archive
    cases += [
        Case("tag-spaces", ["tag", "{run}", "two words"], ["tag 'two words'", "no spaces"]),
        Case("tag-comma", ["tag", "{run}", "a,b"], ["tag 'a,b'", "no spaces or commas"]),
        # the refusal echoes the tag with its control characters visible, never as escapes
        Case("tag-control-sequence", ["tag", "{run}", "x\x1b]0;PWNED\x07"],
             ["tag 'x^[]0;PWNED^G'", "ASCII letters"]),
        Case("tag-unknown-run", ["tag", "nosuch_run", "best"], ["'nosuch_run'"]),
        Case("tag-remove-bad", ["tag", "{run}", "--remove", ""], ["tag ''"]),
        Case("note-too-long", ["note", "{run}", "x" * 2001], ["note for {run}", "at most 2000"]),
        Case("note-unknown-run", ["note", "nosuch_run", "hello"], ["'nosuch_run'"]),
        Case("archive-unknown-run", ["archive", "{run}", "nosuch_run"], ["'nosuch_run'"]),
        Case("archive-active-run", ["archive", "{run}"],
             ["run '{run}' is queued", "once it has ended"], db=_queued),
    ]
    for source, words in [
        ("empty", ["data source 'empty'", "holds no audio files"]),
        ("missing", ["data source 'missing'", "does not exist"]),
        ("short", ["data source 'short'", "all skipped", "too short"]),
        ("torn", ["data source 'torn'", "all skipped", "truncated wav"]),
        ("tracks", ["data source 'tracks' holds track folders"]),
        ("nosuch", ["no data source 'nosuch'"]),
    ]:
        cases.append(Case(f"data-{source}", ["data", "index", source], words))
    # a folder as `nkd run --set data=` takes it
    cases += [
        Case("data-index-no-folder", ["data", "index", "./data/nowhere"],
             ["data folder", "data/nowhere does not exist"]),
        Case("data-index-empty-folder", ["data", "index", "./data/empty"],
             ["data folder", "data/empty holds no track folders"]),
    ]
    # broken databases: every command names the file and the way out
    for label, breaker in [("garbage", _garbage), ("directory", _directory),
                           ("foreign", _foreign), ("truncated", _truncated_db)]:
        for argv in (["ps"], ["show", "{run}"], ["list"], ["run", "tick"], ["pause", "{run}"],
                     ["kill", "{run}"], ["logs", "{run}"], ["lineage", "{run}"], ["sync"],
                     ["queue"], ["tag", "{run}", "best"], ["note", "{run}", "hi"],
                     ["archive", "{run}"]):
            words = ["nkd.db", "nkd reindex"]
            cases.append(Case(f"db-{label}-{argv[0]}", argv, words, db=breaker))
    return cases


CASES = _cases()


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every file under runs/ and checkpoints/, and the store's rows."""
    out = {}
    for top in ("runs", "checkpoints"):
        for path in sorted((root / top).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    db = root / "nkd.db"
    if db.is_file():
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                for table in ("runs", "epochs", "metrics", "checkpoints", "lineage"):
                    rows = conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                    out[f"table:{table}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
        except sqlite3.Error:
            out["db-bytes"] = hashlib.sha256(db.read_bytes()).hexdigest()
    return out


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case, space: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared, run_id = space
    root = shared
    if case.db is not None:  # a copy of the workspace, so its database can be broken
        root = tmp_path / "ws"
        # without the database's side files, which come and go with its connections
        shutil.copytree(shared, root, symlinks=True,
                        ignore=shutil.ignore_patterns("nkd.db-wal", "nkd.db-shm"))
        with closing(sqlite3.connect(shared / "nkd.db")) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copy(shared / "nkd.db", root / "nkd.db")
        case.db(root / "nkd.db")
    registry = root / "experiments.toml"
    if case.registry is not None:
        registry = root / "bad.toml"
        registry.write_text(case.registry)
    before = _tree(root)
    for key, value in (case.env or {}).items():
        monkeypatch.setenv(key, value.replace("{root}", str(root)))
    argv = [a.replace("{run}", run_id).replace("{root}", str(root)) for a in case.argv]
    capsys.readouterr()
    code = main(["--registry", str(registry), *argv])
    err = capsys.readouterr().err
    assert code == 2, (code, err)
    assert err.count("\n") == 1, err  # one line
    assert "Traceback" not in err
    for word in case.words:
        assert word.replace("{run}", run_id) in err, (word, err)
    if case.registry is not None:
        assert str(registry) in err
    assert _tree(root) == before, "something recorded changed"
    if case.db is not None and case.db is not _directory:
        assert (root / "nkd.db").is_file()  # never deleted


@pytest.mark.parametrize("label,make,words", BAD_CHECKPOINTS, ids=[c[0] for c in BAD_CHECKPOINTS])
def test_bad_checkpoint_file_is_named(tmp_path: Path, label: str, make, words: str) -> None:
    from core.training import checkpoint

    path = tmp_path / f"{label}_model.pth"
    make(path)
    with pytest.raises(RunError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert message.startswith(str(path)) and words in message and "\n" not in message
    assert "weights_only=False" not in message
