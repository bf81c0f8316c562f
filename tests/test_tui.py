"""The TUI: snapshots of each screen on a fixture store, and real workers driven by key."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from conftest import TICKER

from core.backends.liveness import is_alive
from core.store import Store
from core.store.reporter import Reporter
from nkd_tui.app import NkdApp, make_app
from nkd_tui.run_table import COLUMNS

T0 = 1_767_268_800.0  # 2026-01-01 12:00 UTC: a fixed clock for every snapshot
SIZE = (100, 30)
# every screen is drawn at the smallest terminal nkd supports and at a roomy one
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 36), id="120x36")]

REGISTRY = f"""
[experiments.tick]
group = "timeseries"
command = ["{sys.executable}", "{TICKER}", "--epochs", "{{epochs}}", "--delay", "{{delay}}"]
epochs = 400
params = {{ delay = 0.1 }}

[data.musdb]
root = "data/musdb"
kind = "separation"

[experiments.crnn_long]
group = "separation"
recipe = "separation.train"
data = "musdb"
hidden_size = 256
num_layers = 3
lr = 1e-4
reported = {{ sdr_db = 3.20 }}

[experiments.crnn_large]
group = "separation"
extends = "crnn_long"
hidden_size = 512
num_layers = 4
pretrained = "crnn_long"
"""


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """UTC, and a disk with 48 GiB free: the screens show the same on every machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr("core.backends.space.free_bytes", lambda folder: 48 << 30)


