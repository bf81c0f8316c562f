"""Disk: sizes from the store and `nkd gc`, which frees the checkpoints of ended runs that nothing
needs and keeps every one a lineage edge, a #keep tag or a live run needs; a deletion is recorded
before its file goes, so a kill -9 in the middle leaves `nkd reindex` with the same store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Workspace, nkd, wait_until

from core.runs.lineage import render
from core.store import Store
from core.store.reporter import Reporter

T0 = time.time() - 40 * 86400
MB = 1 << 20


def _run(ws: Workspace, run_id: str, experiment: str, status: str, files: dict[str, list],
         t: float, tags: list[str] | None = None) -> None:
    """A run as its worker records it: its checkpoints written (real files), then its end."""
    store = ws.store()
    run_dir = ws.root / "runs" / run_id
    run_dir.mkdir(parents=True)
    rep = Reporter(run_id, run_dir, store)
    rep.event({"type": "run", "experiment": experiment, "recipe": "separation.train",
               "run_dir": str(run_dir), "t": t})
    rep.event({"type": "status", "status": "running" if status != "queued" else "queued",
               "t": t + 1})
    for name, parents in files.items():
        path = ws.root / "checkpoints" / run_id / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"w" * MB)
        rep.checkpoint(str(path), name.split("_")[0], parents=parents, t=t + 2)
    (run_dir / "output.log").write_bytes(b"x" * 1000)
    if tags:
        rep.event({"type": "annotate", "tags": tags, "t": t + 3})
    if status not in ("running", "queued"):
        rep.event({"type": "status", "status": status, "folder_bytes": 1000, "t": t + 4})
    rep.close()
    store.close()


def _parent(run_id: str, relation: str, weight: float | None = None) -> dict:
    return {"checkpoint": f"{run_id}/best_model.pth", "relation": relation, "weight": weight}


def _chain(ws: Workspace) -> None:
    """sep: a root, its fine-tune, a blend of both, the blend's evaluation; beside them an
    unreferenced finished run, a stopped run, a #keep run and a queued one."""
    _run(ws, "sep_1", "sep", "finished", {"best_model.pth": [], "last_model.pth": []}, T0)
    _run(ws, "sep_2", "sep", "finished",
         {"best_model.pth": [_parent("sep_1", "pretrained")], "last_model.pth": []}, T0 + 10)
    _run(ws, "blend_1", "blend", "finished",
         {"best_model.pth": [_parent("sep_1", "blend", 0.8), _parent("sep_2", "blend", 0.2)]},
         T0 + 20)
    _run(ws, "eval_1", "eval_blend", "finished",
         {"evaluation_model.pth": [_parent("blend_1", "evaluated")]}, T0 + 30)
    _run(ws, "sep_3", "sep", "finished", {"best_model.pth": [], "last_model.pth": []}, T0 + 40)
    _run(ws, "sep_4", "sep", "stopped", {"best_model.pth": [], "last_model.pth": []}, T0 + 50)
    _run(ws, "sep_5", "sep", "finished", {"best_model.pth": []}, T0 + 60, tags=["keep"])
    # a run waiting in the queue to go on (a restart): its checkpoint is not gc's to take
    _run(ws, "sep_6", "sep", "queued", {"last_model.pth": []}, T0 + 70)


def _dump(db: Path) -> list:
    """The store's runs, checkpoints and lineage, comparable between two stores."""
    conn = sqlite3.connect(db)
    try:
        runs = conn.execute("SELECT id, status, checkpoint_bytes, folder_bytes FROM runs "
                            "ORDER BY id").fetchall()
        ckpts = conn.execute("SELECT id, bytes, deleted_at IS NOT NULL FROM checkpoints "
                             "ORDER BY id").fetchall()
        lineage = conn.execute("SELECT * FROM lineage ORDER BY 1, 2, 3").fetchall()
        return [runs, ckpts, lineage]
    finally:
        conn.close()


def _files(ws: Workspace) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for p in (ws.root / "checkpoints").rglob("*.pth")}


