"""Sampled sweeps and successive halving: trials drawn with a seed, run through the queue to
their first rung, suspended there, the best share promoted (resumed from their state) and the
rest pruned, keeping their records."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from core.backends.queue.halving import Trial, decide
from core.registry.sampling import parse_distribution
from core.runs.sweeps import draws, expand
from core.store import Store
from nkd_tui.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_draws_are_the_seeds_and_in_their_bounds() -> None:
    sample = {"lr": parse_distribution("loguniform(1e-4, 1e-2)"),
              "hidden_size": parse_distribution([32, 64]),
              "num_layers": parse_distribution("int(1, 3)"),
              "dropout": parse_distribution("uniform(0, 0.5)")}
    first, again = draws(sample, 20, seed=3), draws(sample, 20, seed=3)
    assert first == again and draws(sample, 20, seed=4) != first
    for trial in first:
        values = dict(item.split("=") for item in trial)
        assert 1e-4 <= float(values["lr"]) < 1e-2 and values["hidden_size"] in ("32", "64")
        assert values["num_layers"] in ("1", "2", "3") and 0 <= float(values["dropout"]) < 0.5
    # on the command line: each draw goes with every combination of the listed values
    combos = expand(["lr=loguniform(1e-4,1e-2)", "batch_size=4,8"], "x", trials=3)
    assert len(combos) == 6 and len({c[1] for c in combos}) == 3


@pytest.mark.parametrize("value,why", [
    ("gaussian(0, 1)", "unknown distribution 'gaussian'"),
    ("uniform(2, 1)", "needs a < b"),
    ("loguniform(0, 1)", "loguniform needs bounds above 0"),
    ("int(1.5, 3)", "int needs whole-number bounds"),
    ([], "an empty list"),
])
def test_a_bad_distribution_says_why(value, why) -> None:
    got = parse_distribution(value)
    assert isinstance(got, str) and why in got


def _trial(run: str, status: str, epoch: int, values: dict[int, float]) -> Trial:
    return Trial(run, status, epoch, epoch, values)


def test_halving_promotes_and_prunes_as_soon_as_a_trial_is_sure_of_its_place() -> None:
    """Six trials, a third go on (a quota of 2). With three at rung 1 and three yet to come,
    the worst of the three is sure to be out: pruned at once; the others wait. Once every trial
    has reported (one failed: the quota is of five), exactly the quota goes on."""
    rungs, keep = (1, 3), 1 / 3
    early = [_trial("a", "suspended", 1, {1: 3.0}), _trial("b", "suspended", 1, {1: 5.0}),
             _trial("c", "suspended", 1, {1: 1.0}), _trial("d", "running", 0, {}),
             _trial("e", "queued", 0, {}), _trial("f", "queued", 0, {})]
    got = decide(early, rungs, keep, maximize=True)
    assert got.promote == [] and [r for r, _ in got.prune] == ["c"]
    full = [_trial("a", "suspended", 1, {1: 3.0}), _trial("b", "suspended", 1, {1: 5.0}),
            _trial("d", "suspended", 1, {1: 4.0}), _trial("e", "suspended", 1, {1: 0.5}),
            _trial("g", "suspended", 1, {1: 0.7}), _trial("f", "failed", 0, {})]
    got = decide(full, rungs, keep, maximize=True)
    assert got.promote == [("b", 3), ("d", 3)]
    assert sorted(r for r, _ in got.prune) == ["a", "e", "g"]
    assert "pruned at rung 1: 3 of 5 (the best 2 go on)" in dict(got.prune)["a"]
    # minimising: the lowest values go on
    assert [r for r, _ in decide(full, rungs, keep, maximize=False).promote] == ["e", "g"]
    # promoted ones are not promoted again; the last rung's go on to the end
    again = [_trial("c", "queued", 1, {1: 9.0}), _trial("b", "suspended", 3, {1: 5.0, 3: 1.0}),
             _trial("d", "suspended", 3, {1: 4.0, 3: 2.0})]
    got = decide(again, rungs, 0.5, maximize=True)
    assert got.promote == [("d", None)] and got.prune == []  # b waits for c


HALVING = """
[sweeps.tune]
experiment = "crnn_long"
sample = { lr = "loguniform(1e-3, 1e-2)", hidden_size = [16, 32] }
trials = 4
seed = 1
halving = { metric = "val_sdr", mode = "max", rungs = [1, 2], keep = 0.5 }
"""
SMALL = ["--set", "num_layers=1", "--set", "segment_seconds=1.0", "--set", "epochs=2",
         "--set", "batch_size=4", "--set", "threads=1"]


def test_a_halving_sweep_suspends_promotes_and_prunes_through_the_queue(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """4 sampled trials, rungs [1, 2], keep a half: all 4 suspended at epoch 1, the best 2
    resumed from their state to epoch 2, the other 2 pruned with their records kept, and
    `nkd sweep show` prints the rungs."""
    shutil.copy(ROOT / "experiments.toml", tmp_path / "experiments.toml")
    with open(tmp_path / "experiments.toml", "a") as fh:
        fh.write(HALVING + '\n[queue]\nmax_running = 2\n')
    reg = str(tmp_path / "experiments.toml")
    assert main(["--registry", reg, "data", "synth", "separation", "--tracks", "3",
                 "--seconds", "4"]) == 0
    assert main(["--registry", reg, "run", "tune", "--sweep-name", "tune1", *SMALL]) == 0
    store = Store(tmp_path / "nkd.db")
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            rows = store.list_runs(sweep="tune1", columns=("id", "status", "epoch"))
            if len(rows) == 4 and all(r["status"] in ("finished", "pruned", "failed")
                                      for r in rows):
                break
            time.sleep(0.5)
        rows = {r["id"]: r for r in store.list_runs(sweep="tune1",
                                                    columns=("id", "status", "epoch"))}
        assert sorted(r["status"] for r in rows.values()) == ["finished", "finished",
                                                              "pruned", "pruned"]
        for run_id, row in rows.items():
            events = store.conn.execute(
                "SELECT COUNT(*) FROM epochs WHERE run = ?", (run_id,)).fetchone()[0]
            assert events == (2 if row["status"] == "finished" else 1), run_id
        # the promoted ones went on from their state: their log says they resumed at epoch 1
        for run_id, row in rows.items():
            log = (tmp_path / "runs" / run_id / "output.log").read_text()
            assert ("halving: rung 1 reached" in log)
            if row["status"] == "finished":
                assert "resumed separator after epoch 1" in log
    finally:
        store.close()
    # a promoted trial went on bit-identically: the same settings trained straight to epoch 2
    # give the same losses
    store = Store(tmp_path / "nkd.db")
    try:
        done = next(r for r in rows.values() if r["status"] == "finished")
        params = store.get_run(done["id"])["params"]
        drawn = [x for k in ("lr", "hidden_size") for x in ("--set", f"{k}={params[k]}")]
        assert main(["--registry", reg, "run", "crnn_long", *SMALL, *drawn]) == 0
        straight = store.latest_run("crnn_long")
        assert straight["id"] not in rows

        def losses(run_id: str) -> list[tuple[float, float]]:
            return [(e["train_loss"], e["val_loss"]) for e in store.epochs(run_id)]

        assert losses(straight["id"]) == losses(done["id"])
    finally:
        store.close()
    capsys.readouterr()
    assert main(["--registry", reg, "sweep", "show", "tune1"]) == 0
    out = capsys.readouterr().out
    assert "RUNG 1" in out and "RUNG 2" in out and out.count("pruned") >= 2
    assert "best" in out


def test_a_sweep_is_cancelled_and_compared_as_one(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Drawn trials held in a paused queue: `nkd sweep cancel` takes them all out at once, and
    `nkd compare --sweep` puts them side by side."""
    reg = tmp_path / "experiments.toml"
    reg.write_text('[experiments.tick]\ncommand = ["python", "-c", "pass"]\n')
    assert main(["--registry", str(reg), "queue", "pause"]) == 0
    assert main(["--registry", str(reg), "run", "tick", "--set", "priority=int(1, 9)",
                 "--trials", "3", "--draw-seed", "5", "--sweep-name", "s3"]) == 0
    capsys.readouterr()
    assert main(["--registry", str(reg), "compare", "--sweep", "s3"]) == 0
    out = capsys.readouterr().out
    assert "#3" in out and "priority" in out
    assert main(["--registry", str(reg), "sweep", "cancel", "s3"]) == 0
    assert "3 trial(s) cancelled" in capsys.readouterr().out
    store = Store(tmp_path / "nkd.db")
    try:
        assert {r["status"] for r in store.list_runs(sweep="s3")} == {"cancelled"}
    finally:
        store.close()


