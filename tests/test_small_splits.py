"""Figures that mean less than they look say so where they are shown: a score from a split with
fewer clips than classes (or a class missing from it) is marked in `nkd run`'s summary, `nkd ps`,
`nkd show` and the TUI; a validation SDR whose gains were fitted on it is labelled in-sample."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Workspace, nkd

from core.noise.metrics import caveat
from core.store import Store
from core.store.reporter import Reporter
from nkd_tui.cli.follow import report_end


def test_the_caveat_of_a_split() -> None:
    assert caveat(np.array([1]), 2, "test") == "1 test clip for 2 classes: too few to mean anything"
    assert caveat(np.array([0, 0, 0]), 2, "val") == \
        "1 of 2 classes have no val clip (ROC AUC undefined)"
    assert caveat(np.array([0, 1, 1]), 2, "test") is None


def _scored_run(ws: Workspace, run_id: str, separation: bool = False) -> Store:
    store = ws.store()
    run_dir = ws.root / "runs" / run_id
    run_dir.mkdir(parents=True)
    t = time.time()
    with Reporter(run_id, run_dir, store) as rep:
        rep.event({"type": "run", "experiment": run_id.rsplit("_", 2)[0],
                   "recipe": "separation.train" if separation else "noise.teacher",
                   "epochs_total": 1, "t": t})
        rep.status("running", t=t)
        rep.epoch(1, train_loss=1.0, val_loss=1.1, t=t + 1)
        if separation:  # gains fitted on val: the val value is in-sample, test is not
            rep.metric("sdr", 4.5, stem="mean", split="val", gains="val:musdb_val")
            rep.metric("sdr", 3.1, stem="mean", split="test", gains="val:musdb_val")
        else:
            rep.metric("accuracy", 0.0, split="test", caveat=caveat(np.array([1]), 2, "test"))
        rep.status("finished", t=t + 2)
    return store


def test_a_score_from_a_tiny_split_is_marked_everywhere(
        ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    run_id, sep_id = "mark1_20260101_120000", "crnn_20260101_110000"
    _scored_run(ws, sep_id, separation=True).close()
    store = _scored_run(ws, run_id)
    capsys.readouterr()
    report_end(store, run_id)
    summary = capsys.readouterr().out
    assert "accuracy 0 (test; 1 test clip for 2 classes: too few to mean anything)" in summary
    report_end(store, sep_id)
    summary = capsys.readouterr().out
    assert "sdr mean 4.5 (val; in-sample: its gains were fitted on it)" in summary
    assert "sdr mean 3.1 (test)" in summary
    assert nkd(ws, "ps") == 0
    ps = capsys.readouterr().out
    assert "0*" in ps.splitlines()[1]
    assert f"* {run_id}: 1 test clip for 2 classes: too few to mean anything" in ps
    assert nkd(ws, "show", run_id) == 0
    show = capsys.readouterr().out
    assert "test: 1 test clip for 2 classes" in show
    assert nkd(ws, "show", sep_id) == 0
    show = capsys.readouterr().out
    assert "fitted on val:musdb_val (in-sample: they do not compare with test)" in show
    store.close()


async def test_the_tui_marks_the_score_and_says_why(ws: Workspace) -> None:
    from nkd_tui.app import make_app

    run_id = "mark1_20260101_120000"
    _scored_run(ws, run_id).close()
    app = make_app(ws.registry, poll=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        app.experiment = "mark1"
        app.refresh_data()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        row = next(r for r in app.query_one("RunTable").rows_shown if r.run_id == run_id)
        assert row.cells[4] == "0*" and "too few to mean anything" in row.caveat
        notes = str(app.query_one("#run-notes").render())
        assert "* 1 test clip for 2 classes" in notes


def test_an_old_store_gains_the_caveat_columns(tmp_path: Path) -> None:
    store = Store(tmp_path / "nkd.db")
    assert {"caveat"} <= {c.name for c in store.db["runs"].columns}
    assert {"caveat"} <= {c.name for c in store.db["metrics"].columns}
    store.close()


def test_compare_gives_an_in_sample_value_a_column_of_its_own(ws: Workspace) -> None:
    from nkd_tui.compare import compare

    sep_id = "crnn_20260101_110000"
    store = _scored_run(ws, sep_id, separation=True)
    table = compare(store, [sep_id])
    assert "sdr mean in-sample" in table.columns and "sdr mean test" in table.columns
    assert "sdr mean" not in table.columns
    store.close()