def test_gc_frees_what_nothing_needs_and_keeps_the_chain(
        ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    _chain(ws)
    before = _files(ws)
    capsys.readouterr()
    assert nkd(ws, "gc", "--experiment", "sep") == 0
    out = capsys.readouterr().out
    assert "would free 6.0M in 6 checkpoints" in out and "nothing deleted" in out
    assert _files(ws) == before  # a dry run deletes nothing
    assert nkd(ws, "ps", "--json", "--all") == 0
    sizes = {r["id"]: r["checkpoint_bytes"] for r in json.loads(capsys.readouterr().out)}
    assert sizes["sep_1"] == 2 * MB and sizes["sep_6"] == MB

    assert nkd(ws, "gc", "--experiment", "sep", "--yes") == 0
    assert "deleted 6 checkpoints, freed 6.0M" in capsys.readouterr().out
    gone = before - _files(ws)
    assert gone == {"sep_1/last_model.pth", "sep_2/last_model.pth", "sep_3/best_model.pth",
                    "sep_3/last_model.pth", "sep_4/best_model.pth", "sep_4/last_model.pth"}
    # kept: what the chain needs (sep_1, sep_2 best), #keep, the queued run, other experiments
    assert {"sep_1/best_model.pth", "sep_2/best_model.pth", "sep_5/best_model.pth",
            "sep_6/last_model.pth", "blend_1/best_model.pth"} <= _files(ws)
    store = ws.store()
    try:
        assert store.get_run("sep_3")["checkpoint_bytes"] is None  # nothing left
        assert store.get_run("sep_1")["checkpoint_bytes"] == MB
        lines = render(store, "blend_1")
    finally:
        store.close()
    assert any("sep_1" in line and "(1 checkpoints deleted by nkd gc)" in line
               for line in lines)
    assert nkd(ws, "show", "sep_3") == 0
    shown = capsys.readouterr().out
    assert shown.count("(deleted by nkd gc; sha256") == 2 and "files, 2 deleted)" in shown
    events = (ws.root / "runs" / "sep_3" / "events.jsonl").read_text()
    assert events.count('"type": "checkpoint_deleted"') == 2
    # the store is what the run folders say
    kept = _dump(ws.db)
    assert nkd(ws, "reindex") == 0
    assert _dump(ws.db) == kept
    capsys.readouterr()
    assert nkd(ws, "du") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["EXPERIMENT", "RUNS", "CHECKPOINTS", "FOLDERS", "CACHES",
                                          "SIZE"]
    assert "free on the disk of" in out


def test_a_kill_in_the_middle_of_gc_leaves_reindex_with_the_same_store(ws: Workspace) -> None:
    _chain(ws)
    env = {**os.environ, "NKD_GC_PAUSE_S": "5"}  # the documented test seam: slow deletions
    gc = subprocess.Popen([sys.executable, "-m", "nkd_tui.cli", "--registry", str(ws.registry),
                           "gc", "--yes"], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    def deleted_in_store() -> int:
        store = Store(ws.db)
        try:
            return store.conn.execute(
                "SELECT COUNT(*) FROM checkpoints WHERE deleted_at IS NOT NULL").fetchone()[0]
        finally:
            store.close()

    try:  # killed in gc's pause after a deletion, as a kill lands almost always
        wait_until(lambda: deleted_in_store() >= 1, 30, "gc's first deletion")
    finally:
        os.kill(gc.pid, signal.SIGKILL)
        gc.wait()
    assert 1 <= deleted_in_store() < 6
    during = _dump(ws.db)
    assert nkd(ws, "reindex") == 0
    assert _dump(ws.db) == during
    assert nkd(ws, "gc", "--yes") == 0  # finishes what the killed one started
    store = Store(ws.db)
    paths = [Path(p) for (p,) in store.conn.execute(
        "SELECT path FROM checkpoints WHERE deleted_at IS NOT NULL").fetchall()]
    store.close()
    assert paths and not any(p.exists() for p in paths)


def test_gc_refuses_bad_input_in_one_line(ws: Workspace,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _chain(ws)
    before = _files(ws)
    for args, words in ((["--older", "3x"], "--older '3x': an age is a number and a unit"),
                        (["--status", "running"], "--status running: gc deletes only ended"),
                        (["--experiment", "nope"], "--experiment 'nope': no runs of that")):
        capsys.readouterr()
        assert nkd(ws, "gc", *args, "--yes") == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and words in err and "nothing was deleted" in err
    assert _files(ws) == before
    link = ws.root / "checkpoints" / "sep_3" / "linked_model.pth"
    link.symlink_to(ws.root / "outside.pth")
    (ws.root / "outside.pth").write_bytes(b"o")
    store = ws.store()
    rep = Reporter("sep_3", ws.root / "runs" / "sep_3", store)
    rep.checkpoint(str(link), "last", t=T0 + 45)
    rep.close()
    store.close()
    assert nkd(ws, "gc", "--older", "30d", "--yes") == 0
    assert (ws.root / "outside.pth").exists() and link.is_symlink()  # never followed


def test_a_run_the_disk_cannot_hold_is_refused_and_a_full_disk_is_said(
        ws: Workspace, tmpfs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Checkpoints on a 3 MB disk: the experiment's last run kept 5 MB, so the next one is
    refused before anything is recorded; with a run going, `nkd ps` warns of the full disk."""
    ws.registry.write_text(f'[workspace]\ncheckpoints = "{tmpfs}"\n\n' + ws.registry.read_text())
    store = ws.store()
    run_dir = ws.root / "runs" / "tick_old"
    run_dir.mkdir(parents=True)
    rep = Reporter("tick_old", run_dir, store)
    rep.event({"type": "run", "experiment": "tick", "run_dir": str(run_dir), "t": T0})
    rep.checkpoint(str(tmpfs / "tick_old.pth"), "best", bytes=5 * MB, t=T0 + 1)
    rep.event({"type": "status", "status": "finished", "t": T0 + 2})
    rep.close()
    store.close()
    capsys.readouterr()
    assert nkd(ws, "run", "tick") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "its checkpoints need about" in err and str(tmpfs) in err
    assert "nothing was started" in err
    store = ws.store()
    assert [r["id"] for r in store.list_runs("tick")] == ["tick_old"]
    store.close()
    # queued instead, it is recorded and waits in the queue, saying for what
    assert nkd(ws, "run", "tick", "--queue") == 0
    capsys.readouterr()
    assert nkd(ws, "queue", "--json") == 0
    waits = json.loads(capsys.readouterr().out)
    assert len(waits) == 1 and waits[0]["waits"].startswith("waits for disk space: its "
                                                            "checkpoints need about")
    assert nkd(ws, "queue", "cancel", waits[0]["run"]) == 0
    _run(ws, "tick_queued", "tick", "queued", {}, T0 + 10)
    assert nkd(ws, "ps") == 0
    assert f"free on the disk of {tmpfs}: the next checkpoint" in capsys.readouterr().err


def test_runs_that_used_the_same_cache_entries_share_their_bytes(
        ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs that used the same prepared audio (one key) each carry half of it; a run of
    other data carries all of its own; `nkd du`, `nkd ps --json` and `nkd show` say so."""
    store = ws.store()
    for run_id, experiment, key, size in (("a_1", "a", "k1", 60 * MB), ("a_2", "a", "k1", 60 * MB),
                                          ("b_1", "b", "k2", 10 * MB)):
        run_dir = ws.root / "runs" / run_id
        run_dir.mkdir(parents=True)
        rep = Reporter(run_id, run_dir, store)
        rep.event({"type": "run", "experiment": experiment, "run_dir": str(run_dir), "t": T0})
        rep.event({"type": "status", "status": "finished", "folder_bytes": 0, "cache_bytes": size,
                   "cache_key": key, "t": T0 + 1})
        rep.close()
    store.close()
    capsys.readouterr()
    assert nkd(ws, "du") == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("a "))
    assert line.split()[1:] == ["2", "0B", "0B", "60M", "60M"]  # two halves of 60M
    assert nkd(ws, "ps", "--json") == 0
    shares = {r["id"]: r["cache_share_bytes"] for r in json.loads(capsys.readouterr().out)}
    assert shares == {"a_1": 30 * MB, "a_2": 30 * MB, "b_1": 10 * MB}
    assert nkd(ws, "show", "a_1") == 0
    assert "its share of the caches 30M (of 60M" in capsys.readouterr().out


def test_a_first_run_is_expected_to_write_its_models_size_times_the_files_it_keeps(
        ws: Workspace) -> None:
    """No run of the experiment has finished: what it will write is known from a finished run
    of another experiment with the same recipe and model shape (its best checkpoint's parts),
    times the files its keep_checkpoints keeps; a different shape tells nothing."""
    from core.backends.space import expected_bytes

    store = ws.store()
    run_dir = ws.root / "runs" / "big_1"
    run_dir.mkdir(parents=True)
    rep = Reporter("big_1", run_dir, store)
    rep.event({"type": "run", "experiment": "big", "recipe": "separation.train",
               "run_dir": str(run_dir), "params": {"model": "crnn", "hidden_size": 512},
               "t": T0})
    for part in ("encoder", "head"):  # one checkpoint of the model: its parts together
        rep.checkpoint(str(ws.root / f"best_{part}.pth"), "best", bytes=5 * MB, t=T0 + 1)
    rep.checkpoint(str(ws.root / "last.pth"), "last", bytes=5 * MB, t=T0 + 1)
    rep.event({"type": "status", "status": "finished", "t": T0 + 2})
    rep.close()
    same = {"model": "crnn", "hidden_size": 512, "epochs": 10, "keep_checkpoints": ["best:3"]}
    expected = expected_bytes(store, "big_tuned", "separation.train", same)
    assert expected is not None and expected[0] == 10 * MB * 4  # best + the 3 best epochs
    assert "model's weights are 10M" in expected[1]
    assert expected_bytes(store, "big_tuned", "separation.train",
                          {"model": "crnn", "hidden_size": 256}) is None
    assert expected_bytes(store, "big", "separation.train", same)[0] == 15 * MB  # its own runs
    store.close()


def test_a_run_that_needs_a_checkpoint_gc_deleted_says_so(ws: Workspace) -> None:
    """A fine-tune (in its worker) asking for the best checkpoint of a run whose files gc
    deleted: one line naming the file, that gc deleted it, when, and its sha256."""
    from types import SimpleNamespace

    from core.errors import RunError
    from core.runs.refs import checkpoint_path_of

    _chain(ws)
    assert nkd(ws, "gc", "--experiment", "sep", "--yes") == 0
    said = []
    ctx = SimpleNamespace(root=ws.root, db_path=ws.db,
                          config={"checkpoints_dir": str(ws.root / "checkpoints" / "new")},
                          reporter=SimpleNamespace(emit=lambda *a, **k: said.append(k)))
    with pytest.raises(RunError) as refused:
        checkpoint_path_of(ctx, {"kind": "run", "target": "sep_3"}, "pretrained", "best", "model",
                           which="last")
    line = str(refused.value)
    assert "\n" not in line and "sep_3/best_model.pth not found: `nkd gc` deleted it on" in line
    assert said and said[0]["run"] == "sep_3"
