"""The GPU-aware queue with real workers and a real scheduler process; GPUs described by
NKD_GPUS (the documented test seam for hardware this machine lacks), NVML only under `gpu`."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import TICKER, Workspace, most_at_once, nkd, wait_until

from core.backends.gpus import Gpu, GpuProcess, read_gpus
from core.backends.queue.placement import Lease, Need, place
from core.registry import load_registry
from core.registry.queue import QueueConfig, parse_memory
from core.runs.plan import make_plan
from core.store import FINAL, FULL_COLUMNS
from core.store.events import EventLog

ROOT = Path(__file__).resolve().parent.parent

GPU_TICK = f"""
[experiments.gpu_tick]
group = "test"
command = ["{sys.executable}", "{TICKER}", "--epochs", "{{epochs}}", "--delay", "{{delay}}"]
epochs = 6
gpus = 1
params = {{ delay = 0.1 }}
"""


def _gpus(path: Path, n: int, foreign: dict[int, float] | None = None) -> Path:
    foreign = foreign or {}
    doc = {"gpus": [
        {"index": i, "uuid": f"GPU-{i}", "name": "NVIDIA H100 80GB", "memory_total_mib": 81559,
         "memory_used_mib": foreign.get(i, 0) * 81559, "utilization": 0,
         "processes": ([{"pid": 4242, "user": "someone", "memory_mib": foreign[i] * 81559}]
                       if i in foreign else [])}
        for i in range(n)]}
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def queue_ws(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("NKD_QUEUE_IDLE_S", "3")
    ws.registry.write_text(ws.registry.read_text() + GPU_TICK)
    return ws


def _runs(ws: Workspace) -> list[dict]:
    return list(ws.store().list_runs(columns=(*FULL_COLUMNS, "params")))


def _all_final(ws: Workspace, n: int) -> bool:
    rows = ws.store().list_runs()
    return len(rows) == n and all(r["status"] in FINAL for r in rows)


def test_four_runs_on_two_gpus_never_more_than_two_at_once(
    queue_ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NKD_GPUS", str(_gpus(tmp_path / "gpus.json", 2)))
    for _ in range(4):
        assert nkd(queue_ws, "run", "gpu_tick", "--queue") == 0
    wait_until(lambda: _all_final(queue_ws, 4), 90, "four queued runs to end")
    rows = _runs(queue_ws)
    assert all(r["status"] == "finished" for r in rows)
    assert most_at_once(rows) <= 2
    for gpu in ("0", "1"):
        assert most_at_once([r for r in rows if r["gpus"] == gpu]) <= 1
    assert {r["gpus"] for r in rows} == {"0", "1"}
    for r in rows:  # each worker saw only its own GPU
        env = (queue_ws.root / "runs" / r["id"] / "visible.txt").read_text().split()
        assert env == [r["gpus"], "PCI_BUS_ID"]


def test_others_jobs_keep_runs_off_their_gpu(
    queue_ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NKD_GPUS", str(_gpus(tmp_path / "gpus.json", 2, foreign={0: 0.9})))
    for _ in range(2):
        assert nkd(queue_ws, "run", "gpu_tick", "--queue") == 0
    wait_until(lambda: _all_final(queue_ws, 2), 60, "two queued runs to end")
    rows = _runs(queue_ws)
    assert {r["gpus"] for r in rows} == {"1"} and most_at_once(rows) == 1


def test_a_direct_run_gets_a_free_gpu_or_is_refused(
    queue_ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NKD_GPUS", str(_gpus(tmp_path / "gpus.json", 1)))
    assert nkd(queue_ws, "run", "gpu_tick", "--set", "epochs=40", "--detach") == 0
    assert "on GPU 0" in capsys.readouterr().out
    assert nkd(queue_ws, "run", "gpu_tick", "--detach") == 2  # the lease counts, not NVML
    err = capsys.readouterr().err
    assert "no GPU is free now" in err and "GPU 0 runs gpu_tick_" in err and "--queue" in err
    assert len(_runs(queue_ws)) == 1  # nothing written for the refused run


def test_priority_and_after_order_the_starts(
    queue_ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NKD_GPUS", str(_gpus(tmp_path / "gpus.json", 0)))  # slots: 1 at once
    assert nkd(queue_ws, "queue", "pause") == 0
    assert nkd(queue_ws, "run", "tick", "--queue") == 0
    first = _runs(queue_ws)[0]["id"]
    assert nkd(queue_ws, "run", "tick", "--queue", "--priority", "5") == 0
    assert nkd(queue_ws, "run", "tick", "--after", first) == 0  # --after implies the queue
    assert nkd(queue_ws, "run", "tick", "--queue") == 0
    last = _runs(queue_ws)[0]["id"]
    assert nkd(queue_ws, "queue", "top", last) == 0
    capsys.readouterr()
    assert nkd(queue_ws, "queue", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in listed][0] == last
    assert any(r["waits"].startswith(f"waits for {first}") for r in listed)
    assert nkd(queue_ws, "queue", "resume") == 0
    wait_until(lambda: _all_final(queue_ws, 4), 90, "the queue to drain")
    order = [r["id"] for r in sorted(_runs(queue_ws), key=lambda r: r["started_at"])]
    by_priority = [r["run"] for r in listed]
    assert order[0] == last and order.index(first) < order.index(by_priority[-1])


def test_a_failed_parent_blocks_its_dependants(
    queue_ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NKD_GPUS", str(_gpus(tmp_path / "gpus.json", 0)))
    assert nkd(queue_ws, "run", "broken", "--queue") == 0
    parent = _runs(queue_ws)[0]["id"]
    assert nkd(queue_ws, "run", "tick", "--after", parent) == 0
    wait_until(lambda: _all_final(queue_ws, 2), 60, "the chain to end")
    child = _runs(queue_ws)[0]
    assert child["status"] == "blocked" and f"waits for {parent}, which ended failed" in \
        child["error"]


def test_the_scheduler_killed_mid_queue_starts_nothing_twice_and_loses_nothing(
    queue_ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NKD_GPUS", str(_gpus(tmp_path / "gpus.json", 0)))
    for _ in range(4):
        assert nkd(queue_ws, "run", "tick", "--queue") == 0
    pid_file = queue_ws.root / "nkd.queue.pid"
    wait_until(lambda: pid_file.is_file() and any(
        r["status"] == "running" for r in _runs(queue_ws)), 30, "the first start")
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    wait_until(lambda: not _holds_lock(queue_ws), 10, "the lock to be released")
    assert nkd(queue_ws, "queue") == 0  # finds queued runs and no scheduler: starts one
    wait_until(lambda: _all_final(queue_ws, 4), 90, "the queue to drain")
    for row in _runs(queue_ws):
        assert row["status"] == "finished"
        statuses = [e["status"] for e in EventLog(queue_ws.root / "runs" / row["id"] /
                                                  "events.jsonl") if e["type"] == "status"]
        assert statuses.count("running") == 1, statuses


def _holds_lock(ws: Workspace) -> bool:
    from core.backends.queue.scheduler import is_running
    from core.registry.workspace import Workspace as Paths

    return is_running(Paths.at(ws.registry))


def test_a_three_by_two_sweep_is_six_runs_with_one_sweep_id(
    queue_ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NKD_GPUS", str(_gpus(tmp_path / "gpus.json", 0)))
    assert nkd(queue_ws, "queue", "pause") == 0  # recorded, not run
    assert nkd(queue_ws, "run", "tick", "--set", "epochs=2,3,4", "--set",
               "params.delay=range(0.01,0.03,0.01)", "--sweep-name", "grid1") == 0
    capsys.readouterr()
    assert nkd(queue_ws, "ps", "--sweep", "grid1", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 6 and {r["sweep"] for r in listed} == {"grid1"}
    params = [json.loads(r["params"]) for r in _runs(queue_ws)]
    settings = {(p["epochs"], p["params"]["delay"]) for p in params}
    assert settings == {(e, d) for e in (2, 3, 4) for d in (0.01, 0.02)}


def test_a_registry_sweep_and_bad_sweeps(tmp_path: Path) -> None:
    reg = tmp_path / "experiments.toml"
    reg.write_text('[experiments.a]\ncommand = ["t", "{lr}"]\nlr = 0.1\n'
                   '[sweeps.lrs]\nexperiment = "a"\ngrid = { lr = [0.1, 0.01, 0.001] }\n')
    registry = load_registry(reg)
    plan = make_plan(registry, ["lrs"], [], [], None, False)
    assert plan.queued and [p.experiment.params["lr"] for p in plan.runs] == [0.1, 0.01, 0.001]
    assert len(plan.sweeps) == 1 and plan.sweeps[0].startswith("lrs_")


def test_the_mark1_chain_waits_and_pins_its_parents() -> None:
    registry = load_registry(ROOT / "experiments.toml")
    names = ["mark1", "mark1.soft_labels", "mark1.student", "mark1.ensemble"]
    plan = make_plan(registry, names, [], [], None, False)
    assert plan.queued
    parents = [p.parents for p in plan.runs]
    assert parents[0] == [] and parents[1] == [0] and 0 in parents[2] and parents[3]
    assert plan.runs[1].pinned == {"teacher": 0}


def test_placement_rules() -> None:
    def gpu(i: int, used: float = 0, util: float = 0, foreign: float = 0) -> Gpu:
        procs = (GpuProcess(999, "x", foreign),) if foreign else ()
        return Gpu(i, f"GPU-{i}", "g", 81920, used, util, procs)

    cfg = QueueConfig()
    got, _ = place(Need(1), [gpu(0, used=40000), gpu(1, used=1000)], [], cfg)
    assert [g.index for g in got] == [1]  # most free memory
    got, why = place(Need(1, parse_memory("20GiB")), [gpu(0, used=71000)], [], cfg)
    assert got is None and "needs 1 GPU with 20 GiB free; GPU 0 has 11 GiB free" in why
    got, why = place(Need(1), [gpu(0)], [Lease("r1", ("0",))], cfg)
    assert got is None and "GPU 0 runs r1" in why
    got, why = place(Need(1), [gpu(0, util=95, foreign=1000)], [], cfg)
    assert got is None and "busy with others' jobs" in why
    got, _ = place(Need(1, parse_memory("10GiB")), [gpu(0)], [Lease("r1", ("0",), 72000.0)],
                   QueueConfig(runs_per_gpu=2))
    assert got is None  # the lease's memory counts before the run has allocated it
    got, why = place(Need(2), [gpu(0), gpu(1)], [], QueueConfig(gpus=(1,)))
    assert got is None and "nkd may use 1 GPU" in why
    assert place(Need(0), [], [Lease("a", ())], QueueConfig(max_running=2))[0] == []
    assert place(Need(0), [], [Lease("a", ())], QueueConfig(max_running=1))[0] is None


@pytest.mark.gpu
def test_nvml_reads_the_real_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pynvml")
    monkeypatch.delenv("NKD_GPUS", raising=False)
    gpus = read_gpus()
    if not gpus:
        pytest.skip("no NVIDIA GPU on this machine")
    assert all(g.memory_total_mib > 0 and g.uuid for g in gpus)


def _held_queue_and_a_run(ws: Workspace, run_id: str):
    """The queue held, and a reporter for a run folder of `run_id` whose history a test writes."""
    from core.store.reporter import Reporter

    assert nkd(ws, "queue", "pause") == 0
    run_dir = ws.root / "runs" / run_id
    run_dir.mkdir(parents=True)
    store = ws.store()
    return store, Reporter(run_id, run_dir, store)


def test_resume_puts_a_suspended_queued_run_back_in_the_queue(
    queue_ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Suspend frees the GPU (a final status ends the lease); resume queues the run again, to
    continue from its state on whichever GPU is free."""

    monkeypatch.setenv("NKD_GPUS", str(_gpus(tmp_path / "gpus.json", 2)))
    run_id = "mark1_20260101_000000"
    store, rep = _held_queue_and_a_run(queue_ws, run_id)
    rep.event({"type": "run", "experiment": "mark1", "recipe": "noise.teacher",
               "status": "queued"})
    rep.status("starting", by="queue", pid=None)
    rep.event({"type": "worker", "pid": os.getpid(), "gpus": "1"})
    rep.status("running")
    rep.status("suspended", exit_code=0)
    rep.close()
    from core.backends.queue.placement import lease_rows
    from core.backends.queue.scheduler import Queue
    from core.registry.workspace import Workspace as Paths

    assert lease_rows(store) == []  # the suspended run holds no GPU
    capsys.readouterr()
    assert nkd(queue_ws, "resume", run_id) == 0
    assert "queued again" in capsys.readouterr().out
    row = store.get_run(run_id)
    assert row["status"] == "queued" and row["resume"] == 1 and row["gpus"] is None
    decision = Queue(Paths.at(queue_ws.registry), store).decide()[0]
    assert decision.state == "start" and decision.row["resume"] == 1