def test_parallel_axes_place_settings_and_colour_trials_by_their_metric() -> None:
    """A learning rate over more than a decade goes on a log axis, a list on evenly spaced
    places; trials are coloured by their metric's third, one not scored yet is grey."""
    from core.runs.sweep_summary import SweepSummary, TrialRow
    from nkd_tui.parallel import axes_and_lines, axis_of

    lr = axis_of("lr", [1e-4, 1e-3, 1e-2])
    assert lr.kind == "log" and lr.position(1e-3) == pytest.approx(0.5)
    assert axis_of("alpha", [0.2, 0.8]).position(0.5) == pytest.approx(0.5)
    size = axis_of("hidden_size", [256, 512, 384])
    assert size.kind == "linear" and size.position(384) == pytest.approx(0.5)
    norm = axis_of("norm", ["batch", "layer", "none"])
    assert norm.kind == "choice" and [norm.position(v) for v in ("batch", "none")] == [0, 1]
    assert norm.position("group") is None and lr.position(None) is None

    def trial(n: int, lr: float, value: float | None) -> TrialRow:
        return TrialRow(f"t{n}", {"lr": lr, "epochs": 5}, "finished", 5, 5,
                        {} if value is None else {5: value})

    summary = SweepSummary("s", "crnn", [trial(0, 1e-4, 2.0), trial(1, 1e-3, 4.0),
                                         trial(2, 1e-2, 1.0), trial(3, 3e-4, None)],
                           ["lr"], {"metric": "val_sdr", "mode": "max", "rungs": [5],
                                    "keep": 0.5}, "val_loss", False)
    axes, lines = axes_and_lines(summary)
    assert [a.name for a in axes] == ["lr", "val_sdr"]
    colours = {run: colour for run, _ys, colour in lines}
    assert colours == {"t1": "green", "t0": "orange", "t2": "red", "t3": "gray"}
    assert dict((run, ys[-1]) for run, ys, _c in lines)["t1"] == pytest.approx(1.0)
    assert summary.best() == ("t1", 5, 4.0)


