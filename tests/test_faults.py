"""Fault injection with real workers, real SQLite files and real signals.

kill -9 at random moments (a built-in recipe and a command experiment), the follower/reconcile
race, hostile `@nkd` lines, garbage, deleted and replaced databases under live runs, a full disk
and a read-only runs/ folder (tmpfs; skipped where this process cannot mount), process trees with
`setsid` children, and symbolic links in a run folder.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Workspace, nkd, wait_until
from conftest import add_to_registry as _add
from conftest import run_procs as _procs
from conftest import statuses as _statuses

from core.backends.liveness import identity
from core.backends.procs import run_processes
from core.registry import load_registry
from core.registry.workspace import Workspace as Paths
from core.runs.launch import launch
from core.runs.status import current_status, reconcile, wait_for
from core.store import FINAL, Store
from core.store.events import EventLog
from core.store.reporter import Reporter

ROOT = Path(__file__).resolve().parent.parent


def _wait(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    wait_until(predicate, timeout, what)


def _script(ws: Workspace, name: str, body: str) -> Path:
    path = ws.root / f"{name}.py"
    path.write_text(body)
    _add(ws, f'[experiments.{name}]\ncommand = ["{sys.executable}", "{path}"]\n')
    return path


def _events(ws: Workspace, run_id: str) -> list[dict]:
    return list(EventLog(ws.root / "runs" / run_id / "events.jsonl"))


# ── the follower / reconcile race ───────────────────────────────────────────────────────────


def test_a_row_read_before_the_end_never_makes_a_finished_run_lost(ws: Workspace) -> None:
    """The race as it happened: a follower reads the row (running), the worker records its end
    and exits, the follower then finds the process gone. 200 times, with a tight reconcile loop
    beside it as `nkd ps` or the TUI would run it: not one false `lost`."""
    store = ws.store()
    paths = Paths.at(ws.registry)
    stop = threading.Event()
    reconciled: list[str] = []

    def reconcile_loop() -> None:
        own = ws.store()
        while not stop.is_set():
            reconciled.extend(reconcile(own, paths))
        own.close()

    beside = threading.Thread(target=reconcile_loop, daemon=True)
    beside.start()
    false_lost = 0
    try:
        for n in range(200):
            run_id = f"race_20260101_000000_{n}"
            run_dir = ws.root / "runs" / run_id
            run_dir.mkdir(parents=True)
            worker = subprocess.Popen(["sleep", "0.05"])
            rep = Reporter(run_id, run_dir, store)
            rep.event({"type": "run", "experiment": "race", "status": "queued"})
            rep.status("running", **identity(worker.pid))
            stale = store.get_run(run_id)  # the follower's earlier read
            rep.status("finished", exit_code=0)  # the worker records its end ...
            rep.close()
            worker.wait()  # ... and exits
            if current_status(store, paths, stale) == "lost":
                false_lost += 1
            if "lost" in _statuses(ws, run_id) or store.get_run(run_id)["status"] != "finished":
                false_lost += 1
    finally:
        stop.set()
        beside.join()
    assert false_lost == 0 and not reconciled


def test_stop_of_a_frozen_worker_says_so_and_acts_once_it_is_continued(
        ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    store = ws.store()
    run_id = launch(load_registry(ws.registry), "slow", (), store=store).run_id
    _wait(lambda: len(store.epochs(run_id)) >= 1, what="first epoch")
    pid = store.get_run(run_id)["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        capsys.readouterr()
        assert nkd(ws, "stop", run_id) == 0
        said = capsys.readouterr().out
        assert f"stop requested; but its worker (pid {pid}) is frozen" in said
        assert f"kill -CONT {pid}" in said and f"nkd kill {run_id}" in said
    finally:
        os.kill(pid, signal.SIGCONT)
    assert wait_for(store, run_id, FINAL, 30) == "stopped"


def test_a_restarted_run_is_not_lost_while_its_new_worker_starts(ws: Workspace) -> None:
    """`starting` is recorded without the old worker's pid, so the gone old process is never
    taken for the new run (the false "lost" after a Ctrl-C stop and `nkd restart`)."""
    store = ws.store()
    paths = Paths.at(ws.registry)
    run_dir = ws.root / "runs" / "again_20260101_000000"
    run_dir.mkdir(parents=True)
    old = subprocess.Popen(["true"])
    old.wait()
    rep = Reporter(run_dir.name, run_dir, store)
    rep.event({"type": "run", "experiment": "again", "status": "queued"})
    rep.status("running", **identity(old.pid))
    rep.status("stopped", exit_code=0)
    rep.status("starting", pid=None, pid_start=None, pid_ticks=None)  # as restart does
    rep.close()
    assert current_status(store, paths, store.get_run(run_dir.name)) == "starting"
    assert reconcile(store, paths) == []


def test_fast_foreground_runs_all_end_finished(ws: Workspace) -> None:
    """Thousands of short epochs, followed by `nkd run` in the foreground: exit 0, no `lost`."""
    _add(ws, '[experiments.fast]\nextends = "tick"\nepochs = 1500\nparams = { delay = 0.0 }\n')
    for _ in range(5):
        proc = subprocess.run(
            [sys.executable, "-m", "nkd_tui.cli", "--registry", str(ws.registry), "run", "fast"],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    store = ws.store()
    for row in store.list_runs():
        assert row["status"] == "finished"
        assert "lost" not in _statuses(ws, row["id"])
        assert row["epoch"] == 1500


# ── kill -9 at random moments ───────────────────────────────────────────────────────────────

SMALL = ["--set", "hidden_size=32", "--set", "num_layers=1", "--set", "segment_seconds=1.0",
         "--set", "batch_size=4", "--set", "epochs=4", "--set", "lr=2e-3"]


@pytest.fixture(scope="module")
def separation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("sep_faults")
    shutil.copy(ROOT / "experiments.toml", root / "experiments.toml")
    reg = str(root / "experiments.toml")
    from nkd_tui.cli import main

    assert main(["--registry", reg, "data", "synth", "separation", "--tracks", "3",
                 "--seconds", "4"]) == 0
    yield root
    space = Workspace.__new__(Workspace)
    space.root, space.registry = root, root / "experiments.toml"
    space.cleanup()


def test_sigkill_of_a_recipe_worker_then_restart_equals_an_uninterrupted_run(
    separation: Path,
) -> None:
    from nkd_tui.cli import main

    reg = str(separation / "experiments.toml")
    assert main(["--registry", reg, "run", "crnn_long", *SMALL]) == 0
    store = Store(separation / "nkd.db")
    straight = store.latest_run("crnn_long")["id"]
    want = [(e["epoch"], e["train_loss"], e["val_loss"]) for e in store.epochs(straight)]
    assert [w[0] for w in want] == [1, 2, 3, 4]

    rng = random.Random(7)
    assert main(["--registry", reg, "run", "crnn_long", *SMALL, "--detach"]) == 0
    run_id = store.latest_run("crnn_long")["id"]
    _wait(lambda: len(store.epochs(run_id)) >= 1, 120, "a first epoch")
    time.sleep(rng.uniform(0.0, 1.5))  # somewhere inside a later epoch, or at its end
    row = store.get_run(run_id)
    os.killpg(row["pid"], signal.SIGKILL)
    _wait(lambda: current_status(store, Paths.at(reg), store.get_run(run_id)) == "lost", 30,
          "lost")
    committed = {e["epoch"] for e in _events_of(separation, run_id) if e["type"] == "epoch"}
    assert committed == {e["epoch"] for e in store.epochs(run_id)}  # none lost from the store
    if len(committed) < 4:
        assert main(["--registry", reg, "restart", run_id]) == 0
    got = [(e["epoch"], e["train_loss"], e["val_loss"]) for e in store.epochs(run_id)]
    assert [g[0] for g in got] == [1, 2, 3, 4]
    for (_, t1, v1), (_, t2, v2) in zip(got, want, strict=True):
        assert t1 == pytest.approx(t2, rel=1e-6) and v1 == pytest.approx(v2, rel=1e-6)
    store.close()


def _at_once(reg: str, n: int, *command: str) -> list[subprocess.CompletedProcess]:
    """`n` shells typing the same `nkd` command at the same moment: each process is started
    and waits on a shared file before it runs the command."""
    go = Path(reg).parent / "go"
    code = ("import os, sys, time\n"
            f"while not os.path.exists({str(go)!r}): time.sleep(0.002)\n"
            "from nkd_tui.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, "--registry", reg, *command],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT) for _ in range(n)]
    time.sleep(3.0)  # every interpreter started and waiting
    go.write_text("")
    done = [subprocess.CompletedProcess(p.args, p.wait(timeout=120), *p.communicate())
            for p in procs]
    go.unlink()
    return done


def _workers(root: Path, run_id: str, since: int) -> set[int]:
    """The worker processes that ran the run after its `since`-th event."""
    return {e["pid"] for e in _events_of(root, run_id)[since:]
            if e["type"] == "status" and e["status"] == "running" and e.get("pid")}


@pytest.mark.parametrize("how", ["restart", "resume"])
def test_ten_restarts_or_resumes_at_once_start_one_worker(separation: Path, how: str) -> None:
    """Ten shells restart a stopped run (or resume a suspended one) at the same moment: one
    succeeds and starts the only worker; the others are refused (exit 2, naming why), or, for
    a resume that comes when the run is already going, told it is not paused (exit 0)."""
    from nkd_tui.cli import main

    reg = str(separation / "experiments.toml")
    assert main(["--registry", reg, "run", "crnn_long", *SMALL, "--set", "epochs=3",
                 "--detach"]) == 0
    store = Store(separation / "nkd.db")
    run_id = store.latest_run("crnn_long")["id"]
    _wait(lambda: len(store.epochs(run_id)) >= 1, 120, "a first epoch")
    action, ended = ("stop", "stopped") if how == "restart" else ("suspend", "suspended")
    assert main(["--registry", reg, action, run_id]) == 0
    _wait(lambda: store.get_run(run_id)["status"] == ended, 60, ended)
    if store.get_run(run_id)["epoch"] >= 3:
        pytest.skip("the run finished before it could be stopped")
    before = len(_events_of(separation, run_id))
    command = ["restart", run_id, "--detach"] if how == "restart" else ["resume", run_id]
    done = _at_once(reg, 10, *command)
    started = [d for d in done if "restarted from" in d.stdout or "resumes from" in d.stdout]
    assert len(started) == 1 and started[0].returncode == 0, [d.stdout for d in done]
    for d in done:
        if d is started[0]:
            continue
        if d.returncode == 0:  # resuming a run that is already going: a no-op, as documented
            assert how == "resume" and "not paused" in d.stdout, d.stdout
        else:  # refused in one line naming the run: claimed first, or already starting
            assert d.returncode == 2 and d.stderr.count("\n") == 1 and run_id in d.stderr, \
                d.stderr
            assert "claimed it first" in d.stderr or "starting" in d.stderr \
                or "running" in d.stderr, d.stderr
    _wait(lambda: store.get_run(run_id)["status"] in FINAL, 120, "the end")
    assert len(_workers(separation, run_id, before)) == 1
    statuses = [e["status"] for e in _events_of(separation, run_id)[before:]
                if e["type"] == "status"]
    assert statuses.count("starting") == 1 and statuses[-1] == "finished", statuses
    store.close()


def _events_of(root: Path, run_id: str) -> list[dict]:
    return list(EventLog(root / "runs" / run_id / "events.jsonl"))


def test_sigkill_of_a_command_worker_keeps_every_epoch_and_its_script_can_be_killed(
    ws: Workspace,
) -> None:
    # a script in a long quiet stretch (a long epoch) does not notice its reader is gone
    _script(ws, "quiet", "import json, time\n"
            "for e in range(1, 4):\n"
            "    print('@nkd ' + json.dumps({'epoch': e, 'train_loss': 1 / e}), flush=True)\n"
            "time.sleep(300)\n")
    store = ws.store()
    launched = launch(load_registry(ws.registry), "quiet", (), store=store)
    run_id = launched.run_id
    _wait(lambda: len(store.epochs(run_id)) >= 3, what="epochs")
    time.sleep(random.Random(3).uniform(0.0, 0.3))
    os.kill(launched.pid, signal.SIGKILL)
    time.sleep(0.3)
    script = _procs(ws, run_id)
    assert script, "the script outlives its killed worker"
    assert current_status(store, Paths.at(ws.registry), store.get_run(run_id)) == "lost"
    on_file = {e["epoch"] for e in _events(ws, run_id) if e["type"] == "epoch"}
    assert on_file == {e["epoch"] for e in store.epochs(run_id)}
    assert nkd(ws, "kill", run_id) == 0  # a lost run's leftovers can still be killed
    _wait(lambda: not _procs(ws, run_id), 10, "the script's end")
    assert nkd(ws, "reindex") == 0
    assert {e["epoch"] for e in ws.store().epochs(run_id)} == on_file


# ── hostile @nkd lines ──────────────────────────────────────────────────────────────────────

HOSTILE = [
    '{"epoch": "abc", "train_loss": 1}',
    '{"epoch": -1}',
    '{"epoch": 1.5}',
    '{"epoch": 2, "train_loss": "low"}',
    '{"epoch": 2, "val_loss": NaN}',
    '{"epoch": 2, "train_loss": Infinity}',
    '{"name": "accuracy", "value": "high"}',
    '{"name": "accuracy"}',
    '{"name": "' + "n" * 500 + '", "value": 1}',
    '{"checkpoint": 5}',
    '{"checkpoint": "/etc/passwd"}',
    '{"checkpoint": "../../outside.pth"}',
    '{"type": "status", "status": "finished"}',
    '{"type": "run", "experiment": "forged"}',
    '{"status": "failed", "epoch": 3}',
    '{"epoch": 3, "pid": 1}',
    '[' * 1500 + ']' * 1500,
    '{"a": ' * 1500 + '1' + '}' * 1500,
    '"just a string"',
    'not json at all',
    '{"epochs_total": "many"}',
]


def test_hostile_records_are_refused_one_line_each_and_never_fatal(ws: Workspace) -> None:
    lines = "\n".join(f"print({('@nkd ' + h)!r}, flush=True)" for h in HOSTILE)
    _script(ws, "hostile", f"""