def test_a_claim_whose_worker_never_started_goes_back_to_the_queue(
    queue_ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The scheduler was killed between claiming a run and starting its worker: the run is
    queued again (keeping its resume flag), never `lost`, never started twice."""
    import time

    from core.registry.workspace import Workspace as Paths
    from core.runs.status import reconcile

    monkeypatch.setenv("NKD_GPUS", str(_gpus(tmp_path / "gpus.json", 0)))
    run_id = "tick_20260101_000000"
    store, rep = _held_queue_and_a_run(queue_ws, run_id)
    old = time.time() - 120
    rep.event({"type": "run", "experiment": "tick", "status": "queued", "t": old})
    rep.status("queued", resume=1, t=old + 1)
    rep.status("starting", by="queue", pid=None, t=old + 2)  # claimed; then the scheduler died
    rep.close()
    assert reconcile(store, Paths.at(queue_ws.registry)) == []
    row = store.get_run(run_id)
    assert row["status"] == "queued" and row["resume"] == 1


def test_a_worker_wakes_the_scheduler_through_its_pipe_and_nothing_else(tmp_path: Path) -> None:
    """The scheduler waits on a named pipe; a write wakes it at once. With no scheduler
    reading, with a regular file or a link in the pipe's place, nothing is written."""
    import time as clock

    from core.backends.queue.wake import WAKE_NAME, Waker, wake

    assert wake(tmp_path) is False  # no pipe: no scheduler
    waker = Waker(tmp_path)
    try:
        start = clock.monotonic()
        assert waker.wait(0.05) is False and clock.monotonic() - start >= 0.04
        assert wake(tmp_path) is True
        start = clock.monotonic()
        assert waker.wait(5.0) is True and clock.monotonic() - start < 1.0
        assert waker.wait(0.01) is False  # drained
    finally:
        waker.close()
    (tmp_path / WAKE_NAME).unlink()
    (tmp_path / WAKE_NAME).write_text("a file of that name")
    assert wake(tmp_path) is False
    assert (tmp_path / WAKE_NAME).read_text() == "a file of that name"
    (tmp_path / WAKE_NAME).unlink()
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / WAKE_NAME).symlink_to(tmp_path / "elsewhere")
    assert wake(tmp_path) is False and (tmp_path / "elsewhere").read_text() == ""
    Waker(tmp_path).close()  # a link in its place: the scheduler only polls
    assert (tmp_path / WAKE_NAME).is_symlink()


