"""Registry: resolution order, the shipped experiments.toml, and one clear line per bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import RegistryError
from core.registry import load_registry, substitute_command
from nkd_tui.cli import main

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[defaults]
seed = 42
lr = 1e-3
batch_size = 16

[data.noise]
root = "data/noise"

[experiments.base]
group = "noise"
recipe = "noise.teacher"
data = "noise"
epochs = 10
classes = ["a", "b", "c"]
reported = { accuracy = 0.9 }

[experiments.child]
extends = "base"
lr = 1e-4
classes = { a = ["a"], other = ["b", "c"] }

[experiments.grandchild]
extends = "child"
epochs = 3
pretrained = "base"

[experiments.script]
command = ["python", "train.py", "--lr", "{lr}", "--warm", "{warm}", "--amp", "{amp}"]
lr = 0.5
amp = true
params = { warm = 20 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiments.toml"
    path.write_text(text)
    return path


def test_resolution_order(tmp_path: Path) -> None:
    reg = load_registry(write(tmp_path, GOOD))
    g = reg.get("grandchild")
    assert g.chain == ("grandchild", "child", "base")
    assert g.params["seed"] == 42  # from defaults
    assert g.params["lr"] == 1e-4  # child overrides defaults
    assert g.params["epochs"] == 3  # own key overrides base
    assert g.params["batch_size"] == 16
    assert g.params["classes"] == {"a": ["a"], "other": ["b", "c"]}
    assert g.references["pretrained"].kind == "experiment"
    assert g.reported == {}  # a parent's reported values are not inherited
    assert reg.get("base").reported == {"accuracy": 0.9}
    assert reg.data["noise"].root == tmp_path / "data/noise"

    over = reg.resolve("grandchild", ["lr=0.01", "epochs=7", "optimizer=adamw", "device=cpu"])
    assert (over.params["lr"], over.params["epochs"]) == (0.01, 7)
    assert over.params["optimizer"] == "adamw"
    assert over.params["device"] == "cpu"
    assert reg.get("grandchild").params["epochs"] == 3  # the registry itself is unchanged


def test_command_placeholders_and_params(tmp_path: Path) -> None:
    reg = load_registry(write(tmp_path, GOOD))
    exp = reg.resolve("script", ["warm=5"])
    assert substitute_command(exp) == ["python", "train.py", "--lr", "0.5", "--warm", "5",
                                       "--amp", "true"]
    exp = reg.resolve("script", ["params.warm=7", "lr=2"])
    assert substitute_command(exp)[3:6] == ["2", "--warm", "7"]


def test_shipped_registry_has_the_researchers_experiments() -> None:
    reg = load_registry(ROOT / "experiments.toml")
    e = reg.experiments
    for name in ("mark1", "mark1.soft_labels", "mark1.student", "mark1.ensemble", "mark2",
                 "mark3", "mark2.5", "mark2.6", "mark2.7", "mark2.8", "mark2.9", "crnn_long",
                 "crnn_large_finetune", "crnn_large_finetune_ver1", "crnn_large_final_tune",
                 "crnn_large_merged", "crnn_large_ultimate_4db", "crnn_large_final_fix",
                 "crnn_large_merged_0_8_0_2", "crnn_large_merged_0_9_0_1",
                 "retrain_with_augmentation", "unet_crnn_rhythm", "ts_recon_cls"):
        assert name in e, name
    assert e["mark1"].params["classes"] == ["apartment_noise", "daily_noise", "background_noise"]
    assert (e["mark1"].params["epochs"], e["mark1"].params["lr"]) == (100, 1e-4)
    assert list(e["mark2"].params["classes"]) == ["apartment_noise", "other_noise"]
    for mark in ("mark2.5", "mark2.6", "mark2.7", "mark2.8", "mark2.9"):
        assert (e[mark].params["alpha"], e[mark].params["kd_temperature"]) == (0.7, 4.0)
    assert (e["crnn_long"].params["hidden_size"], e["crnn_long"].params["num_layers"]) == (256, 3)
    assert e["crnn_long"].reported["sdr_db"] == 3.20
    ft = e["crnn_large_final_tune"].params
    assert (ft["hidden_size"], ft["num_layers"], ft["batch_size"], ft["lr"]) == (512, 4, 8, 1e-4)
    assert str(e["crnn_large_final_tune"].references["pretrained"]) == "crnn_large_finetune_ver1"
    assert e["crnn_large_final_tune"].reported["sdr_db"] == 3.9331
    ult = e["crnn_large_ultimate_4db"]
    assert (ult.params["lr"], str(ult.references["pretrained"])) == (5e-5, "crnn_large_merged")
    fix = e["crnn_large_final_fix"].params
    assert (fix["lr"], fix["epochs"]) == (1e-5, 5)
    blend = {s.target: s.weight for s in e["crnn_large_merged_0_8_0_2"].sources}
    assert blend == {"crnn_large_final_tune": 0.8, "crnn_large_ultimate_4db": 0.2}
    assert e["crnn_large_merged_0_8_0_2"].reported["sdr_db"] == 2.8281
    blend = {s.target: s.weight for s in e["crnn_large_merged_0_9_0_1"].sources}
    assert blend == {"crnn_large_final_tune": 0.9, "crnn_large_ultimate_4db": 0.1}
    unet = e["unet_crnn_rhythm"].params
    assert (unet["model"], unet["optimizer"], unet["weight_decay"]) == ("unet_crnn", "adamw", 1e-3)
    assert unet["rhythm_head"] is True and unet["dropout"] == 0.4


BAD = [
    # (registry text, words the one-line message must contain)
    ("[experiments.a\ncommand = ['t']", ["TOML syntax error", "line 1"]),
    ("[experiment.a]\ncommand = ['t']", ["unknown top-level table 'experiment'",
                                         "did you mean 'experiments'"]),
    ("[experiments.a]\ncommand = ['t']\nbatchsize = 8",
     ["experiment 'a'", "unknown key 'batchsize'", "did you mean 'batch_size'"]),
    ("[experiments.a]\ncommand = ['t']\nepochs = 'ten'", ["experiment 'a'", "key 'epochs'",
                                                         "must be an integer"]),
    ("[experiments.a]\ncommand = ['t']\nlr = 'fast'", ["key 'lr' must be a number"]),
    ("[experiments.a]\ncommand = ['t']\nepochs = true", ["key 'epochs' must be an integer"]),
    ("[experiments.a]\ncommand = ['t']\noptimizer = 'adamm'", ["key 'optimizer' must be one of",
                                                              "adamw"]),
    ("[experiments.a]\ncommand = ['t']\nepochs = -1", ["key 'epochs' must be > 0"]),
    ("[experiments.a]\nextends = 'mark0'\ncommand = ['t']", ["experiment 'a'", "key 'extends'",
                                                            "unknown experiment 'mark0'"]),
    ("[experiments.a]\nextends = 'b'\ncommand = ['t']\n[experiments.b]\nextends = 'a'",
     ["'extends' cycle", "a -> b -> a"]),
    ("[experiments.a]\nextends = 'a'\ncommand = ['t']", ["'extends' cycle", "a -> a"]),
    ("[experiments.crnn_long]\ncommand = ['t']\n[experiments.b]\ncommand = ['t']\n"
     "pretrained = 'crnn_lng'", ["experiment 'b'", "key 'pretrained'",
                                 "unknown reference 'crnn_lng'", "did you mean 'crnn_long'"]),
    ("[experiments.a]\ncommand = ['t']\nteacher = 'a'",
     ["key 'teacher'", "cannot refer to itself"]),
    ("[experiments.a]\ncommand = ['t']\nteacher = 'run:'", ["'run:' needs a run id"]),
    ("[data.noise]\nroot = 'd'\n[experiments.a]\ncommand = ['t']\ndata = 'nois'",
     ["key 'data'", "unknown data source 'nois'", "did you mean 'noise'"]),
    ("[experiments.a]\ncommand = ['t']\n[experiments.b]\ncommand = ['t']\n[experiments.m]\n"
     "recipe = 'separation.blend'\nsources = { a = 0.8, b = 0.1 }",
     ["experiment 'm'", "key 'sources'", "weights sum to 0.9, not 1"]),
    ("[experiments.a]\ncommand = ['t']\n[experiments.m]\nrecipe = 'separation.blend'\n"
     "sources = { a = 1.0 }", ["at least two sources"]),
    ("[experiments.a]\ncommand = ['t']\n[experiments.b]\ncommand = ['t']\n[experiments.m]\n"
     "recipe = 'separation.blend'\nsources = { a = 1.5, b = -0.5 }", ["weight of 'a' is 1.5",
                                                           "must be in (0, 1]"]),
    ("[experiments.m]\nrecipe = 'separation.blend'\nsources = { a = 'half', b = 0.5 }",
     ["key 'sources' must be a table of source -> weight"]),
    ("[experiments.a]\nrecipe = 'X.Y'\ncommand = ['python', 't.py']",
     ["has both of 'recipe' and 'command'"]),
    ("[experiments.a]\nepochs = 3", ["has neither of 'recipe' and 'command'"]),
    ("[experiments.a]\ncommand = ['python', 't.py', '--lr', '{lrr}']\nlr = 0.1",
     ["key 'command'", "placeholder '{lrr}'", "did you mean 'lr'"]),
    ("[experiments.a]\ncommand = []", ["key 'command': must not be empty"]),
    ("[experiments.a]\ncommand = ['python', 3]", ["key 'command' must be a list of strings"]),
    ("[experiments.a]\ncommand = ['t']\nclasses = ['a', 'b', 'a']", ["a class is listed twice"]),
    ("[experiments.a]\ncommand = ['t']\nclasses = { p = ['a'], q = ['a', 'b'] }",
     ["'a' is mapped to both 'p' and 'q'"]),
    ("[experiments.a]\ncommand = ['t']\nclasses = 'a'", ["key 'classes' must be a list of class"]),
    ("[data.noise]\nkind = 'noise'", ["data source 'noise'", "missing required key 'root'"]),
    ("[data.noise]\nroot = 'd'\nlabel = 'folder'", ["data source 'noise'", "unknown key 'label'"]),
    ("[experiments.a]\nrecipe = 'noise'", ["experiment 'a'", "unknown recipe 'noise'"]),
    ("[experiments]\na = 3", ["experiment 'a' must be a table"]),
    ("[defaults]\nsead = 1", ["[defaults]", "unknown key 'sead'", "did you mean 'seed'"]),
    ("[experiments.a]\ncommand = ['t']\nreported = 3.9", ["key 'reported' must be a table"]),
    ("include = ['nope.toml']\n", ["include 'nope.toml'", "nope.toml not found"]),
    ("include = 'x.toml'\n", ["'include' must be a list of registry file paths"]),
    ("[workspace]\nrun = 'x'\n", ["[workspace]: unknown key 'run'"]),
    ("[workspace]\nruns = 5\n", ["[workspace]: key 'runs' must be a path"]),
    ("[experiments.a]\ncommand = ['t']\npretrained = 'best:nope'",
     ["unknown experiment 'nope' in 'best:nope'"]),
    ("[experiments.a]\ncommand = ['t']\ntest_data = 'nope'",
     ["key 'test_data': unknown data source 'nope'"]),
    ("[experiments.a]\ncommand = ['t']\ndata = './no/such/folder'",
     ["key 'data': folder", "no/such/folder does not exist"]),
]
# values that could only fail later, names that would leave runs/, recipes without their keys
T = "[data.d]\nroot = 'd'\n[experiments.a]\nrecipe = 'noise.teacher'\ndata = 'd'\n"
BAD += [
    (T + "classes = ['x', 'y']\nbatch_size = 0",
     ["experiment 'a'", "key 'batch_size' must be > 0"]),
    (T + "classes = ['x', 'y']\nlr = nan", ["key 'lr' must be a finite number"]),
    (T + "classes = ['x', 'y']\nlr = inf", ["key 'lr' must be a finite number"]),
    (T + "classes = ['x', 'y']\nlr = 0", ["key 'lr' must be > 0, got 0"]),
    (T + "classes = ['x', 'y']\nepochs = 0", ["key 'epochs' must be > 0, got 0"]),
    (T + "classes = ['x', 'y']\nalpha = 1.5", ["key 'alpha' must be in [0, 1]"]),
    (T + "classes = ['x', 'y']\ndropout = 1.0", ["key 'dropout' must be in [0, 1)"]),
    (T + "classes = ['x', 'y']\nseed = -3", ["key 'seed' must be ≥ 0"]),
    (T + "classes = ['x']", ["key 'classes'", "at least two classes"]),
    (T, ["experiment 'a'", "recipe 'noise.teacher' needs key 'classes'"]),
    ("[experiments.a]\nrecipe = 'separation.evaluate'",
     ["recipe 'separation.evaluate' needs key 'pretrained'"]),
    ("[experiments.a]\nrecipe = 'separation.blend'",
     ["recipe 'separation.blend' needs keys 'sources', 'val_data'"]),
    ("[experiments.a]\nrecipe = 'noise.teacherr'", ["unknown recipe 'noise.teacherr'"]),
    ("[experiments.\"../../escape\"]\ncommand = ['t']", ["experiment '../../escape'",
                                                     "not a valid name"]),
    ("[experiments.\"a/b\"]\ncommand = ['t']", ["experiment 'a/b'", "not a valid name"]),
    ("[experiments.\".hidden\"]\ncommand = ['t']", ["not a valid name"]),
    ("[experiments.\"" + "x" * 81 + "\"]\ncommand = ['t']", ["at most 80 characters"]),
    ("[experiments.m]\nrecipe = 'separation.blend'\nval_data = 'd'\n"
     "sources = { a = nan, b = 0.5 }", ["weight of 'a' is nan"]),
    # the queue's keys and tables
    ("[experiments.a]\ncommand = ['t']\ngpus = -1", ["key 'gpus' must be ≥ 0"]),
    ("[experiments.a]\ncommand = ['t']\ngpu_memory = 'lots'",
     ["key 'gpu_memory' must be a size such as \"10GiB\""]),
    ("[experiments.a]\ncommand = ['t']\npriority = 'high'", ["key 'priority' must be an integer"]),
    ("[queue]\nruns_per_gpu = 0", ["[queue]", "key 'runs_per_gpu' must be an integer ≥ 1"]),
    ("[queue]\ngpus = 'all'", ["[queue]", "key 'gpus' must be a list of GPU indices"]),
    ("[queue]\nutilisation = 50", ["[queue]", "unknown key 'utilisation'"]),
    ("[queue]\nutilization_ceiling = 150", ["key 'utilization_ceiling' must be a percentage"]),
    ("[experiments.a]\ncommand = ['t']\n[sweeps.s]\nexperiment = 'b'\ngrid = { lr = [1] }",
     ["sweep 's'", "unknown experiment 'b'"]),
    ("[experiments.a]\ncommand = ['t']\n[sweeps.s]\nexperiment = 'a'\ngrid = { lr = [] }",
     ["sweep 's'", "key 'grid' must be a table of key -> non-empty list"]),
    ("[experiments.a]\ncommand = ['t']\n[sweeps.a]\nexperiment = 'a'\ngrid = { lr = [1] }",
     ["sweep 'a'", "an experiment has the same name"]),
    # sampled sweeps and halving
    ("[data.d]\nroot = 'd'\nkind = 'separation'\n[experiments.s1]\nrecipe = 'separation.train'\ndata = 'd'\nepochs = 10\n[sweeps.h]\nexperiment = 's1'\nsample = { lr = 'gaussian(0, 1)' }\ntrials = 4",  # noqa: E501
     ["sweep 'h'", "key 'sample.lr'", "unknown distribution 'gaussian'"]),
    ("[data.d]\nroot = 'd'\nkind = 'separation'\n[experiments.s1]\nrecipe = 'separation.train'\ndata = 'd'\nepochs = 10\n[sweeps.h]\nexperiment = 's1'\nsample = { lr = 'uniform(2, 1)' }\ntrials = 4", ["sweep 'h'", "needs a < b"]),  # noqa: E501
    ("[data.d]\nroot = 'd'\nkind = 'separation'\n[experiments.s1]\nrecipe = 'separation.train'\ndata = 'd'\nepochs = 10\n[sweeps.h]\nexperiment = 's1'\nsample = { lr = 'loguniform(0, 1)' }\ntrials = 4",  # noqa: E501
     ["sweep 'h'", "loguniform needs bounds above 0"]),
    ("[data.d]\nroot = 'd'\nkind = 'separation'\n[experiments.s1]\nrecipe = 'separation.train'\ndata = 'd'\nepochs = 10\n[sweeps.h]\nexperiment = 's1'\nsample = { lr = 'loguniform(1e-4, 1e-2)' }",  # noqa: E501
     ["sweep 'h'", "key 'trials' must be an integer in [1, 1000]"]),
    ("[data.d]\nroot = 'd'\nkind = 'separation'\n[experiments.s1]\nrecipe = 'separation.train'\ndata = 'd'\nepochs = 10\n[sweeps.h]\nexperiment = 's1'\nsample = { lr = [1e-3] }\ntrials = 4\nhalving = { metric = 'val_sdr', rungs = [3, 2] }",  # noqa: E501
     ["sweep 'h'", "key 'halving'", "key 'rungs' must increase"]),
    ("[data.d]\nroot = 'd'\nkind = 'separation'\n[experiments.s1]\nrecipe = 'separation.train'\ndata = 'd'\nepochs = 10\n[sweeps.h]\nexperiment = 's1'\nsample = { lr = [1e-3] }\ntrials = 4\nhalving = { metric = 'val_sdr', rungs = [5, 20] }",  # noqa: E501
     ["sweep 'h'", "key 'halving'", "rung 20 is beyond the experiment's 10 epochs"]),
    ("[data.d]\nroot = 'd'\nkind = 'separation'\n[experiments.s1]\nrecipe = 'separation.train'\ndata = 'd'\nepochs = 10\n[sweeps.h]\nexperiment = 's1'\nsample = { lr = [1e-3] }\ntrials = 4\nhalving = { metric = 'val_accuracy', rungs = [2] }",  # noqa: E501
     ["sweep 'h'", "metric 'val_accuracy' is never recorded by separation.train"]),
    ("[data.d]\nroot = 'd'\nkind = 'separation'\n[experiments.s1]\nrecipe = 'separation.train'\ndata = 'd'\nepochs = 10\n[sweeps.h]\nexperiment = 's1'\nsample = { lr = [1e-3] }\ntrials = 4\nhalving = { metric = 'val_sdr', rungs = [2], keep = 1.5 }",  # noqa: E501
     ["sweep 'h'", "key 'keep' must be a share in (0, 1)"]),
    ("[experiments.c]\ncommand = ['t']\n[sweeps.h]\nexperiment = 'c'\nsample = { lr = [1] }\n"
     "trials = 2\nhalving = { metric = 'loss', rungs = [2] }",
     ["sweep 'h'", "needs a built-in training recipe"]),
    # own scripts
    ("[experiments.a]\ncommand = ['t']\ncheckpoints = { worst = 'x_*.pth' }",
     ["key 'checkpoints' must be a list of glob patterns, or a table of role"]),
    ("[experiments.a]\ncommand = ['t']\ncheckpoint_copy = 'move'",
     ["key 'checkpoint_copy' must be one of link, copy, none"]),
    ("[experiments.a]\ncommand = ['t']\noutput_scalars = ['(?P<epoch']",
     ["key 'output_scalars'", "is not a regular expression"]),
    ("[experiments.a]\ncommand = ['t']\non_finish = ['notify', '{name}']",
     ["key 'on_finish'", "placeholder '{name}' is not one of {run_id}"]),
    ("[experiments.a]\ncommand = ['t']\non_finish = []", ["key 'on_finish': must not be empty"]),
    ("[experiments.a]\ncommand = ['t']\nevaluates = 'student'",
     ["key 'evaluates' must be one of pretrained, teacher"]),
    ("[experiments.a]\ncommand = ['t']\ntensorboard_dir = 3",
     ["key 'tensorboard_dir' must be a string"]),
    # Slurm
    ("[experiments.a]\ncommand = ['t']\nbackend = 'slurm'",
     ["experiment 'a'", "key 'backend'", "needs a [backends.slurm] table"]),
    ("[experiments.a]\ncommand = ['t']\nbackend = 'k8s'", ["key 'backend' must be one of"]),
    ("[backends.k8s]\nnamespace = 'x'", ["[backends.k8s]", "unknown backend 'k8s'"]),
    ("[backends.slurm]\npartitoin = 'gpu'", ["[backends.slurm]", "unknown key 'partitoin'"]),
    ("[backends.slurm]\ncpus = 0", ["[backends.slurm]", "key 'cpus' must be an integer ≥ 1"]),
    ("[backends.slurm]\nextra = ['rm -rf /']", ["key 'extra'", "one sbatch option"]),
    ("[backends.slurm]\nsetup = 'module load cuda'", ["key 'setup' must be a list of strings"]),
    ('[backends.slurm]\ntime = "one\\nday"', ["key 'time' must be a one-line string"]),
]


@pytest.mark.parametrize("text,words", BAD, ids=[f"bad{i:02d}" for i in range(len(BAD))])
def test_bad_registry_gives_one_clear_line_and_exit_2(
    tmp_path: Path, text: str, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert info.value.exit_code == 2
    assert main(["--registry", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # exactly one line
    assert str(path) in err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "nkd.db").exists()


def test_missing_registry_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--registry", str(tmp_path / "nope.toml"), "check"]) == 2
    assert "registry file not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override,words",
    [
        ("epohcs=3", ["unknown key 'epohcs'", "did you mean 'epochs'"]),
        ("epochs=ten", ["key 'epochs' must be an integer"]),
        ("optimizer=lion", ["key 'optimizer' must be one of"]),
        ("pretrained=nothing_here", ["unknown reference 'nothing_here'"]),
        ("pretrained=best:nothing_here", ["unknown experiment 'nothing_here' in "
                                          "'best:nothing_here'"]),
        ("pretrained=base@lr", ["'base@lr' needs EXP@key=value"]),
        ("epochs", ["--set 'epochs' is not key=value"]),
    ],
)
def test_bad_override_starts_nothing(
    tmp_path: Path, override: str, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD)
    assert main(["--registry", str(path), "run", "script", "--set", override, "--detach"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "experiment 'script'" in err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "runs").exists()


def test_recipe_not_built_yet_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.registry import recipes

    monkeypatch.setitem(recipes.PLANNED, "vocoder", "neural vocoders")
    path = write(tmp_path, GOOD.replace('recipe = "noise.teacher"', 'recipe = "vocoder.train"'))
    assert main(["--registry", str(path), "run", "base", "--detach"]) == 2
    err = capsys.readouterr().err
    assert "recipe 'vocoder.train' is not built yet" in err and "nothing was started" in err
    assert not (tmp_path / "runs").exists()


def test_unknown_experiment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD)
    assert main(["--registry", str(path), "run", "grandchld"]) == 2
    assert "unknown experiment 'grandchld' (did you mean 'grandchild'?)" in capsys.readouterr().err


def test_a_project_registry_includes_another_and_places_its_workspace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`include` brings the shared registry's sources and experiments in (the project's own
    win, data roots stay relative to the shared file); `[workspace]` puts runs, checkpoints, the
    database and the caches where it says, and nothing beside the shared registry."""
    import sys

    from conftest import TICKER

    from core.registry import load_registry
    from core.registry.workspace import Workspace

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "experiments.toml").write_text(
        '[data.clips]\nroot = "clips"\nkind = "noise"\n\n'
        f'[experiments.tick]\ncommand = ["{sys.executable}", "{TICKER}", "--epochs", '
        '"{epochs}", "--delay", "0"]\nepochs = 3\n\n'
        f'[experiments.other]\ncommand = ["{sys.executable}", "-c", "pass"]\n')
    project = tmp_path / "project"
    project.mkdir()
    registry = project / "experiments.toml"
    registry.write_text(
        'include = ["../shared/experiments.toml"]\n\n'
        '[workspace]\nruns = "out/runs"\ncheckpoints = "out/ckpt"\ndb = "out/nkd.db"\n'
        'cache = "/tmp/../' + str(tmp_path / "cache").lstrip("/") + '"\n\n'
        '[experiments.tick]\ncommand = ["python", "-c", "print(1)"]\ngroup = "mine"\n')
    reg = load_registry(registry)
    assert set(reg.experiments) == {"tick", "other"}
    assert reg.experiments["tick"].group == "mine"  # the project's own wins
    assert reg.data["clips"].root == shared / "clips"
    ws = Workspace.at(registry)
    assert ws.runs_dir == project / "out" / "runs" and ws.db_path == project / "out" / "nkd.db"
    assert ws.cache_dir.resolve() == (tmp_path / "cache").resolve()
    assert main(["--registry", str(registry), "run", "other"]) == 0
    assert len(list((project / "out" / "runs").iterdir())) == 1
    assert (project / "out" / "nkd.db").is_file() and not (project / "nkd.db").exists()
    assert not (shared / "runs").exists() and not (shared / "nkd.db").exists()
    capsys.readouterr()
    (shared / "experiments.toml").write_text('include = ["../project/experiments.toml"]\n')
    assert main(["--registry", str(registry), "check"]) == 2
    assert "includes itself (a cycle)" in capsys.readouterr().err
    registry.write_text('[workspace]\nrun = "x"\n')
    assert main(["--registry", str(registry), "check"]) == 2
    assert "[workspace]: unknown key 'run'" in capsys.readouterr().err


def test_nkd_keys_shows_every_default(capsys) -> None:
    from nkd_tui.cli import main

    assert main(["keys"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "default 0.4 (model unet_crnn), 0 otherwise" in lines["dropout"]
    assert "default 0" in lines["wiener_iterations"] and "default 0" in lines["seed"]
    assert "default 0.001" in lines["lr"]
    assert "default 16 (noise), 8 (separation)" in lines["batch_size"]
    assert "none on the CPU" in lines["num_workers"]


def test_resolved_settings_fill_every_key_a_recipe_reads() -> None:
    from core.registry.settings import reads, resolve

    settings, origin = resolve("separation.train", {"model": "unet_crnn", "seed": 42},
                               from_defaults={"seed"})
    assert settings["dropout"] == 0.4 and origin["dropout"] == "default"
    assert settings["seed"] == 42 and origin["seed"] == "[defaults]"
    assert settings["batch_size"] == 8 and settings["wiener_iterations"] == 0
    noise, _ = resolve("noise.teacher", {})
    assert noise["batch_size"] == 16 and noise["sample_rate"] == 16000
    assert "alpha" not in noise and "alpha" in reads("noise.hybrid_kd")
    assert "num_workers" not in settings  # decided by its rule when the run starts
