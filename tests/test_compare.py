"""The compare screen: its data (deltas, differing settings, sort, CSV) and how it looks."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from test_tui import (  # noqa: F401
    SIZE,
    SIZES,
    T0,
    _app,
    _fixture_workspace,
    _new_run,
    _select_crnn_long,
    _settle,
    utc,
)

from core.store import Store
from core.store.reporter import Reporter
from nkd_tui.compare import compare

FINE_TUNE = "crnn_large_20260105_120000"


def _with_fine_tune(root: Path) -> Path:
    """The fixture store plus a fine-tune of crnn_long with SDR per stem."""
    registry = _fixture_workspace(root)
    store = Store(root / "nkd.db")
    run_dir = root / "runs" / FINE_TUNE
    run_dir.mkdir(parents=True)
    rep = Reporter(FINE_TUNE, run_dir, store)
    t = T0 + 4 * 86_400
    rep.event(
        {
            "type": "run",
            "experiment": "crnn_large",
            "recipe": "separation.train",
            "epochs_total": 20,
            "t": t,
            "host": "box",
            "params": {"hidden_size": 512, "num_layers": 4, "lr": 1e-4, "pretrained": "crnn_long"},
        }
    )
    rep.event({"type": "status", "status": "running", "t": t + 1})
    for e in range(1, 21):
        rep.event(
            {
                "type": "epoch",
                "epoch": e,
                "train_loss": 1.5 / e,
                "val_loss": 1.6 / e + 0.1,
                "t": t + 10 * e,
            }
        )
    for stem, value in (
        ("bass", 3.1),
        ("drums", 4.8),
        ("other", 2.2),
        ("vocals", 5.0),
        ("mean", 4.05),
    ):
        rep.event(
            {
                "type": "metric",
                "name": "sdr",
                "value": value,
                "stem": stem,
                "split": "val",
                "t": t + 300,
            }
        )
    rep.event({"type": "status", "status": "finished", "t": t + 400})
    rep.close()
    (run_dir / "output.log").write_text("done\n")
    store.close()
    return registry


def test_comparison_rows_deltas_and_settings(tmp_path: Path) -> None:
    _with_fine_tune(tmp_path)
    store = Store(tmp_path / "nkd.db")
    ids = [FINE_TUNE, "crnn_long_20260101_120000", "crnn_long_20260102_120000"]
    c = compare(store, ids)
    store.close()
    assert c.columns[:4] == ["run", "status", "Δ vs parent", "sdr mean"]  # what is read first
    assert {"sdr bass", "sdr drums", "sdr other", "sdr vocals", "sdr mean"} <= set(c.columns)
    row = dict(zip(c.columns, c.rows[0], strict=True))
    assert row["sdr mean"] == 4.05 and row["score"] == 4.05
    assert abs(row["Δ vs parent"] - (4.05 - 3.91)) < 1e-9  # against crnn_long's finished run
    differing = [key for key, _values, differs in c.params if differs]
    assert "pretrained" in differing and "hidden_size" in differing
    by_val = [r[0] for r in c.sorted_rows("best val")]
    assert by_val[0] == FINE_TUNE
    assert [r[0] for r in c.sorted_rows("sdr mean", reverse=True)][-1] in ids[1:]  # missing last
    table = list(csv.reader(io.StringIO(c.to_csv())))
    assert table[0] == c.columns and table[1][0] == FINE_TUNE
    assert ["parameter", *ids] in table


async def _mark_and_compare(pilot) -> None:
    await _settle(pilot)
    assert pilot.app.experiment == "crnn_large"  # the newest run's experiment
    await pilot.press("space")  # mark the fine-tune (the tree has focus; space marks)
    await pilot.press("up")  # to crnn_long
    await _settle(pilot)
    await pilot.press("tab", "down", "down", "space", "c")  # its finished run
    await _settle(pilot)


LIVE = "crnn_large_20260106_120000"


def _with_live_run(root: Path) -> Path:
    """The fine-tune's store plus a crnn_large run still training (its worker: this process)."""
    import os

    from core.backends.liveness import identity

    registry = _with_fine_tune(root)
    store, rep = _new_run(root, LIVE)
    t = T0 + 5 * 86_400
    rep.event({"type": "run", "experiment": "crnn_large", "recipe": "separation.train",
               "epochs_total": 20, "t": t, "status": "starting",
               "params": {"hidden_size": 768, "num_layers": 4, "lr": 3e-4,
                          "pretrained": "crnn_long"}})
    rep.event({"type": "worker", **identity(os.getpid()), "t": t})
    rep.event({"type": "status", "status": "running", "t": t + 1})
    _epochs(rep, range(1, 6), t)
    rep.close()
    (root / "runs" / LIVE / "output.log").write_text("training\n")
    store.close()
    return registry