print('@nkd {{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6}}', flush=True)
{lines}
print('@nkd {{"epoch": 2, "train_loss": 0.4, "val_loss": 0.5, "note": "ok"}}', flush=True)
print('@nkd {{"name": "accuracy", "value": 0.9, "split": "val"}}', flush=True)
""")
    assert nkd(ws, "run", "hostile") == 0
    store = ws.store()
    run_id = store.latest_run("hostile")["id"]
    row = store.get_run(run_id)
    assert row["status"] == "finished" and row["experiment"] == "hostile"
    assert [e["epoch"] for e in store.epochs(run_id)] == [1, 2]
    log = (ws.root / "runs" / run_id / "output.log").read_text()
    assert log.count("nkd: refused @nkd record") == len(HOSTILE)
    assert f"{len(HOSTILE)} @nkd record(s) refused" in log
    assert _statuses(ws, run_id) == ["running", "finished"]  # nothing forged
    assert nkd(ws, "ps") == 0 and nkd(ws, "show", run_id) == 0
    assert nkd(ws, "reindex") == 0


def test_reindex_survives_any_bytes_in_any_events_file(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert nkd(ws, "run", "tick") == 0
    store = ws.store()
    good = store.latest_run("tick")["id"]
    before = store.epochs(good)
    bad = ws.root / "runs" / "tick_20200101_000000"
    bad.mkdir()
    rng = random.Random(0)
    junk = [bytes(rng.randrange(256) for _ in range(200)), b"\xff\xfe\x00garbage",
            b'{"type": "epoch", "epoch": "abc", "t": 1}', b'{"type": "metric", "name": "x", '
            b'"value": "text", "t": 1}', b"[" * 5000, b'{"type": "run", "t": 1}',
            b'{"type": "status", "status": "exploded", "t": 2}', b"\x00" * 100]
    (bad / "events.jsonl").write_bytes(b"\n".join(junk))
    capsys.readouterr()
    assert nkd(ws, "reindex") == 0
    out = capsys.readouterr().out
    assert "rebuilt from 2 run folders" in out and "bad lines skipped" in out
    assert "tick_20200101_000000/events.jsonl: skipped" in out
    assert ws.store().epochs(good) == before
    assert nkd(ws, "ps") == 0 and nkd(ws, "show", good) == 0


# ── the database: garbage, deleted, replaced, under live runs ──────────────────────────────


def _live_run_without_its_database(ws: Workspace, replace: Callable[[Path], None]) -> str:
    """A 40-epoch run a few epochs in, whose nkd.db is then removed or replaced by `replace`."""
    store = ws.store()
    run_id = launch(load_registry(ws.registry), "slow", ("epochs=40",), store=store).run_id
    _wait(lambda: len(store.epochs(run_id)) >= 3, what="epochs")
    store.close()
    replace(ws.db)
    for suffix in ("-wal", "-shm"):
        Path(f"{ws.db}{suffix}").unlink(missing_ok=True)
    return run_id


def _all_forty_epochs_recorded(ws: Workspace, run_id: str) -> None:
    fresh = ws.store()
    assert wait_for(fresh, run_id, FINAL, 60) == "finished"
    assert {e["epoch"] for e in fresh.epochs(run_id)} == set(range(1, 41))


def test_deleted_database_is_rebuilt_and_the_live_run_writes_to_the_new_one(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = _live_run_without_its_database(ws, lambda db: db.unlink())
    capsys.readouterr()
    assert nkd(ws, "ps") == 0  # rebuilt from the run folders, with one line saying so
    captured = capsys.readouterr()
    assert "was missing; rebuilt from 1 run folders" in captured.err
    assert run_id in captured.out
    _all_forty_epochs_recorded(ws, run_id)


def test_garbage_database_is_moved_aside_and_the_live_run_follows(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    def replace_with_garbage(db: Path) -> None:  # another program replaced the file
        garbage = ws.root / "garbage.tmp"
        garbage.write_bytes(b"not a database " * 1000)
        os.replace(garbage, db)

    run_id = _live_run_without_its_database(ws, replace_with_garbage)
    capsys.readouterr()
    assert nkd(ws, "ps") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nkd reindex" in err and "Traceback" not in err
    assert nkd(ws, "reindex") == 0
    out = capsys.readouterr().out
    assert "moved aside to nkd.db.broken-" in out
    assert list(ws.root.glob("nkd.db.broken-*"))  # kept, never deleted
    _all_forty_epochs_recorded(ws, run_id)
    assert ws.store().get_run(run_id)["heartbeat_at"] is not None


def test_a_page_damaged_database_is_repaired_by_reindex_while_a_run_writes(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """Damaged pages inside nkd.db ("database disk image is malformed"), the file itself in
    place and a live run writing to it: `nkd reindex` moves it aside and rebuilds, the run goes
    on into the new database, and every command works again."""
    store = ws.store()
    for n in range(60):  # enough rows for pages beyond the schema's
        old = ws.root / "runs" / f"old_20260101_{n:06d}"
        old.mkdir(parents=True)
        rep = Reporter(old.name, old, store)
        rep.event({"type": "run", "experiment": "old", "status": "queued",
                   "params": {"note": "x" * 300}})
        rep.status("finished", exit_code=0)
        rep.close()
    run_id = launch(load_registry(ws.registry), "slow", ("epochs=40",), store=store).run_id
    _wait(lambda: len(store.epochs(run_id)) >= 3, what="epochs")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    size = ws.db.stat().st_size
    page = 4096
    assert size >= 8 * page
    rng = random.Random(5)
    with open(ws.db, "r+b") as fh:  # pages 3 .. n-2 overwritten; page 1 (the schema) kept
        for number in range(2, size // page - 1):
            fh.seek(number * page)
            fh.write(bytes(rng.randrange(256) for _ in range(page)))
    capsys.readouterr()
    assert nkd(ws, "reindex") == 0
    out = capsys.readouterr().out
    assert "moved aside to nkd.db.broken-" in out and "rebuilt from 61 run folders" in out
    assert list(ws.root.glob("nkd.db.broken-*"))  # kept, never deleted
    _all_forty_epochs_recorded(ws, run_id)
    assert nkd(ws, "ps", "--all") == 0
    assert len(ws.store().list_runs()) == 61


@pytest.mark.parametrize("what", ["folder", "events"])
def test_a_run_folder_deleted_under_a_live_run_is_noticed(ws: Workspace, what: str) -> None:
    """`rm -rf runs/<id>` (or its events.jsonl removed) while the run goes on: within seconds
    the worker stops and the store says `lost`, naming why; a reindex then keeps no row that
    no folder records."""
    store = ws.store()
    launched = launch(load_registry(ws.registry), "slow", (), store=store)
    run_id = launched.run_id
    _wait(lambda: len(store.epochs(run_id)) >= 2, what="epochs")
    run_dir = ws.root / "runs" / run_id
    if what == "folder":
        shutil.rmtree(run_dir)
    else:
        (run_dir / "events.jsonl").unlink()
    started = time.monotonic()
    _wait(lambda: store.get_run(run_id)["status"] in FINAL, 30, "the end")
    assert time.monotonic() - started < 15
    row = store.get_run(run_id)
    assert row["status"] == "lost" and "deleted or replaced" in row["error"]
    assert ("run folder" if what == "folder" else "events.jsonl") in row["error"]
    _wait(lambda: not _procs(ws, run_id) and not _alive(launched.pid), 30, "the worker gone")
    if what == "folder":
        store.reindex(ws.root / "runs")
        assert store.get_run(run_id) is None
    store.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_torn_last_line_then_restart_starts_a_fresh_line(ws: Workspace) -> None:
    run_dir = ws.root / "runs" / "torn_20260101_000000"
    run_dir.mkdir(parents=True)
    store = ws.store()
    rep = Reporter(run_dir.name, run_dir, store)
    rep.event({"type": "run", "experiment": "torn", "status": "queued"})
    rep.close()
    with open(run_dir / "events.jsonl", "a") as fh:
        fh.write('{"type": "epoch", "epo')  # the writer died mid-line
    rep = Reporter(run_dir.name, run_dir, store)
    rep.status("starting")
    rep.close()
    log = EventLog(run_dir / "events.jsonl")
    kinds = [e["type"] for e in log]
    assert kinds == ["run", "status"] and len(log.skipped) == 1


# ── process trees ───────────────────────────────────────────────────────────────────────────

TREE = """
import json, subprocess, sys, time
subprocess.Popen(["setsid", "sleep", "300"])
subprocess.Popen(["sleep", "301"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 start_new_session=True)
for epoch in range(1, {epochs} + 1):
    print("@nkd " + json.dumps({{"epoch": epoch, "train_loss": 1.0 / epoch}}), flush=True)
    time.sleep({delay})
"""


@pytest.mark.parametrize("how", ["finished", "stop", "kill"])
def test_no_process_of_a_run_outlives_it(ws: Workspace, how: str) -> None:
    epochs, delay = (2, 0.05) if how == "finished" else (1000, 0.1)
    _script(ws, "tree", TREE.format(epochs=epochs, delay=delay))
    store = ws.store()
    run_id = launch(load_registry(ws.registry), "tree", (), store=store).run_id
    _wait(lambda: len(store.epochs(run_id)) >= 1, what="first epoch")
    _wait(lambda: len(_procs(ws, run_id)) >= 3, 10, "the script's children")
    if how == "stop":
        assert nkd(ws, "stop", run_id) == 0
    elif how == "kill":
        assert nkd(ws, "kill", run_id, "--grace", "0.5") == 0
    assert wait_for(store, run_id, FINAL, 30)
    _wait(lambda: not _procs(ws, run_id), 15, "no process of the run left")


def test_a_script_killed_after_the_stop_grace_is_recorded_killed(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    _script(ws, "deaf", "import json, signal, time\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('@nkd ' + json.dumps({'epoch': 1, 'train_loss': 1.0}), flush=True)\n"
            "time.sleep(300)\n")
    monkeypatch.setenv("NKD_STOP_GRACE_S", "0.5")
    store = ws.store()
    run_id = launch(load_registry(ws.registry), "deaf", (), store=store).run_id
    _wait(lambda: len(store.epochs(run_id)) >= 1, what="first epoch")
    assert nkd(ws, "stop", run_id) == 0
    assert wait_for(store, run_id, FINAL, 30) == "killed"
    assert "did not stop within the grace period" in store.get_run(run_id)["error"]


# ── symbolic links in a run folder ──────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", ["output.log", "events.jsonl"])
def test_links_in_a_run_folder_are_never_written_through(
    ws: Workspace, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert nkd(ws, "run", "tick", "--set", "epochs=2") == 0
    run_id = ws.store().latest_run("tick")["id"]
    run_dir = ws.root / "runs" / run_id
    outside = tmp_path / f"outside_{name}"
    outside.write_text("precious\n")
    (run_dir / name).unlink()
    (run_dir / name).symlink_to(outside)
    capsys.readouterr()
    # every writer of a run file opens it through the same guard: the reporter and the launcher
    from core.backends.local import start_worker
    from core.errors import RunError

    with pytest.raises(RunError, match="symbolic link"):
        if name == "events.jsonl":
            Reporter(run_id, run_dir, None)
        else:
            start_worker(run_dir, ws.store())
    assert outside.read_text() == "precious\n"
    if name == "events.jsonl":  # reindex leaves it out and says so
        assert nkd(ws, "reindex") == 0
        assert f"{run_id}: a symbolic link; not indexed" in capsys.readouterr().out


def test_a_plot_that_cannot_be_written_costs_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.training.plots import loss_curve

    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the run folder should be")
    history = {"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}
    assert loss_curve(blocked / "loss_curve_train_val.png", history, "run") is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "loss_curve_train_val.png not written" in out


def test_two_workspaces_runs_of_one_id_never_end_each_others_processes(tmp_path: Path) -> None:
    """Run ids are unique per workspace only; the mark is the run folder, so a run that ends
    in one workspace leaves the same-named run of another alone."""
    from core.backends.procs import python_env

    a = tmp_path / "a" / "runs" / "tick_20260101_120000"
    b = tmp_path / "b" / "runs" / "tick_20260101_120000"
    procs = [subprocess.Popen(["sleep", "30"], env=python_env(d)) for d in (a, b)]
    try:
        assert [p.pid for p in run_processes(a)] == [procs[0].pid]
        assert [p.pid for p in run_processes(b)] == [procs[1].pid]
    finally:
        for p in procs:
            p.kill()
            p.wait()
