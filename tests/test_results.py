"""What an evaluation keeps, seen and heard: the pieces (global SDR, which tracks are kept,
spectrograms, sparklines, per-class figures), the results screen (snapshots at 80×24 and
120×36, drawn from kept files written here), `nkd results` / `nkd report` / `nkd listen` and
their refusals. The real evaluations that keep them are tested in test_separation.py and
test_noise_e2e.py."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from conftest import nkd as nkd_in  # noqa: F401
from test_tui import SIZES, _app, _finished_run, _settle

from core.noise.keep import per_class
from core.results.kept import load, write_flac, write_manifest, write_spectrogram
from core.results.spectrogram import spectrograms
from core.results.table import separation_rows, sparkline
from core.separation.keep import chosen, global_sdr
from nkd_tui.cli import main
from nkd_tui.spectro import render

RUN = "crnn_long_20260101_120000"
RATE = 8000


def test_global_sdr_is_the_challenges_whole_track_ratio() -> None:
    ref = np.ones((2, 100))
    assert global_sdr(ref, ref * 0.9) == pytest.approx(10 * np.log10(200 / (200 * 0.01)))
    assert np.isnan(global_sdr(np.zeros((2, 10)), np.ones((2, 10))))


def test_the_worst_the_best_and_the_median_are_kept_first() -> None:
    means = [3.0, -1.0, 7.0, 2.0, float("nan")]
    assert chosen(means, 3) == {4: "worst", 2: "best", 3: "median"}  # NaN counts as worst
    assert chosen(means, 1) == {4: "worst"} and chosen(means, 0) == {}
    assert len(chosen(means, 10)) == 5


def test_sparkline_and_per_class_figures() -> None:
    assert sparkline([-20.0, 5.0, None, 30.0]) == "▁▅ █"
    assert len(sparkline([1.0] * 100, 10)) == 10
    precision, recall = per_class(np.array([[3, 1], [0, 0]]))
    assert precision == [1.0, 0.0] and recall == [0.75, None]


def test_a_near_silent_estimate_draws_dark_beside_its_reference() -> None:
    t = np.arange(RATE * 2) / RATE
    ref = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    specs = spectrograms({"mixture": ref, "reference": ref, "estimate": ref * 1e-3}, RATE)
    assert specs["reference"].max() > 200 and specs["estimate"].max() < 150  # 60 dB lower
    colour = render(specs["reference"], 30, 6, color=True)
    plain = render(specs["estimate"], 30, 6, color=False)
    assert colour.plain.count("▀") == 180 and len(plain.plain.splitlines()) == 6
    assert "@" in render(specs["reference"], 30, 6, color=False).plain  # loud, without colour


def _kept(root: Path, run_id: str = RUN) -> Path:
    """A separation evaluation's kept results, as the evaluation writes them: two tracks, one
    kept with a near-silent drums estimate."""
    folder = root / "runs" / run_id / "results" / "val"
    t = np.arange(RATE * 3) / RATE
    tone = 0.5 * np.sin(2 * np.pi * 220 * t)
    hits = 0.5 * (np.sin(2 * np.pi * 3 * t) > 0.95) * np.random.default_rng(0).normal(size=t.size)
    signals = {"mixture": np.stack([tone + hits] * 2), "drums/reference": np.stack([hits] * 2),
               "drums/estimate": np.stack([hits * 0.01] * 2),
               "vocals/reference": np.stack([tone] * 2), "vocals/estimate": np.stack([tone] * 2)}
    specs = spectrograms(signals, RATE)
    entries = {}
    for key, audio in signals.items():
        base = f"song_a/{key.replace('/', '.')}"
        write_flac(folder / f"{base}.flac", audio, RATE)
        write_spectrogram(folder / f"{base}.npy", specs[key])
        entries[key] = {"audio": f"{base}.flac", "spectrogram": f"{base}.npy"}
    write_manifest(folder, {
        "kind": "separation", "split": "val", "rate": RATE, "stems": ["drums", "vocals"],
        "definitions": {}, "tracks": [
            {"name": "song_a", "sdr": {"drums": -14.2, "vocals": 9.5},
             "sdr_global": {"drums": -13.9, "vocals": 9.8}, "mean_sdr": -2.35,
             "frames": {"drums": [-15.0, -14.0, -13.5], "vocals": [9.0, 10.0, 9.5]},
             "kept": {"why": "worst", "start": 0.0, "end": 3.0, "signals": entries}},
            {"name": "song_b", "sdr": {"drums": 4.0, "vocals": 6.0},
             "sdr_global": {"drums": 4.2, "vocals": 6.1}, "mean_sdr": 5.0,
             "frames": {"drums": [3.0, None, 5.0], "vocals": [6.0, 6.0, 6.0]}}]})
    return folder


async def _results_of_the_finished_run(pilot) -> None:
    await _finished_run(pilot)
    await pilot.press("o")
    await _settle(pilot)
    await _settle(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_results_screen(tmp_path: Path, snap_compare, size: tuple[int, int]) -> None:
    app = _app(tmp_path)
    _kept(tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=_results_of_the_finished_run)


async def test_the_results_screen_lists_worst_first_and_draws_three_panels(
        tmp_path: Path) -> None:
    from nkd_tui.spectro import Spectrogram

    app = _app(tmp_path)
    _kept(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await _results_of_the_finished_run(pilot)
        screen = app.screen
        table = screen.query_one("#results-table")
        assert [str(c) for c in table.get_row_at(0)[:3]] == ["song_a", "drums", "-14.20"]
        panels = list(screen.query(Spectrogram))
        assert [p.title.split()[0] for p in panels] == ["mixture", "reference", "estimate"]
        assert all(p.spec is not None for p in panels)
        assert panels[2].spec.max() < panels[1].spec.max()  # the near-silent estimate
        await pilot.press("down", "down")  # song_b drums: not kept
        await _settle(pilot)
        panels = list(screen.query(Spectrogram))
        assert all(p.spec is None for p in panels) and "not kept" in panels[0].note


def _cli(root: Path, *args: str) -> int:
    return main(["--registry", str(root / "experiments.toml"), *args])


def test_results_report_and_their_refusals(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from test_tui import _fixture_workspace

    _fixture_workspace(tmp_path)
    folder = _kept(tmp_path)
    capsys.readouterr()
    assert _cli(tmp_path, "results", RUN) == 0
    out = capsys.readouterr().out
    assert out.index("song_a                   drums") < out.index("song_b")
    assert "worst" in out and "-13.90" in out  # the global SDR beside BSS Eval's
    assert [r["track"] for r in separation_rows(load(folder.parent.parent)[0].doc)][:2] == \
        ["song_a", "song_b"]
    assert _cli(tmp_path, "report", RUN, "--out", str(tmp_path / "page")) == 0
    page = (tmp_path / "page" / "index.html").read_text()
    assert page.count("<audio") == 5 and page.count("<img") == 5
    assert len(list((tmp_path / "page").rglob("*.png"))) == 5
    import soundfile

    for flac in (tmp_path / "page").rglob("*.flac"):
        assert soundfile.info(str(flac)).samplerate == RATE
    # refusals: one line each, exit 2, nothing written
    capsys.readouterr()
    assert _cli(tmp_path, "report", RUN, "--out", str(tmp_path / "page")) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert _cli(tmp_path, "results", "crnn_long_20260102_120000") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "kept no results" in err
    (folder / "song_a" / "drums.estimate.flac").unlink()
    assert _cli(tmp_path, "report", RUN, "--out", str(tmp_path / "page2")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "drums.estimate.flac is gone" in err
    assert not (tmp_path / "page2").exists()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        write_flac(folder / "song_a" / "drums.estimate.flac", np.zeros(10), RATE)
        assert _cli(tmp_path, "listen", RUN, "--port", str(port)) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"port {port} on 127.0.0.1 is in use" in err


async def test_a_classifier_shows_its_confusion_as_a_heat_map(tmp_path: Path) -> None:
    app = _app(tmp_path)
    folder = tmp_path / "runs" / RUN / "results" / "test"
    write_manifest(folder, {
        "kind": "noise", "split": "test", "rate": 16000, "classes": ["door", "footsteps"],
        "clips": 10, "confusion": [[4, 1], [2, 3]], "precision": [0.6667, 0.75],
        "recall": [0.8, 0.6], "misclassified": [
            {"clip": "door/d_07.wav", "offset": 0.0, "true": "door", "predicted": "footsteps",
             "confidence": 0.91}]})
    async with app.run_test(size=(100, 30)) as pilot:
        await _results_of_the_finished_run(pilot)
        table = app.screen.query_one("#results-table")
        assert table.row_count == 2
        row = table.get_row_at(0)
        assert str(row[0]) == "door" and row[1].plain.strip() == "4" and row[-1] == "0.80"
        assert "door/d_07.wav  door → footsteps (0.91)" in \
            str(app.screen.query_one("#results-wrong").render())


def test_kept_results_are_never_written_through_a_link(tmp_path: Path) -> None:
    from core.errors import RunError
    from core.separation.keep import Keeper

    run_dir, outside = tmp_path / "run", tmp_path / "elsewhere"
    run_dir.mkdir()
    outside.mkdir()
    (run_dir / "results").symlink_to(outside)
    with pytest.raises(RunError, match="a symbolic link"):
        Keeper(run_dir, "val", ["vocals"], RATE, 3, {})
    assert list(outside.iterdir()) == []