def _fixture_workspace(root: Path) -> Path:
    registry = root / "experiments.toml"
    registry.write_text(REGISTRY)
    store = Store(root / "nkd.db")
    for n, (status, epochs) in enumerate([("finished", 40), ("stopped", 12), ("failed", 3)]):
        run_id = f"crnn_long_2026010{n + 1}_120000"
        run_dir = root / "runs" / run_id
        run_dir.mkdir(parents=True)
        rep = Reporter(run_id, run_dir, store)
        t = T0 + n * 86_400
        rep.event({"type": "run", "experiment": "crnn_long", "recipe": "separation.train",
                   "epochs_total": 40, "t": t, "host": "box"})
        rep.event({"type": "status", "status": "running", "t": t + 1, "device": "cuda:0"})
        for e in range(1, epochs + 1):
            rep.event({"type": "epoch", "epoch": e, "train_loss": 2.0 / e + 0.1 * (n + 1),
                       "val_loss": 2.2 / e + 0.15 * (n + 1) + 0.02 * (e % 3), "seconds": 9.5,
                       "t": t + 10 * e})
        if status == "finished":
            for stem, value in (("mean", 3.91), ("vocals", 4.4)):
                rep.event({"type": "metric", "name": "sdr", "value": value, "stem": stem,
                           "split": "val", "t": t + 500})
        rep.event({"type": "checkpoint", "path": str(root / "checkpoints" / run_id / "m.pth"),
                   "role": "best", "bytes": (310 << 20) // (n + 1), "t": t + 10 * epochs})
        rep.event({"type": "status", "status": status, "folder_bytes": 2 << 20,
                   "t": t + 10 * epochs + 5})
        if status == "finished":
            rep.event({"type": "annotate", "tags": ["baseline", "musdb-hq"],
                       "note": "the 0.8/0.2 blend starts from this one", "t": t + 600})
        rep.close()
        (run_dir / "output.log").write_text(
            "".join(f"epoch {e}: train {2.0 / e:.3f}\n" for e in range(1, epochs + 1))
        )
    store.close()
    return registry


def _new_run(root: Path, run_id: str) -> tuple[Store, Reporter]:
    """A store and a reporter for a new run folder in the workspace at `root`."""
    store = Store(root / "nkd.db")
    run_dir = root / "runs" / run_id
    run_dir.mkdir(parents=True)
    return store, Reporter(run_id, run_dir, store)


def _app_on(registry: Path) -> NkdApp:
    """The app on `registry`, its clock ten days after the fixture's first run. It starts
    reading the store and the newest run's log in a thread as it is made, so a test writes
    what the first paint should show before this."""
    return make_app(registry, clock=lambda: T0 + 10 * 86_400, poll=False)


def _app(root: Path) -> NkdApp:
    return _app_on(_fixture_workspace(root))


async def _settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def _select_crnn_long(pilot) -> None:
    """The app opens on the experiment of the newest run: crnn_long in the fixture store."""
    await _settle(pilot)
    assert pilot.app.experiment == "crnn_long"
    assert pilot.app.query_one("#experiments").cursor_node.data == "crnn_long"


async def _finished_run(pilot) -> None:
    """The finished run highlighted: 40 epochs on the chart, its tags and note under the table."""
    await _select_crnn_long(pilot)
    await pilot.press("tab", "down", "down")
    await _settle(pilot)
    assert pilot.app.run_id == "crnn_long_20260101_120000"


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_main_screen(tmp_path: Path, snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(_app(tmp_path), terminal_size=size, run_before=_finished_run)


def _after_key(key: str):
    async def run_before(pilot) -> None:
        await _select_crnn_long(pilot)
        await pilot.press(key)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_launch_dialog(tmp_path: Path, snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(_app(tmp_path), terminal_size=size, run_before=_after_key("l"))


def test_snapshot_stop_confirmation(tmp_path: Path, snap_compare) -> None:
    assert snap_compare(_app(tmp_path), terminal_size=SIZE, run_before=_after_key("s"))


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_help(tmp_path: Path, snap_compare, size: tuple[int, int]) -> None:
    app = _app(tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=_after_key("question_mark"))


async def test_table_and_chart_follow_the_store(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        table = app.query_one("#runs")
        assert table.row_count == 3
        assert app.run_id == "crnn_long_20260103_120000"  # newest first
        assert list(app.query_one("#chart").series["train_loss"][0]) == [1, 2, 3]
        await pilot.press("tab", "down", "down")  # to the finished run
        await _settle(pilot)
        assert app.run_id == "crnn_long_20260101_120000"
        assert len(app.query_one("#chart").series["train_loss"][0]) == 40
        assert "epoch 40" in "\n".join(app.query_one("#log").lines)


async def _until(pilot, predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError("timed out")


async def test_keys_control_a_real_worker_and_quit_leaves_it_running(tmp_path: Path) -> None:
    registry = tmp_path / "experiments.toml"
    registry.write_text(REGISTRY)
    store = Store(tmp_path / "nkd.db")
    app = make_app(registry)

    def status() -> str | None:
        rows = store.list_runs("tick")
        return rows[0]["status"] if rows else None

    try:
        async with app.run_test(size=SIZE) as pilot:
            await _settle(pilot)
            assert app.experiment == "tick"
            await pilot.press("l")
            await _until(pilot, lambda: type(app.screen).__name__ == "LaunchScreen")
            await pilot.press("ctrl+s")  # launch with the settings as they are
            await _until(pilot, lambda: status() == "running")
            run_id = store.list_runs("tick")[0]["id"]
            await _until(pilot, lambda: app.run_id == run_id)

            await pilot.press("p")
            await _until(pilot, lambda: status() == "paused")
            await pilot.press("r")
            await _until(pilot, lambda: status() == "running")
            await pilot.press("s")
            await _until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
            await pilot.press("y")
            await _until(pilot, lambda: status() == "stopped")

            await pilot.press("l")
            await _until(pilot, lambda: type(app.screen).__name__ == "LaunchScreen")
            await pilot.press("ctrl+s")
            await _until(pilot, lambda: status() == "running")
            second = store.list_runs("tick")[0]["id"]
            await pilot.press("q")
        row = store.get_run(second)
        assert row["status"] == "running" and is_alive(row["pid"], row["pid_start"])

        again = make_app(registry)  # re-attach: a new app shows the live run
        async with again.run_test(size=SIZE) as pilot:
            await _settle(pilot)
            await _until(pilot, lambda: again.query_one("#runs").row_count == 2)
            assert again.run_id == second
            await _until(pilot, lambda: len(again.query_one("#chart").series) > 0)
    finally:
        for row in store.list_runs("tick"):
            full = store.get_run(row["id"])
            if full["pid"] and is_alive(full["pid"], full["pid_start"]):
                os.killpg(full["pid"], 9)
                child = tmp_path / "runs" / row["id"] / "child.pid"
                if child.is_file():
                    try:
                        os.killpg(int(child.read_text()), 9)
                    except ProcessLookupError:
                        pass


def test_snapshot_gpu_panel(tmp_path: Path, snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:
    """A described 4-GPU box: GPU 1 held by an nkd run, GPU 2 by someone else's job."""
    import json
    import os

    from core.backends.liveness import identity

    gpus = [{"index": i, "uuid": f"GPU-{i}", "name": "NVIDIA H100 80GB",
             "memory_total_mib": 81559, "memory_used_mib": used, "utilization": util,
             "processes": procs}
            for i, (used, util, procs) in enumerate([
                (0, 0, []),
                (23000, 61, []),
                (70400, 88, [{"pid": 4242, "user": "someone", "memory_mib": 70000}]),
                (0, 0, []),
            ])]
    (tmp_path / "gpus.json").write_text(json.dumps({"gpus": gpus}))
    monkeypatch.setenv("NKD_GPUS", str(tmp_path / "gpus.json"))
    root = tmp_path / "ws"
    root.mkdir()
    _fixture_workspace(root)
    run_id = "crnn_long_20260110_090000"
    run_dir = root / "runs" / run_id
    run_dir.mkdir(parents=True)
    store = Store(root / "nkd.db")
    rep = Reporter(run_id, run_dir, store)
    rep.event({"type": "run", "experiment": "crnn_long", "recipe": "separation.train",
               "epochs_total": 40, "t": T0 + 9 * 86_400, "status": "starting"})
    rep.event({"type": "worker", **identity(os.getpid()), "gpus": "1", "t": T0 + 9 * 86_400})
    rep.event({"type": "status", "status": "running", "t": T0 + 9 * 86_400 + 1})
    rep.close()
    store.close()
    # the app opens on a store that already holds the running run (as after `nkd run -d`)
    app = make_app(root / "experiments.toml", clock=lambda: T0 + 10 * 86_400, poll=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=_after_key("g"))


async def test_queued_runs_show_their_place_and_keys_move_cancel_and_compare(
    tmp_path: Path,
) -> None:
    registry = _fixture_workspace(tmp_path)
    store = Store(tmp_path / "nkd.db")
    ids = [f"crnn_long_20260111_12000{n}" for n in range(3)]
    for n, run_id in enumerate(ids):
        (tmp_path / "runs" / run_id).mkdir(parents=True)
        rep = Reporter(run_id, tmp_path / "runs" / run_id, store)
        rep.event({"type": "run", "experiment": "crnn_long", "recipe": "separation.train",
                   "status": "queued", "sweep": "lr_sweep", "params": {"lr": 10.0 ** -(n + 3)},
                   "t": T0 + 10 * 86_400 + n})
        rep.close()
    store.close()
    app = make_app(registry, clock=lambda: T0 + 11 * 86_400, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        table = app.query_one("#runs")
        statuses = [str(table.get_row(run_id)[1]) for run_id in reversed(ids)]
        assert statuses == ["… queued #3", "… queued #2", "… queued #1"]
        await pilot.press("tab")  # the newest queued run is highlighted
        await _settle(pilot)
        assert app.run_id == ids[-1]
        await pilot.press("T")  # to the top of the queue
        await _settle(pilot)
        app.refresh_data()
        await _settle(pilot)
        assert str(table.get_row(ids[-1])[1]) == "… queued #1"
        await pilot.press("x")  # cancel it
        await _settle(pilot)
        assert Store(tmp_path / "nkd.db").get_run(ids[-1])["status"] == "cancelled"
        await pilot.press("S")  # the whole sweep side by side
        await _settle(pilot)
        assert type(app.screen).__name__ == "CompareScreen"
        assert sorted(app.screen.run_ids) == sorted(ids)


def test_snapshot_terminal_too_small(tmp_path: Path, snap_compare) -> None:
    assert snap_compare(_app(tmp_path), terminal_size=(40, 10), run_before=_settle)


async def test_a_run_that_ends_is_announced_with_the_bell(tmp_path: Path) -> None:
    from core.registry.workspace import Workspace as Paths
    from nkd_tui.poll import Poller

    _fixture_workspace(tmp_path)
    poller = Poller(Paths.at(tmp_path / "experiments.toml"))
    store = Store(tmp_path / "nkd.db")
    run_dir = tmp_path / "runs" / "crnn_long_20260105_120000"
    run_dir.mkdir()
    rep = Reporter(run_dir.name, run_dir, store)
    rep.event({"type": "run", "experiment": "crnn_long", "status": "starting",
               "t": time.time()})
    assert poller.ended_since_last() == ()  # the first look only learns what is active
    rep.status("finished")
    rep.close()
    assert poller.ended_since_last() == (("crnn_long_20260105_120000", "finished"),)
    assert poller.ended_since_last() == ()  # told once

    (tmp_path / "other").mkdir()
    app = _app(tmp_path / "other")
    bells: list[bool] = []
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        app.bell = lambda: bells.append(True)  # type: ignore[method-assign]
        snap = app.poller.snapshot("crnn_long", None, 0)
        from dataclasses import replace

        app._apply(replace(snap, ended=(("crnn_long_20260101_120000", "failed"),)))
        await pilot.pause()
        assert bells == [True]
        assert any("crnn_long_20260101_120000: failed" in str(n.message)
                   for n in app._notifications)


def test_launch_dialog_errors_name_the_line_and_key() -> None:
    from core.errors import NkdError
    from nkd_tui.screens import overrides_from

    original = "lr = 0.001\nepochs = 3"
    with pytest.raises(NkdError, match=r"launch dialog: line 3: 'lr' is set twice; keep one"):
        overrides_from("lr = 0.001\nepochs = 3\nlr = 0.1", original)
    with pytest.raises(NkdError, match=r"launch dialog: line 2 \(epochs =\): Invalid value"):
        overrides_from("lr = 0.001\nepochs = ", original)
    assert overrides_from("lr = 0.01\nepochs = 3", original) == ["lr=0.01"]


def test_long_names_are_shortened_in_the_middle_and_stay_distinct() -> None:
    from nkd_tui.format import middle

    names = ["crnn_large_merged_0_8_0_2", "crnn_large_merged_0_8_0_2_gain",
             "crnn_large_merged_0_9_0_1", "crnn_large_finetune_ver1", "mark1"]
    for width in (14, 18, 24):
        short = [middle(n, width) for n in names]
        assert len(set(short)) == len(names) and all(len(s) <= width for s in short)
    assert middle("mark1", 18) == "mark1"


def test_a_running_run_shows_its_step_and_eta(tmp_path: Path) -> None:
    """Two 10 s epochs done, then step 30 of 100 nine seconds into the third: 70 steps at
    0.3 s and seven more epochs of 10 s are left."""
    from core.registry.workspace import Workspace
    from nkd_tui.poll import Poller

    registry = _fixture_workspace(tmp_path)
    run_id = "tick_20260111_120000"
    store, rep = _new_run(tmp_path, run_id)
    t = T0 + 10 * 86_400
    rep.event({"type": "run", "experiment": "tick", "epochs_total": 10, "t": t})
    rep.event({"type": "status", "status": "running", "t": t})
    for e in (1, 2):
        rep.event({"type": "epoch", "epoch": e, "train_loss": 1.0, "seconds": 10.0,
                   "t": t + 10 * e})
    rep.event({"type": "progress", "epoch": 3, "step": 30, "steps": 100, "loss": 0.5,
               "t": t + 29})
    rep.close()
    store.close()
    poller = Poller(Workspace.at(registry), clock=lambda: t + 29)
    assert poller.progress(run_id) == "epoch 3/10 · step 30/100 · 10.0s/epoch · ETA 1m31s"
    cells = dict(zip([h for h, _ in COLUMNS], poller.runs("tick")[0].cells, strict=True))
    assert cells["time"] == "ETA 1m" and cells["t/epoch"] == "10.0s"
    later = Poller(Workspace.at(registry), clock=lambda: t + 40)  # 11 s on, no new step yet
    assert later.progress(run_id).endswith("ETA 1m20s")
    assert poller.progress("crnn_long_20260101_120000") == ""  # finished: nothing to estimate
    store = Store(tmp_path / "nkd.db")
    store.apply(run_id, {"type": "status", "status": "finished", "peak_rss_mb": 986.4,
                         "cpu_s": 8.26, "t": t + 60})
    store.close()
    assert poller.progress(run_id) == "peak 986 MiB · CPU 8.3 s"  # what the worker cost


async def test_without_colour_the_curves_differ_by_their_marks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.delenv("NO_COLOR", raising=False)
    app = _app(tmp_path)
    assert app.no_color  # TERM=dumb is treated as NO_COLOR
    assert "NO_COLOR" not in os.environ  # for this app only: nothing else inherits it
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        chart = app.query_one("#chart")
        text = str(chart.render())
        assert "•" in text  # val's mark; train keeps braille


async def test_the_tree_counts_live_runs_and_shows_the_best_score(tmp_path: Path) -> None:
    """Two older crnn_long runs still running while the newest failed: `▶2`, not `✗`; the
    best finished score stays beside the name."""
    registry = _fixture_workspace(tmp_path)
    store = Store(tmp_path / "nkd.db")
    for n in range(2):
        run_id = f"crnn_long_2025120{n + 1}_120000"
        run_dir = tmp_path / "runs" / run_id
        run_dir.mkdir(parents=True)
        rep = Reporter(run_id, run_dir, store)
        rep.event({"type": "run", "experiment": "crnn_long", "t": T0 - 86_400 * (n + 1)})
        rep.event({"type": "status", "status": "running", "t": T0 - 86_400 * (n + 1) + 1})
        rep.close()
    store.close()
    app = make_app(registry, clock=lambda: T0 + 10 * 86_400, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        leaves = {leaf.data: str(leaf.label) for branch in app.query_one("#experiments").root
                  .children for leaf in branch.children}
        assert leaves["crnn_long"] == "▶2 crnn_long 3.91"
        assert leaves["tick"] == "tick"  # no runs: no symbol, no score


async def test_enter_opens_the_whole_log_searchable_and_following(tmp_path: Path) -> None:
    registry = _fixture_workspace(tmp_path)
    log_path = tmp_path / "runs" / "crnn_long_20260101_120000" / "output.log"
    with open(log_path, "a") as fh:
        fh.write("Traceback (most recent call last):\nValueError: bad batch\n")
    app = _app_on(registry)  # after the write: the app starts reading as it is made
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        await pilot.press("tab", "down", "down", "enter")  # the finished run: 40 epochs
        await _until(pilot, lambda: len(getattr(app.screen, "lines", [])) == 42)
        viewer = app.screen
        assert type(viewer).__name__ == "LogViewer"
        def where() -> str:
            return str(viewer.query_one("#where").render())

        await pilot.press("slash", *"epoch 30", "enter")  # a search runs in a thread
        await _until(pilot, lambda: "at line 30: epoch 30: train" in where())
        await pilot.press("e")
        await _until(pilot, lambda: "error line at line 41: Traceback" in where())
        await pilot.press("E")
        await _until(pilot, lambda: "no further error line" in where())
        await pilot.press("n")  # the next 'epoch 30' after the Traceback: none
        await _until(pilot, lambda: "no further 'epoch 30'" in where())
        await pilot.press("f")  # follow again: new lines appear as the file grows
        with open(log_path, "a") as fh:
            fh.write("epoch 41: train 0.049\n")
        await _until(pilot, lambda: viewer.lines[-1] == "epoch 41: train 0.049")
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ != "LogViewer"


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_log_viewer(tmp_path: Path, snap_compare, size: tuple[int, int]) -> None:
    async def open_log(pilot) -> None:
        await _select_crnn_long(pilot)
        await pilot.press("tab", "down", "down", "enter")
        await _until(pilot, lambda: len(getattr(pilot.app.screen, "lines", [])) == 40)
        await pilot.press("g")
        await pilot.pause()

    assert snap_compare(_app(tmp_path), terminal_size=size, run_before=open_log)


async def test_slash_filters_the_tree_as_you_type(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)

        def shown() -> list[str]:
            return [leaf.data for branch in app.query_one("#experiments").root.children
                    for leaf in branch.children]

        assert shown() == ["tick", "crnn_long", "crnn_large"]
        # each keystroke's refill is a message of its own: wait for the last, not a fixed pause
        await pilot.press("slash", *"larg")
        await _until(pilot, lambda: shown() == ["crnn_large"])
        await pilot.press("l")  # typed into the filter, not the launch key
        await _until(pilot, lambda: shown() == [])
        assert type(app.screen).__name__ == "Screen"
        await pilot.press("backspace", "enter")  # keep "larg": the tree has the focus again
        await _until(pilot, lambda: shown() == ["crnn_large"])
        assert app.focused is app.query_one("#experiments")
        await pilot.press("slash", "escape")  # esc clears it
        await _until(pilot, lambda: shown() == ["tick", "crnn_long", "crnn_large"])


async def test_the_progress_title_stays_visible_at_80_columns(tmp_path: Path) -> None:
    """plotext drops a title wider than its plot: at 80×24 the progress alone is shown, cut to
    fit, rather than nothing."""
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await _select_crnn_long(pilot)
        chart = app.query_one("#chart")
        chart.show_progress("epoch 4/100 · step 120/480 · ETA 1h12m05s")
        await pilot.pause()
        assert "epoch 4/100 · step 120/4" in str(chart.render())


async def test_the_layout_follows_the_terminal_size(tmp_path: Path) -> None:
    """80×24: the six essential columns, the log under the chart; 120×36: started and device
    too, the log beside the chart; below 80×24 one line says so, and it all comes back."""
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await _select_crnn_long(pilot)
        table, main = app.query_one("#runs"), app.query_one("#main")
        assert table.shown == ("run", "status", "epoch", "best val", "score", "time")
        assert main.has_class("-narrow")
        assert table.region.right <= 80  # every essential column on screen, no scrolling
        chart, log = app.query_one("#chart"), app.query_one("#log")
        assert chart.region.width >= 55 and chart.region.height >= 8
        assert log.region.y > chart.region.y and log.region.width == chart.region.width
        await pilot.resize_terminal(120, 36)
        await _settle(pilot)
        assert table.shown[-2:] == ("started", "device") and not main.has_class("-narrow")
        assert log.region.x > chart.region.x  # side by side
        await pilot.resize_terminal(60, 20)
        await _settle(pilot)
        assert app.query_one("#too-small").display and not main.display
        await pilot.resize_terminal(80, 24)
        await _settle(pilot)
        assert main.display and not app.query_one("#too-small").display


async def test_the_log_pane_wraps_and_scrolls_when_focused(tmp_path: Path) -> None:
    """A long line is wrapped, not cut; tab reaches the pane, and while the reader has scrolled
    up a newer tail waits instead of moving the lines under them."""
    registry = _fixture_workspace(tmp_path)
    run_dir = tmp_path / "runs" / "crnn_long_20260103_120000"
    long_line = "epoch 3: val sdr " + " ".join(f"stem{i} {i}.25 dB" for i in range(12))
    (run_dir / "output.log").write_text("\n".join(f"line {i}" for i in range(60))
                                        + "\n" + long_line + "\n")
    app = _app_on(registry)  # after the write: the app starts reading as it is made
    async with app.run_test(size=(80, 24)) as pilot:
        await _select_crnn_long(pilot)
        log = app.query_one("#log")
        text = [line.rstrip() for line in log.lines]
        assert any(t.endswith("dB") and "stem11" in t for t in text)  # the end of the long line
        assert all(len(t) <= log.region.width for t in text)
        with open(run_dir / "output.log", "a") as fh:
            fh.write("line 61\n")
        app.refresh_data()
        await _settle(pilot)
        assert log.lines[-1] == "line 61" and log.scroll_offset.y == log.max_scroll_y > 0
        await pilot.press("tab", "tab")  # tree -> runs -> log
        assert app.focused is log
        await pilot.press("home")
        await pilot.pause()
        assert log.scroll_offset.y == 0
        with open(run_dir / "output.log", "a") as fh:
            fh.write("a newer line\n")
        app.refresh_data()
        await _settle(pilot)
        assert log.scroll_offset.y == 0  # held while scrolled up
        await pilot.press("end")
        app.refresh_data()
        await _settle(pilot)
        assert "a newer line" in log.lines[-1]


async def test_the_chart_picks_a_metric_log_y_and_shows_the_reported_value(
        tmp_path: Path) -> None:
    registry = _fixture_workspace(tmp_path)
    run_id = "crnn_long_20260105_120000"
    store, rep = _new_run(tmp_path, run_id)
    rep.event({"type": "run", "experiment": "crnn_long", "epochs_total": 5, "t": T0 + 5e5})
    rep.event({"type": "status", "status": "running", "t": T0 + 5e5})
    for e in range(1, 6):
        rep.event({"type": "epoch", "epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e,
                   "lr": 1e-3 / e, "val_sdr": 2.0 + 0.3 * e, "seconds": 10.0, "t": T0 + 5e5 + e})
    rep.event({"type": "status", "status": "finished", "t": T0 + 5e5 + 9})
    rep.close()
    store.close()
    app = make_app(registry, clock=lambda: T0 + 10 * 86_400, poll=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await _select_crnn_long(pilot)
        chart = app.query_one("#chart")
        assert chart.run_id == run_id and set(chart.series) == {"train_loss", "val_loss", "lr",
                                                                "val_sdr"}
        legend = str(app.query_one("#legend").render())
        assert "train_loss" in legend and "val_loss" in legend and "1/3" in legend
        await pilot.press("m")  # lr
        assert chart.shown_view() == "lr"
        await pilot.press("y")
        assert chart.log_y and "y log ✓" in str(app.query_one("#legend").render())
        await pilot.press("y", "m")  # linear again; val_sdr, with the reported 3.2 dB line
        assert chart.shown_view() == "val_sdr"
        assert "reported sdr_db 3.2" in str(app.query_one("#legend").render())
        plot = str(chart.render()).splitlines()
        assert "val sdr" in plot[0]
        # the reference line: drawn across the plot from axis to axis at 3.2
        assert any(line.strip().startswith("├") and line.strip().endswith("┤") for line in plot)
        await pilot.press("M", "M")  # back to the losses
        assert chart.shown_view() == "loss"


async def test_tags_notes_and_archive_by_key(tmp_path: Path) -> None:
    """t and n edit the highlighted run's tags and note, a archives it (hidden, not deleted), A
    shows archived runs, and / finds runs by #tag; all of it survives a rebuilt store."""
    from textual.widgets import Input

    from core.store import Store as Fresh

    app = _app(tmp_path)
    run_id = "crnn_long_20260101_120000"

    def row() -> dict:
        store = Fresh(tmp_path / "nkd.db")
        try:
            return store.get_run(run_id)
        finally:
            store.close()

    async with app.run_test(size=(80, 24)) as pilot:
        await _finished_run(pilot)
        assert "#baseline #musdb-hq" in str(app.query_one("#run-notes").render())
        await pilot.press("t")
        await pilot.pause()
        app.screen.query_one(Input).value = "baseline, best"
        await pilot.press("enter")
        await _settle(pilot)
        assert row()["tags"] == '["baseline", "best"]'
        await pilot.press("n")
        await pilot.pause()
        app.screen.query_one(Input).value = "kept for the paper"
        await pilot.press("enter")
        await _settle(pilot)
        app.refresh_data()
        await _settle(pilot)
        assert row()["note"] == "kept for the paper"
        assert "kept for the paper" in str(app.query_one("#run-notes").render())
        await pilot.press("a")  # archive: gone from the table, still in the store
        await _settle(pilot)
        app.refresh_data()
        await _settle(pilot)
        table = app.query_one("#runs")
        assert row()["archived"] == 1 and table.row_count == 2
        await pilot.press("A")  # shown again, marked
        await _settle(pilot)
        assert table.row_count == 3
        assert str(table.get_row(run_id)[0]).startswith("⌂ ")
        await pilot.press("A")
        await _settle(pilot)
        await pilot.press("shift+tab", "slash", *"#best")  # archived: not found
        await _settle(pilot)
        assert [leaf.data for b in app.query_one("#experiments").root.children
                for leaf in b.children] == []
    # the command line: back from the archive, found by its tag, and kept by a reindex
    registry = str(tmp_path / "experiments.toml")
    from nkd_tui.cli import main

    assert main(["--registry", registry, "archive", "--undo", run_id]) == 0
    assert main(["--registry", registry, "tag", run_id, "kd", "--remove", "baseline"]) == 0
    assert main(["--registry", registry, "reindex"]) == 0
    assert row()["tags"] == '["best", "kd"]' and row()["note"] == "kept for the paper"
    app = make_app(registry, clock=lambda: T0 + 10 * 86_400, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        await pilot.press("slash", *"#kd", "enter")
        await _settle(pilot)
        assert [leaf.data for b in app.query_one("#experiments").root.children
                for leaf in b.children] == ["crnn_long"]
        assert [r.run_id for r in app.query_one("#runs").rows_shown] == [run_id]


async def test_the_command_palette_finds_every_key(tmp_path: Path) -> None:
    """ctrl+p lists what the footer has no room for, by what it does, and runs it."""
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await _finished_run(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for name in ("Tags (t)", "Note (n)", "Archive (a)", "Metric (m)", "Log y (y)",
                     "Clear marks (C)", "Restart (R)", "GPUs (g)"):
            assert name in titles, (name, titles)
        await pilot.press("ctrl+p", *"log y")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        assert app.query_one("#chart").log_y


async def test_keys_typed_in_one_burst_act_on_the_row_under_the_cursor(tmp_path: Path) -> None:
    """tab, space, down, space arriving at once (a fast typist, tmux send-keys): each space
    marks the row the cursor is on then, though the table's highlight message comes later."""
    from textual import events

    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        for key, char in (("tab", "\t"), ("space", " "), ("down", None), ("space", " ")):
            app.post_message(events.Key(key, char))
        await _settle(pilot)
        assert app.marked == ["crnn_long_20260103_120000", "crnn_long_20260102_120000"]


async def test_space_in_the_tree_then_c_compares_with_the_highlighted_run(tmp_path: Path) -> None:
    """The Quick start: the TUI opens on the tree; space marks the run it shows, and c with one
    mark says what to do, then compares it with the run highlighted next."""
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        assert app.focused is app.query_one("#experiments")
        await pilot.press("space", "c")
        await _settle(pilot)
        assert app.marked == ["crnn_long_20260103_120000"]
        assert type(app.screen).__name__ == "Screen"
        said = [n.message for n in app._notifications]
        assert "crnn_long_20260103_120000 is marked; mark another run with space (or highlight " \
            "it), then press c" in said
        await pilot.press("tab", "down", "c")
        await _settle(pilot)
        assert type(app.screen).__name__ == "CompareScreen"
        assert app.screen.run_ids == ["crnn_long_20260103_120000", "crnn_long_20260102_120000"]


def test_long_durations_fit_the_time_column() -> None:
    from nkd_tui.format import short_duration

    cells = [short_duration({"started_at": 1.0, "ended_at": 1.0 + s})
             for s in (5, 35_999, 86_399, 360_000, 2_592_000)]
    assert cells == ["0:00:05", "9:59:59", "23h59m", "4d04h", "30d00h"]
    assert all(len(c) <= 7 for c in cells)


def test_a_log_index_reads_lines_without_holding_them(tmp_path: Path, monkeypatch) -> None:
    """Small blocks, so lines and matches straddle block edges; a last line without its newline
    waits; searches go both ways."""
    import re

    from nkd_tui import log_file

    monkeypatch.setattr(log_file, "BLOCK", 64)
    path = tmp_path / "output.log"
    lines = [f"epoch {i}: loss {1 / (i + 1):.4f}" + (" Traceback" if i in (7, 31) else "")
             for i in range(40)]
    path.write_text("\n".join(lines) + "\nhalf a li")
    index = log_file.LogIndex(path)
    while index.grow():
        pass
    assert len(index) == 40 and list(index) == lines and index[-1] == lines[-1]
    assert index.widest == max(len(line) for line in lines) + 1
    error = re.compile(rb"Traceback")
    assert index.search(error, -1, 1) == 7 and index.search(error, 7, 1) == 31
    assert index.search(error, 31, 1) is None
    assert index.search(error, 39, -1) == 31 and index.search(error, 31, -1) == 7
    assert index.search(error, 7, -1) is None
    with open(path, "a") as fh:
        fh.write("ne\n")
    assert index.grow() == 1 and index[40] == "half a line"
    index.close()


async def test_keys_typed_right_after_slash_land_in_the_filter(tmp_path: Path) -> None:
    from textual import events

    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        for key, char in (("slash", "/"), ("c", "c"), ("r", "r"), ("n", "n")):
            app.post_message(events.Key(key, char))
        await _settle(pilot)
        assert app.query_one("#filter").value == "crn"


async def test_after_a_filter_the_right_pane_shows_the_experiment_the_tree_is_on(
        tmp_path: Path) -> None:
    """`/` and a name that leaves the shown experiment out: the cursor goes to the first match
    and the chart, table and log follow it; a filter nothing matches empties them."""
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        assert app.chart.run_id is not None and app.query_one("#log").lines
        await pilot.press("slash", "t", "i", "c", "k", "enter")
        await _settle(pilot)
        assert app.experiment == "tick"
        assert app.query_one("#experiments").cursor_node.data == "tick"
        assert app.run_id is None and app.chart.run_id is None
        assert not [line for line in app.query_one("#log").lines if line.strip()]
        await pilot.press("slash", "ctrl+a", "x", "y", "z", "z", "y", "enter")
        await _settle(pilot)
        assert app.experiment is None and app.run_id is None
        await pilot.press("slash", "escape")  # the filter cleared: every experiment again
        await _settle(pilot)


def _raises(error: Exception):
    def broken(*_args, **_kwargs):
        raise error
    return broken


async def _notified(app: NkdApp, pilot, text: str):
    """The notice whose message holds `text`, once it is shown."""
    def found():
        return next((n for n in app._notifications if text in str(n.message)), None)
    await _until(pilot, lambda: found() is not None)
    return found()


async def test_an_unexpected_worker_error_becomes_a_notice_and_a_log_line(tmp_path: Path,
                                                                         monkeypatch) -> None:
    """A thread worker's error (a control action, or a screen's read) is never lost: one
    notice on the screen and the error with its traceback in nkd.tui.log."""
    from nkd_tui.messages import LOG_NAME

    app = _app(tmp_path)
    monkeypatch.setattr("core.runs.actions.send",
                        _raises(ZeroDivisionError("the store said no")))
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        app._control(app.run_id, "pause")
        notice = await _notified(app, pilot, "the store said no")
        assert notice.severity == "error"
        assert str(notice.message).startswith("control failed: ZeroDivisionError")
    log = (app.workspace.root / LOG_NAME).read_text()
    assert "ZeroDivisionError: the store said no" in log and "Traceback" in log


async def test_a_screens_worker_error_reaches_the_same_handler(tmp_path: Path,
                                                               monkeypatch) -> None:
    from nkd_tui.compare_screen import CompareScreen

    app = _app(tmp_path)
    monkeypatch.setattr("nkd_tui.compare_screen.compare", _raises(RuntimeError("compare broke")))
    async with app.run_test(size=SIZE) as pilot:
        await _select_crnn_long(pilot)
        await app.push_screen(CompareScreen(app.poller.store.path, [app.run_id], tmp_path))
        notice = await _notified(app, pilot, "compare broke")
        assert str(notice.message).startswith("compare failed: RuntimeError")


@pytest.mark.parametrize("width", [80, 120])
def test_no_number_in_the_run_table_is_cut_in_the_middle(width: int) -> None:
    """A number too wide for its column is rounded (0.7037 -> 0.704), never shortened in the
    middle into another number (0.…37); so is an epoch count (3000/3000 -> 3k/3k)."""
    from nkd_tui.poll import RunRow
    from nkd_tui.run_table import INDEX, RunTable, columns_for

    table = RunTable()
    table.shown = columns_for(width)
    cells = ["run_1", "finished", "3000/3000", "-2.702e-05", "0.7037", "1:00:00", "12.3s",
             "12-06 12:00", "cpu", "1.2G"]
    row = RunRow("run_1", "finished", tuple(cells), (), "", False)
    shown = {h: table.cell(h, row).plain for h in table.shown}
    assert "…" not in shown["epoch"] + shown["best val"] + shown["score"]
    assert shown["score"] == "0.704" and shown["epoch"] == "3k/3k"
    assert float(shown["best val"]) == pytest.approx(-2.702e-05, rel=0.05)
    assert all(len(shown[h]) <= dict(COLUMNS)[h] - 1 for h in shown)
    assert INDEX["score"] == 4


def test_the_table_and_the_chart_title_say_the_eta_in_the_same_units() -> None:
    from core.runs.progress import eta_short, fmt_eta

    for seconds, title, cell in ((45, "45s", "ETA 45s"), (788, "13m08s", "ETA 13m"),
                                 (3912, "1h05m12s", "ETA 1h05"), (40_000, "11h06m40s", "ETA 11h")):
        assert (fmt_eta(seconds), eta_short(seconds)) == (title, cell)
        assert title.startswith(cell.removeprefix("ETA "))  # the cell is the title, cut


def _sweep_workspace(root: Path) -> Path:
    """The fixture workspace and a halving sweep of crnn_long beside it: 6 trials drawn over lr
    and hidden_size, rungs [1, 3], keep a third: 2 promoted (one finished, one at epoch 2), 4
    pruned at rung 1."""
    import json

    registry = _fixture_workspace(root)
    store = Store(root / "nkd.db")
    halving = {"metric": "val_sdr", "mode": "max", "rungs": [1, 3], "keep": 0.33}
    draws = [(3e-4, 256, 2.1, None), (2e-3, 512, 1.2, None), (8e-5, 256, 0.4, None),
             (1e-3, 512, 2.6, 3.9), (5e-3, 256, 0.9, None), (1.5e-4, 512, 1.0, None)]
    for n, (lr, hidden, at1, at3) in enumerate(draws):
        run_id = f"crnn_long_20260111_0900{n:02d}"
        run_dir = root / "runs" / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text(json.dumps({"run_id": run_id,
                                                          "halving": halving}))
        rep = Reporter(run_id, run_dir, store)
        t = T0 + 10 * 86_400 + 60 * n
        rep.event({"type": "run", "experiment": "crnn_long", "recipe": "separation.train",
                   "epochs_total": 3, "sweep": "tune1", "select_by": "val_sdr",
                   "params": {"lr": lr, "hidden_size": hidden, "epochs": 3}, "t": t})
        rep.event({"type": "status", "status": "running", "t": t + 1})
        promoted = at3 is not None or n == 0
        for e, value in ((1, at1), (2, at1 + 0.5), (3, at3)):
            if value is None or (e > 1 and not promoted):
                break
            rep.event({"type": "epoch", "epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e,
                       "val_sdr": value, "t": t + 10 * e})
        if n == 0:  # promoted, at epoch 2 of 3
            pass
        elif promoted:
            rep.event({"type": "status", "status": "finished", "t": t + 40})
        else:
            rep.event({"type": "status", "status": "suspended", "t": t + 12})
            rep.event({"type": "status", "status": "pruned", "t": t + 13,
                       "error": "pruned at rung 1"})
        rep.close()
    store.close()
    return registry


def test_snapshot_sweep_view(tmp_path: Path, snap_compare) -> None:
    """`w` on a trial: trials × rungs, the best so far, and settings against val_sdr in
    parallel coordinates."""
    app = make_app(_sweep_workspace(tmp_path), clock=lambda: T0 + 11 * 86_400, poll=False)

    async def run_before(pilot) -> None:
        await _settle(pilot)
        assert pilot.app.run_id.startswith("crnn_long_20260111")
        await pilot.press("w")
        await _settle(pilot)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)


def test_two_overlapping_snapshots_each_carry_the_experiment_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first paint's snapshot and a poll's run on threads of their own. One that starts the
    liveness check (which reads the sizes again) while the other is half way through must not
    hand the other a tree without sizes."""
    import threading

    from core.registry.workspace import Workspace as Paths
    from nkd_tui.poll import Poller

    _fixture_workspace(tmp_path)
    poller = Poller(Paths.at(tmp_path / "experiments.toml"))
    assert poller.snapshot("crnn_long", None, 0, reconcile_runs=False).sizes is not None
    poll_reads_sizes, paint_may_end = threading.Event(), threading.Event()
    painting = threading.get_ident()
    bytes_of, statuses_of = Store.experiment_bytes, Store.latest_statuses

    def slow_bytes(store: Store) -> dict[str, int]:
        poll_reads_sizes.set()  # the poll is inside its liveness check: sizes being read
        paint_may_end.wait(5)
        return bytes_of(store)

    def paint_waits(store: Store) -> dict[str, str]:
        if threading.get_ident() == painting:  # the paint, half way: the poll begins
            poller._next_reconcile = 0.0
            polls.append(threading.Thread(target=poller.snapshot, args=("crnn_long", None, 0)))
            polls[0].start()
            assert poll_reads_sizes.wait(5)
        return statuses_of(store)

    polls: list[threading.Thread] = []
    monkeypatch.setattr(Store, "experiment_bytes", slow_bytes)
    monkeypatch.setattr(Store, "latest_statuses", paint_waits)
    try:
        snap = poller.snapshot("crnn_long", None, 0, reconcile_runs=False)
    finally:
        paint_may_end.set()
        for poll in polls:
            poll.join(5)
    assert snap.sizes is not None and "crnn_long" in snap.sizes
