"""Real detached workers: pause, resume, stop, kill, lost, a killed launcher, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Workspace, nkd, wait_until

from core.backends.liveness import is_alive, process_start_time
from core.capture.records import RecordError, parse_record
from core.registry import load_registry
from core.registry.workspace import Workspace as Paths
from core.runs.control import Control, StopRun, request
from core.runs.launch import launch
from core.runs.status import reconcile, wait_for
from core.store import FINAL, Store

_wait = wait_until


def _epochs(store: Store, run_id: str) -> int:
    return len(store.epochs(run_id))


def _start(ws: Workspace, name: str, *overrides: str) -> tuple[str, Store]:
    store = ws.store()
    launched = launch(load_registry(ws.registry), name, overrides, store=store)
    return launched.run_id, store


def _foreground_run(ws: Workspace, epochs: int) -> tuple[subprocess.Popen, Store]:
    """`nkd run slow` in its own process, as typed in a terminal, once `epochs` are recorded."""
    launcher = subprocess.Popen(
        [sys.executable, "-m", "nkd_tui.cli", "--registry", str(ws.registry), "run", "slow"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=Path(__file__).resolve().parent.parent,
        # as in a terminal's foreground: Ctrl-C reaches it even when the suite itself was
        # started as a background job (which makes the shell ignore SIGINT for its children)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    store = ws.store()
    _wait(lambda: bool(store.list_runs()) and _epochs(store, store.list_runs()[0]["id"]) >= epochs,
          what="the foreground run's first epochs")
    return launcher, store


def test_pause_resume_stop(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    run_id, store = _start(ws, "slow")
    assert run_id.startswith("slow_") and len(run_id) == len("slow_20260101_000000")
    _wait(lambda: _epochs(store, run_id) >= 2, what="first epochs")
    row = store.get_run(run_id)
    assert row["status"] == "running" and is_alive(row["pid"], row["pid_start"])

    assert nkd(ws, "pause", run_id) == 0
    assert wait_for(store, run_id, ["paused"], 10) == "paused"
    time.sleep(0.3)  # a tick already past the boundary may still land
    frozen = _epochs(store, run_id)
    time.sleep(1.5)  # 15 ticks of the script's pace
    assert _epochs(store, run_id) == frozen, "epochs advanced while paused"
    # the database stays writable by another run while this one is paused
    other = Store(ws.db)
    other.apply("other_run", {"type": "run", "experiment": "x", "t": time.time()})
    other.apply("other_run", {"type": "epoch", "epoch": 1, "train_loss": 1.0, "t": time.time()})
    assert other.epochs("other_run")[0]["train_loss"] == 1.0

    assert nkd(ws, "resume", run_id) == 0
    assert wait_for(store, run_id, ["running"], 10) == "running"
    _wait(lambda: _epochs(store, run_id) > frozen + 2, what="epochs after resume")

    assert nkd(ws, "stop", run_id) == 0
    assert wait_for(store, run_id, ["stopped"], 30) == "stopped"
    row = store.get_run(run_id)
    assert row["exit_code"] == 0 and row["ended_at"]
    ckpts = store.checkpoints(run_id)
    assert ckpts and ckpts[-1]["role"] == "last"  # the script's final state was recorded
    assert ckpts[-1]["epoch"] == row["epoch"]
    log = (ws.root / "runs" / run_id / "output.log").read_text()
    assert "stopped by request" in log and "@nkd" not in log
    _wait(lambda: not is_alive(row["pid"], row["pid_start"]), what="worker exit")
    capsys.readouterr()
    assert nkd(ws, "pause", run_id) == 2
    assert "is not running (status stopped)" in capsys.readouterr().err


def test_finished_run_records_everything(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert nkd(ws, "run", "tick") == 0  # foreground: follows to the end
    out = capsys.readouterr().out
    assert "epoch 5/5" in out and "finished" in out
    store = ws.store()
    run_id = store.list_runs()[0]["id"]
    row = store.get_run(run_id)
    assert (row["status"], row["epoch"], row["best_epoch"], row["seed"]) == ("finished", 5, 5, 7)
    assert row["accuracy"] == 0.9
    cfg = json.loads((ws.root / "runs" / run_id / "config.json").read_text())
    assert cfg["command"][0] == sys.executable and cfg["params"]["epochs"] == 5

    assert nkd(ws, "ps", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["id"] == run_id and listed[0]["status"] == "finished"
    assert listed[0]["best_val_loss"] == pytest.approx(0.3)
    assert nkd(ws, "show", run_id, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["metrics"] == [{"name": "accuracy", "value": 0.9, "stem": None, "track": None,
                                 "split": "val", "definition": None, "epoch": None,
                                 "gains": None, "caveat": None}]
    assert len(shown["epochs"]) == 5 and shown["status"] == "finished"
    assert nkd(ws, "show", "tick") == 0  # an experiment name means its latest run
    assert run_id in capsys.readouterr().out
    assert nkd(ws, "logs", run_id) == 0
    assert "epoch 5 done" in capsys.readouterr().out


def test_failed_script_is_recorded(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert nkd(ws, "run", "broken") == 1
    store = ws.store()
    row = store.get_run(store.list_runs()[0]["id"])
    assert row["status"] == "failed" and row["exit_code"] == 3
    assert "exited with status 3" in row["error"]
    assert "ValueError: bad batch" in (Path(row["run_dir"]) / "output.log").read_text()
    assert "failed" in capsys.readouterr().out


def test_sigkilled_worker_is_lost(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    run_id, store = _start(ws, "slow")
    _wait(lambda: _epochs(store, run_id) >= 1, what="first epoch")
    pid = store.get_run(run_id)["pid"]
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: not is_alive(pid, store.get_run(run_id)["pid_start"]), what="worker death")
    assert nkd(ws, "ps", "--json") == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[run_id]["status"] == "lost"
    assert store.get_run(run_id)["status"] == "lost"  # recorded, not only shown
    events = (ws.root / "runs" / run_id / "events.jsonl").read_text()
    assert '"lost"' in events  # so `nkd reindex` keeps it


def test_reused_pid_is_not_mistaken_for_the_run() -> None:
    me = os.getpid()
    start = process_start_time(me)
    assert is_alive(me, start)
    assert not is_alive(me, start - 5.0)  # same pid, another process start: not our run
    assert not is_alive(999_999_999, start)


def test_launcher_killed_worker_survives(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    launcher, store = _foreground_run(ws, epochs=1)
    launcher.kill()  # SIGKILL: no chance to clean up, like a dropped SSH session
    launcher.wait()
    run_id = store.list_runs()[0]["id"]
    n = _epochs(store, run_id)
    _wait(lambda: _epochs(store, run_id) > n + 2, what="epochs after the launcher died")
    assert nkd(ws, "ps", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["id"] == run_id and listed[0]["status"] == "running"
    assert nkd(ws, "kill", run_id, "--grace", "5") == 0
    assert store.get_run(run_id)["status"] in FINAL


def test_kill_after_grace(ws: Workspace, tmp_path: Path) -> None:
    # a script that ignores SIGINT and SIGTERM must still go away with `nkd kill`
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text(
        "import signal, time, json\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('@nkd ' + json.dumps({'epoch': 1, 'train_loss': 1.0}), flush=True)\n"
        "time.sleep(600)\n"
    )
    ws.registry.write_text(
        ws.registry.read_text()
        + f'\n[experiments.stubborn]\ncommand = ["{sys.executable}", "{stubborn}"]\n'
    )
    run_id, store = _start(ws, "stubborn")
    _wait(lambda: _epochs(store, run_id) >= 1, what="first epoch")
    child = int((ws.root / "runs" / run_id / "child.pid").read_text())
    assert nkd(ws, "kill", run_id, "--grace", "1") == 0
    row = store.get_run(run_id)
    assert row["status"] == "killed"
    _wait(lambda: not is_alive(child, process_start_time(child)), what="child death")


def test_suspend_refused_for_command(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    run_id, store = _start(ws, "slow")
    _wait(lambda: store.get_run(run_id)["status"] == "running", what="running")
    assert nkd(ws, "suspend", run_id) == 2
    assert "suspend needs a built-in recipe" in capsys.readouterr().err
    assert nkd(ws, "stop", run_id) == 0
    assert wait_for(store, run_id, ["stopped"], 30) == "stopped"


def test_run_ids_never_collide(tmp_path: Path) -> None:
    from datetime import datetime

    from core.util.names import allocate_run_dir

    now = datetime(2025, 12, 28, 6, 31, 27)
    a = allocate_run_dir(tmp_path, "crnn_large_final_tune", now)
    b = allocate_run_dir(tmp_path, "crnn_large_final_tune", now)
    assert a.name == "crnn_large_final_tune_20251228_063127"
    assert b.name == "crnn_large_final_tune_20251228_063127_2"


def test_unknown_run_is_one_clear_line(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws.store().close()
    assert nkd(ws, "show", "nope") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run or experiment with runs named 'nope'" in err


def test_nkd_lines(tmp_path: Path) -> None:
    def parse_line(line: str):
        return parse_record(line, tmp_path, (tmp_path,))

    assert parse_line("loss 0.3\n") is None
    assert parse_line('@nkd {"epoch": 3, "train_loss": 0.41}')["type"] == "epoch"
    assert parse_line('@nkd {"checkpoint": "a.pth", "epoch": 3}') == {
        "type": "checkpoint", "path": str(tmp_path / "a.pth"), "epoch": 3, "role": "last",
        "value": None}
    assert parse_line('@nkd {"name": "sdr", "value": 3.9, "stem": "vocals"}')["type"] == "metric"
    with pytest.raises(RecordError):
        parse_line("@nkd [1, 2]")
    with pytest.raises(RecordError):
        parse_line('@nkd {"loss": 1}')


def test_control_at_batch_boundaries(tmp_path: Path) -> None:
    """The in-process side used by built-in recipes: real signals, real request file."""
    states: list[str] = []
    control = Control(tmp_path, on_change=states.append)
    old = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT,
                                            signal.SIGHUP)}
    try:
        control.install()
        control.boundary()  # nothing asked: returns at once
        request(tmp_path, "pause")
        os.kill(os.getpid(), signal.SIGUSR1)
        control.look()
        assert control.paused

        def resume_soon() -> None:
            time.sleep(0.3)
            request(tmp_path, "resume")
            os.kill(os.getpid(), signal.SIGUSR1)

        import threading

        threading.Thread(target=resume_soon).start()
        control.boundary()  # blocks until resumed
        assert states == ["paused", "running"]
        request(tmp_path, "suspend")
        os.kill(os.getpid(), signal.SIGUSR1)
        with pytest.raises(StopRun) as info:
            control.boundary()
        assert info.value.action == "suspend"
        control.close()
        fresh = Control(tmp_path)
        fresh.install()
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(StopRun) as info:
            fresh.boundary()
        assert info.value.action == "stop"
        fresh.close()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def test_a_signal_landing_on_another_thread_is_acted_on_by_the_main_loop(tmp_path: Path) -> None:
    """The kernel may deliver a worker's SIGUSR1 to any of its threads; the main loop acts on it
    at its next look whether or not the interpreter has run the Python-level handler yet."""
    import threading

    from core.runs.signals import SignalPipe

    old = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    pipe = SignalPipe((signal.SIGUSR1, signal.SIGUSR2))
    try:
        assert pipe.take() == []  # nothing yet: no wait
        go = threading.Event()
        done = threading.Event()

        def other() -> None:  # a thread of the worker's own, busy in Python when it lands
            go.wait()
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
            done.set()

        threading.Thread(target=other).start()
        go.set()
        assert done.wait(5)
        assert pipe.take(1.0) == [signal.SIGUSR1, signal.SIGUSR2]
        assert pipe.take() == []  # each arrival is read once
    finally:
        pipe.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)


def test_mark_lost_gives_a_starting_run_time_and_never_loses_a_queued_one(
    ws: Workspace,
) -> None:
    store = ws.store()
    now = time.time()
    store.apply("q1", {"type": "run", "experiment": "tick", "status": "starting", "t": now})
    store.apply("q2", {"type": "run", "experiment": "tick", "status": "starting",
                       "t": now - 3600})
    store.apply("q3", {"type": "run", "experiment": "tick", "t": now - 3600})  # in the queue
    assert reconcile(store, Paths.at(ws.registry)) == ["q2"]
    rows = {r["id"]: r for r in store.list_runs()}
    assert rows["q1"]["status"] == "starting" and rows["q2"]["status"] == "lost"
    assert rows["q3"]["status"] == "queued"


def test_four_real_workers_a_reader_and_reindex(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_store import _rows

    store = ws.store()
    registry = load_registry(ws.registry)
    ids = [launch(registry, "tick", ["epochs=120", "delay=0.0"], store=store).run_id
           for _ in range(4)]
    assert len(set(ids)) == 4  # same second, no collision
    reads = 0
    while any(store.get_run(i)["status"] not in FINAL for i in ids):
        for row in store.list_runs():  # a reader polling like the TUI does
            store.epochs(row["id"])
        reads += 1
        time.sleep(0.01)
    assert reads > 0
    for run_id in ids:
        row = store.get_run(run_id)
        assert row["status"] == "finished", row
        assert [e["epoch"] for e in store.epochs(run_id)] == list(range(1, 121))
        log = (ws.root / "runs" / run_id / "output.log").read_text()
        assert "locked" not in log and "store write failed" not in log
    before = _rows(store)
    capsys.readouterr()
    assert nkd(ws, "reindex") == 0
    assert "rebuilt from 4 run folders" in capsys.readouterr().out
    assert _rows(store) == before


def test_ctrl_c_stops_a_foreground_run(ws: Workspace) -> None:
    launcher, store = _foreground_run(ws, epochs=2)
    launcher.send_signal(signal.SIGINT)
    out, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 130, out  # interrupted, per the exit-code scheme
    assert "stopping the run" in out and ": stopped" in out
    assert store.get_run(store.list_runs()[0]["id"])["status"] == "stopped"


def test_chatty_script_still_pauses(ws: Workspace) -> None:
    """Control requests are handled between bounded batches of output, never starved by it."""
    run_id, store = _start(ws, "tick", "epochs=1000000", "delay=0.0005")
    _wait(lambda: _epochs(store, run_id) >= 50, what="a stream of epochs")
    assert nkd(ws, "pause", run_id) == 0
    assert wait_for(store, run_id, ["paused"], 10) == "paused"
    assert nkd(ws, "stop", run_id) == 0
    assert wait_for(store, run_id, ["stopped"], 30) == "stopped"


@pytest.mark.parametrize("name,status", [("tick", "finished"), ("broken", "failed")])
def test_on_finish_is_told_how_the_run_ended(ws: Workspace, name: str, status: str) -> None:
    hook = ws.root / "hook.py"
    hook.write_text("import sys, pathlib\n"
                    "pathlib.Path(sys.argv[1], 'ended.txt').write_text(' '.join(sys.argv[2:]))\n"
                    "print('hook ran')\n")
    ws.registry.write_text(ws.registry.read_text().replace(
        '[experiments.slow]',
        f'on_finish = ["python", "{hook}", "{{run_dir}}", "{{run_id}}", "{{status}}", '
        f'"{{experiment}}"]\n\n[experiments.slow]'))
    nkd(ws, "run", name)
    store = ws.store()
    run = store.latest_run(name)
    run_dir = ws.root / "runs" / run["id"]
    # the hook writes ended.txt before it prints; wait for the print to reach output.log too
    _wait(lambda: (run_dir / "ended.txt").is_file()
          and "hook ran" in (run_dir / "output.log").read_text(), 10, "the hook")
    assert (run_dir / "ended.txt").read_text() == f"{run['id']} {status} {name}"


def test_a_command_called_as_a_function_closes_the_stores_it_opened(ws: Workspace) -> None:
    """`main` as a function (a test, a script) leaves no connection to the workspace's database
    for the garbage collector to close at some later moment (which removes the database's
    side files under whoever is copying the folder then)."""
    import gc
    import sqlite3

    def open_here() -> int:
        count = 0
        for obj in gc.get_objects():
            if type(obj) is sqlite3.Connection:  # not isinstance: it would wake lazy modules
                try:
                    files = [row[2] for row in obj.execute("PRAGMA database_list")]
                except sqlite3.ProgrammingError:  # closed
                    continue
                count += str(ws.db) in files
        return count

    gc.collect()
    assert nkd(ws, "run", "tick", "--set", "epochs=1") == 0
    assert nkd(ws, "ps") == 0
    assert open_here() == 0
