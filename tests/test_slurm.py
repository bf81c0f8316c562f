"""Runs on a real single-node Slurm (`scripts/slurm-local start`, which `.ci/run` calls as root):
real sbatch jobs, squeue, scancel and requeue. Skipped with one line where Slurm is not running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TICKER, Workspace, most_at_once, nkd, wait_until

from core.backends.slurm import refresh
from core.registry.workspace import Workspace as Paths
from core.store import FINAL, FULL_COLUMNS

ROOT = Path(__file__).resolve().parent.parent


def _slurm_up() -> str | None:
    if not shutil.which("sinfo"):
        return "no Slurm client here (scripts/slurm-local start installs one, as root)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except subprocess.TimeoutExpired:
        return "sinfo does not answer"
    if not any(s in out for s in ("idle", "mixed", "allocated")):
        return "Slurm is not running here (scripts/slurm-local start, as root)"
    return None


pytestmark = pytest.mark.skipif(_slurm_up() is not None, reason=str(_slurm_up()))

SLURM = f"""
[backends.slurm]
time = "00:10:00"

[experiments.stick]
group = "test"
backend = "slurm"
command = ["{sys.executable}", "{TICKER}", "--epochs", "{{epochs}}", "--delay", "{{delay}}"]
epochs = 8
params = {{ delay = 0.2 }}

[experiments.sslow]
extends = "stick"
epochs = 400

