"""Lineage: the family tree of runs from checkpoint edges, on the command line and in the TUI,
and the blend dialog that starts a blend of two marked nodes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_compare import FINE_TUNE, _with_fine_tune
from test_tui import SIZE, SIZES, T0, _settle, utc  # noqa: F401

from core.runs.lineage import render, tree
from core.store import Store
from core.store.reporter import Reporter
from nkd_tui.app import make_app

ROOT_RUN = "crnn_long_20260101_120000"
BLEND_RUN = "blend_a_20260106_120000"


def _family(root: Path) -> Path:
    """crnn_long's finished run -> its fine-tune -> a 0.8/0.2 blend of both."""
    registry = _with_fine_tune(root)
    registry.write_text(
        registry.read_text() + '\n[data.musdb_val]\nroot = "data/val"\nkind = "separation"\n'
    )
    for folder in ("val", "musdb"):  # a blend's inputs are checked before it starts
        (root / "data" / folder).mkdir(parents=True)
    store = Store(root / "nkd.db")
    for run_id, parents in (
        (ROOT_RUN, []),
        (
            FINE_TUNE,
            [{"checkpoint": f"{ROOT_RUN}/best_separator_model.pth", "relation": "pretrained"}],
        ),
    ):
        rep = Reporter(run_id, root / "runs" / run_id, store)
        rep.checkpoint(
            f"/ck/{run_id}/best_separator_model.pth", "best", parents=parents, t=T0 + 5 * 86_400
        )
        rep.close()
    run_dir = root / "runs" / BLEND_RUN
    run_dir.mkdir(parents=True)
    rep = Reporter(BLEND_RUN, run_dir, store)
    t = T0 + 5 * 86_400
    rep.event({"type": "run", "experiment": "blend_a", "recipe": "separation.blend", "t": t})
    rep.checkpoint(
        f"/ck/{BLEND_RUN}/best_separator_model.pth",
        "best",
        t=t + 1,
        parents=[
            {
                "checkpoint": f"{FINE_TUNE}/best_separator_model.pth",
                "relation": "blend",
                "weight": 0.8,
            },
            {
                "checkpoint": f"{ROOT_RUN}/best_separator_model.pth",
                "relation": "blend",
                "weight": 0.2,
            },
        ],
    )
    rep.event({"type": "metric", "name": "sdr", "value": 4.2, "stem": "mean", "t": t + 2})
    rep.event({"type": "status", "status": "finished", "t": t + 3})
    rep.close()
    store.close()
    return registry


def test_tree_and_text(tmp_path: Path) -> None:
    _family(tmp_path)
    store = Store(tmp_path / "nkd.db")
    roots = tree(store, BLEND_RUN)
    lines = render(store, BLEND_RUN)
    store.close()
    assert [r.run_id for r in roots] == [ROOT_RUN]
    kids = {c.via: c for c in roots[0].children}
    assert set(kids) == {"pretrained", "blend 0.2"}
    assert kids["pretrained"].children[0].via == "blend 0.8"
    assert kids["blend 0.2"].repeated != kids["pretrained"].children[0].repeated  # shown once
    assert lines[0].startswith(ROOT_RUN) and "SDR 3.910 dB" in lines[0]
    assert any("blend 0.8 → blend_a_20260106_120000" in line and "◀" in line for line in lines)


async def _open_lineage(pilot) -> None:
    await _settle(pilot)
    await pilot.press("down", "down", "down")  # tick -> separation -> crnn_long -> crnn_large
    await _settle(pilot)
    assert pilot.app.run_id == FINE_TUNE
    await pilot.press("L")
    await _settle(pilot)


def _app(root: Path):
    return make_app(_family(root), clock=lambda: T0 + 10 * 86_400, poll=False)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_lineage_screen(tmp_path: Path, snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(_app(tmp_path), terminal_size=size, run_before=_open_lineage)


async def _open_blend_dialog(pilot) -> None:
    await _open_lineage(pilot)
    await pilot.press("space", "up", "space", "b")  # the fine-tune and the blend above it
    await _settle(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_blend_dialog(tmp_path: Path, snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(_app(tmp_path), terminal_size=size, run_before=_open_blend_dialog)


async def test_blend_dialog_checks_weights_then_launches(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _open_blend_dialog(pilot)
        dialog = app.screen
        weights = dialog.query_one("#weights")
        weights.value = "0.9,0.2"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is dialog
        assert "sum to 1 (they sum to 1.1)" in str(dialog.query_one("#error").render())
        weights.value = "0.8,0.2"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is not dialog
    store = Store(tmp_path / "nkd.db")
    runs = [r for r in store.list_runs() if r["id"].startswith("blend_crnn_large_0_8_blend_a_0_2")]
    deadline = time.monotonic() + 60
    while runs and store.get_run(runs[0]["id"])["status"] not in ("failed", "finished"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert runs, [r["id"] for r in store.list_runs()]
    full = store.get_run(runs[0]["id"])
    store.close()
    assert full["params"]["sources"] == {f"run:{FINE_TUNE}": 0.8, f"run:{BLEND_RUN}": 0.2}
    assert full["recipe"] == "separation.blend"


def _made(store: Store, run_id: str, commit: str, data: str) -> None:
    """A provenance record as a launch writes it: the code at `commit`, one data folder."""
    run_dir = Path(store.path).parent / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    with store.write() as conn:  # the fixture's runs were recorded without their folders
        conn.execute("UPDATE runs SET run_dir = ? WHERE id = ?", (str(run_dir), run_id))
    (run_dir / "provenance.json").write_text(json.dumps({
        "code": {"repository": "/src", "commit": commit, "dirty": False},
        "data": {"data": {"root": "/data/musdb", "files": 10, "bytes": 99,
                          "fingerprint": data}},
        "environment": {"python": "3.11.7", "torch": "2.13.0", "packages_sha256": "ab"}}))


def test_a_child_made_from_other_code_or_data_is_marked(tmp_path: Path) -> None:
    _family(tmp_path)
    store = Store(tmp_path / "nkd.db")
    _made(store, ROOT_RUN, "a" * 40, "f" * 16)
    _made(store, FINE_TUNE, "b" * 40, "f" * 16)  # fine-tuned after a code change
    _made(store, BLEND_RUN, "b" * 40, "e" * 16)  # blended on a changed data folder
    roots = tree(store, BLEND_RUN)
    lines = render(store, BLEND_RUN)
    store.close()
    kids = {c.via: c for c in roots[0].children}
    assert roots[0].marks == ()
    assert kids["pretrained"].marks == ("code differs",)
    blend = kids["pretrained"].children[0]  # from the fine-tune: same code, other data
    assert blend.marks == ("data differs",)
    assert kids["blend 0.2"].marks == ("code differs", "data differs")  # from the root
    assert any(f"{FINE_TUNE}" in line and "[code differs]" in line for line in lines)
