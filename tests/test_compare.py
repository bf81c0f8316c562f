"""The compare screen: its data (deltas, differing settings, sort, CSV) and how it looks."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from test_tui import SIZE, T0, _app, _fixture_workspace, _select_crnn_long, _settle, utc  # noqa: F401

from core.reporter import Reporter
from core.store import Store
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


def test_snapshot_compare_screen(tmp_path: Path, snap_compare) -> None:
    from nkd_tui.app import make_app

    app = make_app(_with_fine_tune(tmp_path), clock=lambda: T0 + 10 * 86_400, poll=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=_mark_and_compare)


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