def _epochs(rep: Reporter, epochs, t: float) -> None:
    for e in epochs:
        rep.event({"type": "epoch", "epoch": e, "train_loss": 1.2 / e, "val_loss": 1.3 / e + 0.1,
                   "t": t + 10 * e})


async def _compare_live_then_update(pilot) -> None:
    """Compare the fine-tune with the live run, then the live run reports three more epochs
    and a validation SDR: the screen reads them (what its one-second timer does)."""
    await _settle(pilot)
    await pilot.press("space")  # the newest run: the live one
    await pilot.press("tab", "down", "space", "c")  # and the finished fine-tune
    await _settle(pilot)
    screen = pilot.app.screen
    assert screen.comparison is not None and screen.comparison.active
    rep = Reporter(LIVE, pilot.app.workspace.run_dir(LIVE), Store(pilot.app.workspace.db_path))
    _epochs(rep, range(6, 9), T0 + 5 * 86_400)
    rep.event({"type": "metric", "name": "sdr", "value": 4.31, "stem": "mean", "split": "val",
               "t": T0 + 5 * 86_400 + 90})
    rep.close()
    screen._reload()
    await _settle(pilot)
    row = dict(zip(screen.comparison.columns, screen.comparison.rows[0], strict=True))
    assert row["epochs"] == 8 and row["sdr mean"] == 4.31


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_compare_screen(tmp_path: Path, snap_compare, size: tuple[int, int]) -> None:
    from nkd_tui.app import make_app

    app = make_app(_with_live_run(tmp_path), clock=lambda: T0 + 10 * 86_400, poll=False)
    assert snap_compare(app, terminal_size=size, run_before=_compare_live_then_update)


async def test_compare_follows_a_live_run_by_itself(tmp_path: Path) -> None:
    """With the app polling, the open compare screen picks up a new epoch within seconds."""
    import time

    from nkd_tui.app import make_app

    app = make_app(_with_live_run(tmp_path), clock=lambda: T0 + 10 * 86_400)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("space", "tab", "down", "space", "c")
        await _settle(pilot)
        screen = app.screen
        first = screen.reads
        rep = Reporter(LIVE, app.workspace.run_dir(LIVE), Store(app.workspace.db_path))
        _epochs(rep, [6], T0 + 5 * 86_400)
        rep.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            epochs = dict(zip(screen.comparison.columns, screen.comparison.rows[0],
                              strict=True))["epochs"]
            if epochs == 6:
                break
            await pilot.pause(0.2)
        assert epochs == 6 and screen.reads > first
        await pilot.press("C")  # clear the marks and go back
        await pilot.pause()
        assert app.marked == [] and len(app.screen_stack) == 1


async def test_marks_compare_sort_and_export(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        await pilot.press("c")
        await pilot.pause()
        assert len(app.screen_stack) == 1  # fewer than two marked: a hint, no screen
        await pilot.press("tab", "space", "down", "space", "down", "space", "space")
        assert app.marked == ["crnn_long_20260103_120000", "crnn_long_20260102_120000"]
        await pilot.press("c")
        await _settle(pilot)
        screen = app.screen
        assert screen.comparison is not None
        assert screen.query_one("#compare-metrics").row_count == 2
        await pilot.press("o")
        assert screen.sort_column == 1
        await pilot.press("e")
        await pilot.pause()
        exports = list((tmp_path / "exports").glob("compare_*.csv"))
        assert len(exports) == 1 and "crnn_long_20260103_120000" in exports[0].read_text()
        await pilot.press("escape")
        assert len(app.screen_stack) == 1


async def test_the_compare_screen_leads_with_what_made_the_runs(tmp_path: Path) -> None:
    import json

    app = _app(tmp_path)
    store = Store(tmp_path / "nkd.db")
    for run_id, commit in (("crnn_long_20260103_120000", "a" * 40),
                           ("crnn_long_20260102_120000", "b" * 40)):
        run_dir = tmp_path / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "provenance.json").write_text(json.dumps({
            "code": {"repository": "/src", "commit": commit, "dirty": False},
            "data": {}, "environment": {"python": "3.11.7", "packages_sha256": "ab"}}))
        with store.write() as conn:
            conn.execute("UPDATE runs SET run_dir = ? WHERE id = ?", (str(run_dir), run_id))
    store.close()
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        await pilot.press("tab", "space", "down", "space", "c")
        await _settle(pilot)
        screen = app.screen
        table = screen.query_one("#compare-params")
        assert table.get_row_at(0)[0].plain == "code"  # what differs leads
        assert "aaaaaaaaaa" in str(table.get_row_at(0)[1]) + str(table.get_row_at(0)[2])
        title = str(screen.query_one("#compare-title").render())
        assert "code differs" in title
        assert [k for k, _v, d in screen.comparison.made if not d] == ["environment"]