def test_a_stopped_sweep_prunes_its_trials_waiting_at_a_rung(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`nkd sweep stop` ends a trial suspended at its rung as `pruned`: nothing promotes it
    after the others are gone."""
    import json

    from core.store.reporter import Reporter

    reg = tmp_path / "experiments.toml"
    reg.write_text('[experiments.tick]\ncommand = ["python", "-c", "pass"]\n')
    store = Store(tmp_path / "nkd.db")
    halving = {"metric": "val_loss", "mode": "min", "rungs": [1, 2], "keep": 0.5}
    for n, status in enumerate(("suspended", "suspended")):
        run_id = f"tick_20260101_00000{n}"
        run_dir = tmp_path / "runs" / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text(json.dumps({"run_id": run_id, "halving": halving}))
        rep = Reporter(run_id, run_dir, store)
        rep.event({"type": "run", "experiment": "tick", "sweep": "h1", "t": 1.0 + n})
        rep.event({"type": "status", "status": "running", "t": 2.0 + n})
        rep.event({"type": "epoch", "epoch": 1, "train_loss": 1.0, "val_loss": 1.0 + n,
                   "t": 3.0 + n})
        rep.event({"type": "status", "status": status, "t": 4.0 + n})
        rep.close()
    capsys.readouterr()
    assert main(["--registry", str(reg), "sweep", "stop", "h1"]) == 0
    out = capsys.readouterr().out
    assert "pruned: its sweep was stopped" in out and "2 trial(s) cancelled or stopped" in out
    assert {r["status"] for r in store.list_runs(sweep="h1")} == {"pruned"}
    store.close()


def test_a_trial_without_the_metric_at_its_rung_is_pruned_not_left_waiting() -> None:
    trials = [Trial("a", "suspended", 1, 1, {1: 2.0}), Trial("b", "suspended", 1, 1, {})]
    chosen = decide(trials, (1, 3), 0.5, maximize=True)
    assert chosen.promote == [("a", 3)]
    assert chosen.prune == [("b", "pruned at rung 1: it recorded no value of the sweep's "
                                  "metric there")]


def test_a_failed_trial_does_not_hold_its_sweep() -> None:
    """A trial that failed before its rung is neither waited for nor counted: the others are
    decided as soon as they report."""
    trials = [Trial("a", "suspended", 1, 1, {1: 3.0}), Trial("b", "suspended", 1, 1, {1: 1.0}),
              Trial("c", "failed", 0, 1)]
    chosen = decide(trials, (1, 3), 0.5, maximize=True)
    assert chosen.promote == [("a", 3)]
    assert [run for run, _why in chosen.prune] == ["b"]
