"""The worker `nkd run` starts before it imports the rest (nkd_tui.cli.early,
core.backends.prestart): the guess of a run that starts now, the prestarted worker being the
run's, what it holds, the word to go, and what a worker that let go of its run may end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Workspace, nkd, wait_until

from core.registry.workspace import Workspace as Paths
from core.store import Store


def _epochs(store: Store, run_id: str) -> int:
    return len(store.epochs(run_id))


@pytest.mark.parametrize(("argv", "guessed"), [
    (["run", "tick"], "tick"),
    (["--registry", "r.toml", "run", "tick", "--set", "epochs=2", "--detach"], "tick"),
    (["-r", "r.toml", "run", "tick"], "tick"),
    (["run", "tick", "--queue"], None),
    (["run", "tick", "--after=x"], None),
    (["run", "tick", "--on", "slurm"], None),
    (["run", "tick", "--trials", "3"], None),
    (["run", "--set", "a=1", "tick"], None),
    (["ps"], None),
    (["run"], None),
    (["-r", "run", "run", "tick"], "tick"),
])
def test_the_nkd_command_guesses_a_run_that_starts_now(argv: list[str], guessed: str | None
                                                        ) -> None:
    from nkd_tui.cli.early import guess_run

    got = guess_run(argv)
    assert (got[1] if got else None) == guessed
    if got and "r.toml" in argv:
        assert got[0] == Path("r.toml")


def _nkd_command(ws: Workspace, *args: str) -> subprocess.CompletedProcess:
    """The `nkd` command as typed (nkd_tui.cli.console: the prestart, then main)."""
    return subprocess.run([sys.executable, "-m", "nkd_tui.cli", "--registry", str(ws.registry),
                           *args], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)


def test_the_worker_prestarted_by_nkd_run_is_the_runs_and_a_refusal_leaves_nothing(
    ws: Workspace,
) -> None:
    runs = Paths.at(ws.registry).runs_dir
    folders = lambda: sorted(p.name for p in runs.iterdir() if not p.name.startswith("."))  # noqa: E731
    refused = _nkd_command(ws, "run", "nosuch")  # a workspace's first: not prestarted
    assert refused.returncode == 2 and not runs.exists(), refused.stderr
    runs.mkdir()  # as after any first run
    done = _nkd_command(ws, "run", "tick", "--set", "epochs=2")
    assert done.returncode == 0, done.stdout + done.stderr
    store = ws.store()
    row = store.list_runs()[0]
    assert row["status"] == "finished" and _epochs(store, row["id"]) == 2
    events = [json.loads(line) for line in (runs / row["id"] / "events.jsonl").open()]
    kinds = [e.get("status") or e["type"] for e in events]
    assert kinds[:3] == ["starting", "worker", "running"], kinds  # recorded, then told to go
    assert events[1]["pid"] == events[2]["pid"]  # one worker: the one the launcher recorded
    assert f"started (pid {events[1]['pid']})" in done.stdout
    assert folders() == [row["id"]]
    # refusals, each after a worker was prestarted: no folder, no process left behind
    for args in (["run", "nosuch"], ["run", "tick", "--set", "nosuch_key=1"]):
        refused = _nkd_command(ws, *args)
        assert refused.returncode == 2, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert folders() == [row["id"]]
    # a run that goes to the queue: its own folder, the prestarted one taken back
    queued = _nkd_command(ws, "run", "tick", "--set", "epochs=1", "--priority", "1", "-q")
    assert queued.returncode == 0, queued.stderr
    assert len(folders()) == 2


def test_a_prestarted_worker_holds_no_descriptor_of_its_launcher(tmp_path: Path) -> None:
    """A descriptor the command inherited (a pipe its caller reads to the end) is not kept
    open by the detached worker, which would hold the caller's read open for the whole run;
    its log, its session and its pipe are as start_worker gives."""
    from core.backends.prestart import Prestarted

    read, write = os.pipe()
    os.set_inheritable(write, True)
    early = Prestarted(tmp_path / "runs", "tick")
    try:
        ours = os.readlink(f"/proc/self/fd/{write}")
        theirs = set()
        for fd in os.listdir(f"/proc/{early.pid}/fd"):
            try:
                theirs.add(os.readlink(f"/proc/{early.pid}/fd/{fd}"))
            except FileNotFoundError:  # one its interpreter closed since (it is starting)
                continue
        assert ours not in theirs
        assert os.readlink(f"/proc/{early.pid}/fd/1") == str(early.run_dir / "output.log")
        assert os.readlink(f"/proc/{early.pid}/fd/0") == os.devnull
        assert os.getsid(early.pid) == early.pid  # its own session: it outlives the terminal
    finally:
        early.cancel()
        os.close(read)
        os.close(write)
    assert not early.run_dir.exists()


def test_a_prestarted_worker_takes_its_gpus_from_the_word_to_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.backends.prestart import told_to_go

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    for word, expected, visible in ((b'{"gpus": "2,3"}\n', True, "2,3"),
                                    (b'{"gpus": null}\n', True, ""), (b"", False, "")):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
        read, write = os.pipe()
        os.write(write, word)
        os.close(write)
        assert told_to_go(read) is expected  # the pipe closed untold: the launcher started nothing
        assert os.environ["CUDA_VISIBLE_DEVICES"] == visible


def test_a_worker_that_let_go_of_its_run_ends_no_process_started_after(tmp_path: Path) -> None:
    """A promoted or restarted run's next worker, started the moment the last one let go,
    carries the same mark: the last one's sweep for leftovers must not end it."""
    from core.backends.liveness import ticks_now
    from core.backends.procs import python_env, run_processes

    run_dir = tmp_path / "runs" / "r_1"
    run_dir.mkdir(parents=True)
    before = ticks_now()
    time.sleep(0.05)  # a clock tick or more
    nxt = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                           env=python_env(run_dir))
    try:
        wait_until(lambda: any(p.pid == nxt.pid for p in run_processes(run_dir)),
                   what="the marked process")
        assert before is not None
        assert all(p.pid != nxt.pid for p in run_processes(run_dir, started_before=before))
        after = ticks_now()
        time.sleep(0.05)
        assert any(p.pid == nxt.pid
                   for p in run_processes(run_dir, started_before=(after or 0) + 1))
    finally:
        nxt.kill()
        nxt.wait()


def test_nkd_run_releases_the_worker_it_prestarted(ws: Workspace, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    from core.backends.prestart import Prestarted

    released: list[int] = []
    release = Prestarted.release

    def counted(self: Prestarted, *args: object) -> int:
        released.append(pid := release(self, *args))
        return pid

    monkeypatch.setattr(Prestarted, "release", counted)
    Paths.at(ws.registry).runs_dir.mkdir()
    assert nkd(ws, "run", "tick", "--set", "epochs=1") == 0
    store = ws.store()
    row = store.get_run(store.list_runs()[0]["id"])
    assert row["status"] == "finished" and released == [row["pid"]]


def test_the_guess_knows_nkd_runs_options_as_the_parser_declares_them() -> None:
    """nkd_tui.cli.early reads the command line before the parser exists: its option names
    must be the parser's (a renamed option would make the guess silently wrong)."""
    import argparse

    from nkd_tui.cli.early import NOT_NOW
    from nkd_tui.cli.entry import build_parser

    parser = build_parser("run")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = {s: a.dest for a in sub.choices["run"]._actions for s in a.option_strings}
    assert {s: options.get(s) for s in NOT_NOW} == NOT_NOW
    assert {options["--registry"], options["-r"]} == {"registry"}
