"""A full disk and a read-only runs folder, on a real tmpfs (skipped where this process cannot
mount): a checkpoint that does not fit, a run that fills the disk, an end the run's events.jsonl
cannot take (the store never claims it), and control with no file that can be written.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Workspace, nkd, wait_until
from conftest import add_to_registry as _add
from conftest import run_procs as _procs
from conftest import statuses as _statuses

from core.registry import load_registry
from core.runs.launch import launch
from core.store import Store
from core.store.events import EventLog
from core.store.reporter import Reporter


def _wait(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    wait_until(predicate, timeout, what)


@pytest.fixture(autouse=True)
def _tmpfs_used(tmpfs: Path) -> None:
    """Every test here needs the small disk (and is skipped without it)."""


def test_a_checkpoint_that_hits_a_full_disk_says_disk_full_and_keeps_the_last_one(
        tmpfs: Path) -> None:
    """torch.save on a full disk raises `unexpected pos`; nkd says "disk full" with the path,
    leaves no partial file, and the previous checkpoint stays whole and loadable."""
    import torch

    from core.errors import DiskFullError
    from core.training import checkpoint

    path = tmpfs / "separator_state.pt"
    small = {"format": checkpoint.FORMAT, "kind": "separator_state", "w": torch.zeros(10)}
    checkpoint.save_payload(path, small)
    with pytest.raises(DiskFullError, match="disk full") as refused:
        checkpoint.save_payload(path, {**small, "w": torch.zeros(2_000_000)})  # 8 MB in 3 MB
    assert str(path) in str(refused.value)
    assert sorted(p.name for p in tmpfs.iterdir()) == ["separator_state.pt"]  # nothing partial
    assert checkpoint.load(path, kind="separator_state")["w"].shape == (10,)


def test_disk_full_records_the_end_and_says_why(tmpfs: Path) -> None:
    space = Workspace(tmpfs)
    filler = tmpfs / "fill.py"
    filler.write_text(
        "import json, os, sys\n"
        "print('@nkd ' + json.dumps({'epoch': 1, 'train_loss': 1.0}), flush=True)\n"
        "with open(os.path.join(os.environ['NKD_RUN_DIR'], 'big.bin'), 'wb', buffering=0) as fh:\n"
        "    try:\n"
        "        while True:\n"
        "            fh.write(b'x' * 65536); fh.flush()\n"
        "    except OSError as exc:\n"
        "        print('script: ' + exc.strerror, file=sys.stderr, flush=True)\n"
        "        sys.exit(5)\n"
    )
    _add(space, f'[experiments.fill]\ncommand = ["{sys.executable}", "{filler}"]\n')
    try:
        assert nkd(space, "run", "fill") == 1  # the run failed, and says so
        store = space.store()
        row = store.latest_run("fill")
        assert row["status"] == "failed" and row["exit_code"] == 5
        assert "No space left on device" in row["error"]
        events = _statuses(space, row["id"])
        assert events[-1] == "failed"  # the reserve kept room for the end
    finally:
        space.cleanup()


def test_read_only_runs_folder_is_one_line_and_kill_still_kills(
    tmpfs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = Workspace(tmpfs)
    store = space.store()
    run_id = launch(load_registry(space.registry), "slow", (), store=store).run_id
    _wait(lambda: len(store.epochs(run_id)) >= 2, what="epochs")
    runs = tmpfs / "runs"
    bind = subprocess.run(["mount", "--bind", str(runs), str(runs)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(runs)], check=True)
        capsys.readouterr()
        assert nkd(space, "ps") == 0
        # a 3 MB disk with a run going: ps says it is nearly full (a line of its own)
        assert "free on the disk of" in capsys.readouterr().err
        assert nkd(space, "pause", run_id) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "control.json" in err and "Read-only" in err
        assert nkd(space, "kill", run_id, "--grace", "2") == 0  # SIGTERM needs no file
        _wait(lambda: not _procs(space, run_id), 20, "every process of the run gone")
        row = store.get_run(run_id)
        assert row["status"] in ("stopped", "killed"), row["error"]  # an open file still takes it
        assert _statuses(space, run_id)[-1] == row["status"]
    finally:
        subprocess.run(["umount", "-l", str(runs)], check=False)
        space.cleanup()


def _fill(folder: Path) -> Path:
    """Fill the disk `folder` is on; returns the file that holds the space."""
    ballast = folder / "ballast.bin"
    with open(ballast, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"x" * 65536)
        except OSError:
            pass
    with open(ballast, "ab", buffering=0) as fh:  # the last few bytes of the last block too
        try:
            while True:
                fh.write(b"x")
        except OSError:
            pass
    return ballast


def test_an_end_its_events_file_cannot_take_is_never_claimed_by_the_store(
        tmpfs: Path, tmp_path: Path) -> None:
    """The disk of the runs folder fills before the worker writes `finished` (no reserve
    left): events.jsonl does not hold the end, so the store does not claim it. It says lost,
    with the end meant and why; `nkd reindex` keeps that; a restart afterwards moves on."""
    store = Store(tmp_path / "nkd.db")  # on another disk, as a shared store may be
    runs = tmpfs / "runs"
    run_id = "fill_20260101_120000"
    run_dir = runs / run_id
    run_dir.mkdir(parents=True)
    with Reporter(run_id, run_dir, store) as rep:
        rep.event({"type": "run", "experiment": "fill", "epochs_total": 1000})
        rep.status("running")
        rep.epoch(1, train_loss=1.0)
        ballast = _fill(tmpfs)
        epoch = 2
        while not rep.write_errors:  # until the last page of events.jsonl is full too
            rep.epoch(epoch, train_loss=1.0 / epoch)  # the store has it; the file may not
            epoch += 1
        rep.status("finished", exit_code=0)
    row = store.get_run(run_id)
    assert row["status"] == "lost"
    assert "ended finished" in row["error"] and "No space left on device" in row["error"]
    assert f"runs/{run_id}/events.jsonl" in row["error"] and row["exit_code"] == 0
    held = [e["status"] for e in EventLog(run_dir / "events.jsonl") if e["type"] == "status"]
    assert held == ["running"]
    report = store.reindex(runs)
    assert report.runs == 1
    again = store.get_run(run_id)
    assert (again["status"], again["error"]) == ("lost", row["error"])
    ballast.unlink()  # space again; the run is restarted and its worker writes once more
    with Reporter(run_id, run_dir, store) as rep:
        rep.status("starting", t=time.time() + 1)
    store.reindex(runs)
    assert store.get_run(run_id)["status"] == "starting"
    assert store.conn.execute("SELECT count(*) FROM unrecorded_ends").fetchone()[0] == 0