def test_a_paused_sweep_pauses_its_live_trials_and_holds_its_queued_ones(
    queue_ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """3 trials, 2 at once: `nkd sweep pause` pauses the 2 running and holds the third, which
    stays queued (saying why) even once a slot is free; `nkd sweep resume` lets all go on."""
    monkeypatch.setenv("NKD_GPUS", str(_gpus(tmp_path / "gpus.json", 0)))
    queue_ws.registry.write_text(queue_ws.registry.read_text() + "\n[queue]\nmax_running = 2\n")
    assert nkd(queue_ws, "run", "slow", "--set", "seed=1,2,3", "--queue",
               "--sweep-name", "sp") == 0
    store = queue_ws.store()

    def by_status() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in store.list_runs(sweep="sp"):
            out.setdefault(r["status"], []).append(r["id"])
        return out

    wait_until(lambda: len(by_status().get("running", [])) == 2, 60, "two trials running")
    capsys.readouterr()
    assert nkd(queue_ws, "sweep", "pause", "sp") == 0
    assert "2 trial(s) paused, 1 queued held" in capsys.readouterr().out
    wait_until(lambda: len(by_status().get("paused", [])) == 2, 20, "both trials paused")
    held = by_status()["queued"][0]
    assert nkd(queue_ws, "stop", by_status()["paused"][0]) == 0  # a slot is free again
    wait_until(lambda: len(by_status().get("stopped", [])) == 1, 30, "the stopped trial")
    time.sleep(1.5)  # several scheduler cycles: the held trial does not start
    assert store.get_run(held)["status"] == "queued"
    capsys.readouterr()
    assert nkd(queue_ws, "queue", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["run"] == held and listed[0]["waits"].startswith("its sweep is paused")
    assert nkd(queue_ws, "sweep", "show", "sp") == 0
    assert "paused (nkd sweep resume sp)" in capsys.readouterr().out
    assert nkd(queue_ws, "sweep", "resume", "sp") == 0
    assert "1 paused trial(s) resumed" in capsys.readouterr().out
    wait_until(lambda: len(by_status().get("running", [])) == 2, 60, "both going on")
    assert nkd(queue_ws, "sweep", "stop", "sp") == 0
    wait_until(lambda: set(by_status()) == {"stopped"}, 60, "the sweep to stop")