[experiments.sgpu]
extends = "stick"
gpus = 1
epochs = 10
"""


@pytest.fixture
def sws(ws: Workspace) -> Iterator[Workspace]:
    ws.registry.write_text(ws.registry.read_text() + SLURM)
    yield ws
    for row in ws.store().list_runs(columns=FULL_COLUMNS):
        if row["job_id"] and row["status"] not in FINAL:
            subprocess.run(["scancel", row["job_id"]], capture_output=True, check=False)


def _sync(ws: Workspace) -> None:
    refresh(ws.store(), Paths.at(ws.registry))


def _row(ws: Workspace, name: str) -> dict:
    return dict(ws.store().latest_run(name))


def _until(ws: Workspace, predicate, timeout: float = 60, what: str = "Slurm") -> None:
    def check() -> bool:
        _sync(ws)
        return predicate()

    wait_until(check, timeout, what)


def test_a_command_experiment_runs_on_slurm_with_live_epochs(sws: Workspace) -> None:
    assert nkd(sws, "run", "stick", "--detach") == 0
    row = _row(sws, "stick")
    assert row["backend"] == "slurm" and row["job_id"]
    script = (Path(row["run_dir"]) / "job.sbatch").read_text()
    assert "#SBATCH --requeue" in script and "core.worker" in script
    seen_live = []

    def progressing() -> bool:
        r = _row(sws, "stick")
        if r["status"] == "running" and 0 < (r["epoch"] or 0) < 8:
            seen_live.append(r["epoch"])
        return r["status"] in FINAL

    _until(sws, progressing, 60, "the job to end")
    row = _row(sws, "stick")
    assert row["status"] == "finished" and row["epoch"] == 8 and row["accuracy"] == 0.9
    assert seen_live, "epochs were not in the store while the job ran"
    assert row["node"]  # where it ran, from the worker and from squeue


def test_pause_resume_stop_and_a_cancelled_job_is_lost(sws: Workspace) -> None:
    assert nkd(sws, "run", "sslow", "--detach") == 0
    _until(sws, lambda: (_row(sws, "sslow")["epoch"] or 0) >= 2, 60, "epochs")
    run_id = _row(sws, "sslow")["id"]
    assert nkd(sws, "pause", run_id) == 0
    _until(sws, lambda: _row(sws, "sslow")["status"] == "paused", 60, "paused")
    time.sleep(0.5)
    _sync(sws)
    frozen = _row(sws, "sslow")["epoch"]
    time.sleep(1.5)
    _sync(sws)
    assert _row(sws, "sslow")["epoch"] == frozen
    assert nkd(sws, "resume", run_id) == 0
    _until(sws, lambda: (_row(sws, "sslow")["epoch"] or 0) > frozen + 1, 90, "resumed epochs")
    assert nkd(sws, "stop", run_id) == 0
    _until(sws, lambda: _row(sws, "sslow")["status"] == "stopped", 60, "stopped")

    # a job that dies without a word (its node failed, the OOM killer): the worker is killed
    # with -9, the job ends, and the login side finds no final status: lost
    assert nkd(sws, "run", "sslow", "--detach") == 0
    second = _row(sws, "sslow")
    _until(sws, lambda: (_row(sws, "sslow")["epoch"] or 0) >= 1, 60, "epochs")
    os.kill(_row(sws, "sslow")["pid"], signal.SIGKILL)
    _until(sws, lambda: _row(sws, "sslow")["status"] in FINAL, 60, "the dead job")
    row = _row(sws, "sslow")
    assert row["status"] == "lost" and f"Slurm job {second['job_id']}" in row["error"]

    assert nkd(sws, "run", "sslow", "--detach") == 0  # kill is scancel
    _until(sws, lambda: (_row(sws, "sslow")["epoch"] or 0) >= 1, 60, "epochs")
    assert nkd(sws, "kill", _row(sws, "sslow")["id"]) == 0
    assert _row(sws, "sslow")["status"] == "killed"


def test_a_pending_job_is_held_released_and_cancelled(sws: Workspace) -> None:
    assert nkd(sws, "run", "sslow", "--detach") == 0
    assert nkd(sws, "run", "sslow", "--detach") == 0  # 2 CPUs: a third waits
    assert nkd(sws, "run", "sslow", "--detach") == 0
    pending = _row(sws, "sslow")
    _until(sws, lambda: _row(sws, "sslow")["slurm_state"] == "PENDING", 30, "pending")
    assert nkd(sws, "pause", pending["id"]) == 0  # a pending job is held
    _until(sws, lambda: "Held" in (_row(sws, "sslow")["slurm_reason"] or ""), 30, "held")
    assert nkd(sws, "resume", pending["id"]) == 0
    assert nkd(sws, "stop", pending["id"]) == 0  # a pending job is cancelled
    assert _row(sws, "sslow")["status"] == "cancelled"


def test_a_four_run_sweep_on_two_gpus_runs_two_at_a_time(sws: Workspace) -> None:
    assert nkd(sws, "run", "sgpu", "--set", "epochs=6,7,8,9", "--sweep-name", "sg") == 0
    rows = lambda: [dict(r) for r in sws.store().list_runs(columns=FULL_COLUMNS, sweep="sg")]  # noqa: E731
    _until(sws, lambda: len(rows()) == 4 and all(r["status"] in FINAL for r in rows()), 120,
           "the sweep to end")
    done = rows()
    assert all(r["status"] == "finished" for r in done)
    assert most_at_once(done) <= 2
    assert {r["gpus"] for r in done} <= {"0", "1"}  # Slurm set CUDA_VISIBLE_DEVICES per job


SEP = ["--set", "hidden_size=32", "--set", "num_layers=1", "--set", "segment_seconds=1.0",
       "--set", "batch_size=4", "--set", "epochs=3", "--set", "lr=2e-3"]


def test_a_requeued_recipe_run_resumes_and_equals_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    from nkd_tui.cli import main

    space = Workspace(tmp_path)
    shutil.copy(ROOT / "experiments.toml", space.registry)
    space.registry.write_text(space.registry.read_text() + '\n[backends.slurm]\ntime = "0:10:00"\n')
    reg = str(space.registry)
    try:
        assert main(["--registry", reg, "data", "synth", "separation", "--tracks", "3",
                     "--seconds", "4"]) == 0
        assert main(["--registry", reg, "run", "crnn_long", *SEP]) == 0  # here, uninterrupted
        store = space.store()
        straight = store.latest_run("crnn_long")["id"]
        want = [(e["epoch"], e["train_loss"], e["val_loss"]) for e in store.epochs(straight)]
        assert main(["--registry", reg, "run", "crnn_long", *SEP, "--set", "gpus=0",
                     "--on", "slurm", "--detach"]) == 0
        run = store.latest_run("crnn_long")
        _until(space, lambda: len(store.epochs(run["id"])) >= 1, 120, "a first epoch")
        # what Slurm sends before a time limit: the worker suspends, then requeues its job
        subprocess.run(["scancel", "--batch", "--signal=USR2", run["job_id"]], check=True)
        _until(space, lambda: (store.get_run(run["id"])["requeues"] or 0) >= 1, 120, "requeue")
        _until(space, lambda: store.get_run(run["id"])["status"] in FINAL, 240, "the end")
        row = store.get_run(run["id"])
        assert row["status"] == "finished", row["error"]
        got = [(e["epoch"], e["train_loss"], e["val_loss"]) for e in store.epochs(run["id"])]
        assert [g[0] for g in got] == [1, 2, 3]
        for (_, t1, v1), (_, t2, v2) in zip(got, want, strict=True):
            assert t1 == pytest.approx(t2, rel=1e-6) and v1 == pytest.approx(v2, rel=1e-6)
        log = (Path(row["run_dir"]) / "output.log").read_text()
        assert "resumed separator after epoch" in log
    finally:
        space.cleanup()


def test_slurm_runs_in_ps_json(sws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert nkd(sws, "run", "stick", "--set", "epochs=2", "--detach") == 0
    _until(sws, lambda: _row(sws, "stick")["status"] in FINAL, 60, "the end")
    capsys.readouterr()
    assert nkd(sws, "ps", "--json") == 0
    listed = json.loads(capsys.readouterr().out)[0]
    assert listed["backend"] == "slurm" and listed["job_id"] and listed["status"] == "finished"


def test_a_slurm_run_records_what_made_it_and_a_rerun_checks_it(
        sws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    from test_provenance import MINE, _repo

    repo = _repo(sws.root)
    (sws.root / "clips").mkdir()
    (sws.root / "clips" / "one.wav").write_bytes(b"x")
    sws.registry.write_text(sws.registry.read_text()
                            + MINE.format(python=sys.executable) + 'backend = "slurm"\n')
    assert nkd(sws, "run", "mine", "--detach") == 0  # recorded at submission
    first = _row(sws, "mine")
    assert first["backend"] == "slurm"
    _until(sws, lambda: _row(sws, "mine")["status"] in FINAL, 60, "the first job")
    (repo / "train.py").write_text("print('@nkd {\"epoch\": 1, \"train_loss\": 0.125}')\n")
    (sws.root / "clips" / "two.wav").write_bytes(b"y")
    assert nkd(sws, "run", "mine", "--detach") == 0
    second = _row(sws, "mine")
    _until(sws, lambda: _row(sws, "mine")["status"] in FINAL, 60, "the second job")
    capsys.readouterr()
    assert nkd(sws, "compare", first["id"], second["id"]) == 0
    out = capsys.readouterr().out
    assert "code (differs)" in out and "data (differs)" in out
    assert nkd(sws, "diff", first["id"], second["id"]) == 0
    assert "+print('@nkd {\"epoch\": 1, \"train_loss\": 0.125}')" in capsys.readouterr().out
    assert nkd(sws, "rerun", first["id"], "--detach") == 2
    assert "code differs" in capsys.readouterr().err
    assert nkd(sws, "rerun", first["id"], "--anyway", "--detach") == 0
    rerun = _row(sws, "mine")
    assert rerun["backend"] == "slurm" and rerun["job_id"]
    _until(sws, lambda: _row(sws, "mine")["status"] in FINAL, 60, "the rerun's job")
    assert _row(sws, "mine")["status"] == "finished"
    worker = json.loads((Path(rerun["run_dir"]) / "worker_environment.json").read_text())
    assert worker["starts"][0]["host"]  # written by the worker on the compute node
    prov = json.loads((Path(rerun["run_dir"]) / "provenance.json").read_text())
    assert prov["rerun"]["of"] == first["id"] and len(prov["rerun"]["differs"]) == 2


SLURM_HALVING = """
[sweeps.stune]
experiment = "crnn_long"
grid = { lr = [2e-3, 2e-2] }
halving = { metric = "val_loss", mode = "min", rungs = [1, 2], keep = 0.5 }
"""


def test_a_halving_sweep_on_slurm_promotes_and_prunes_through_requeue(tmp_path: Path) -> None:
    """2 trials on Slurm, rungs [1, 2], keep a half: each is suspended at epoch 1 with its job
    requeued and held in Slurm's queue; the better one is released and resumes from its state
    in the same job to epoch 2, the other is pruned and its held job cancelled."""
    from core.backends.slurm import jobs
    from core.store.events import EventLog
    from nkd_tui.cli import main

    space = Workspace(tmp_path)
    shutil.copy(ROOT / "experiments.toml", space.registry)
    space.registry.write_text(space.registry.read_text() + '\n[backends.slurm]\ntime = '
                              '"0:10:00"\n' + SLURM_HALVING)
    reg = str(space.registry)
    small = SEP[:8]  # its size, not its epochs or lr: the sweep sets those
    try:
        assert main(["--registry", reg, "data", "synth", "separation", "--tracks", "3",
                     "--seconds", "4"]) == 0
        assert main(["--registry", reg, "run", "stune", "--sweep-name", "st1", "--on", "slurm",
                     *small, "--set", "epochs=2", "--set", "gpus=0"]) == 0
        store = space.store()

        def trials() -> list[dict]:
            return store.list_runs(sweep="st1", columns=("id", "status", "job_id", "requeues"))

        ended = set(FINAL) - {"suspended"}  # a trial waiting at its rung is not done
        _until(space, lambda: len(trials()) == 2 and all(t["status"] in ended
                                                         for t in trials()), 300, "the sweep")
        rows = {t["id"]: t for t in trials()}
        assert sorted(t["status"] for t in rows.values()) == ["finished", "pruned"]
        for run_id, row in rows.items():
            events = list(EventLog(space.root / "runs" / run_id / "events.jsonl"))
            assert sum(e["type"] == "job" for e in events) == 1  # one job: requeued, not anew
            assert (row["requeues"] or 0) >= 1, run_id  # held in Slurm's queue at its rung
            log = (space.root / "runs" / run_id / "output.log").read_text()
            assert "halving: rung 1 reached" in log
            if row["status"] == "finished":
                assert "resumed separator after epoch 1" in log
                assert [e["epoch"] for e in store.epochs(run_id)] == [1, 2]
            else:
                assert [e["epoch"] for e in store.epochs(run_id)] == [1]
                job = jobs([row["job_id"]]).get(row["job_id"])
                assert job is None or job.get("job_state") in ("CANCELLED", ["CANCELLED"])
    finally:
        held = [r["job_id"] for r in space.store().list_runs(sweep="st1", columns=("job_id",))
                if r["job_id"]]
        if held:  # a failed test leaves no job held in the queue
            subprocess.run(["scancel", *held], check=False, capture_output=True)
        space.cleanup()
