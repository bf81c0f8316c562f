"""Store: round trip, migration, best values on the run row, reindex, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sqlite3
from pathlib import Path

import pytest

from core.store import SCHEMA_VERSION, Store
from core.store.reporter import Reporter


def _fill(store: Store, run_dir: Path, run_id: str = "r1") -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    rep = Reporter(run_id, run_dir, store)
    rep.event({"type": "run", "experiment": "crnn_long", "recipe": "separation.train",
               "params": {"lr": 1e-4}, "epochs_total": 3, "host": "box", "seed": 42})
    rep.status("running", pid=123, pid_start=1.5, device="cpu")
    for epoch, (tr, va) in enumerate([(1.0, 0.9), (0.8, 0.7), (0.6, 0.75)], start=1):
        rep.epoch(epoch, train_loss=tr, val_loss=va, lr=1e-4, sdr_hint=epoch)
    rep.metric("sdr", 3.2, stem="mean", split="val", definition="bsseval_v4_images")
    rep.metric("sdr", 2.1, stem="vocals", split="val", definition="bsseval_v4_images")
    rep.metric("sdr", 3.5, stem="mean", split="val", track="track01")  # per-track, not the row
    rep.metric("accuracy", 0.5, split="val")
    rep.metric("accuracy", 0.8, split="val")
    rep.checkpoint(str(run_dir / "best.pth"), "best", epoch=2, value=0.7, sha256="ab",
                   parents=[{"checkpoint": "r0/best.pth", "relation": "pretrained"}])
    rep.status("finished", exit_code=0)
    rep.close()


def test_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "nkd.db")
    _fill(store, tmp_path / "runs" / "r1")
    row = store.get_run("r1")
    assert row is not None
    assert (row["experiment"], row["status"], row["exit_code"]) == ("crnn_long", "finished", 0)
    assert row["params"] == {"lr": 1e-4}
    assert (row["epoch"], row["best_epoch"], row["best_val_loss"], row["best_train_loss"]) == (
        3, 2, 0.7, 0.8)
    assert row["sdr"] == 3.2  # mean over stems; the per-track 3.5 is not the run's value
    assert row["accuracy"] == 0.8  # best kept
    assert row["started_at"] and row["ended_at"] and row["device"] == "cpu"
    epochs = store.epochs("r1")
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert epochs[0]["extra"] == '{"sdr_hint": 1}'
    metrics = store.metrics("r1")
    assert {(m["name"], m["stem"], m["value"]) for m in metrics} >= {
        ("sdr", "mean", 3.2), ("sdr", "vocals", 2.1)}
    assert metrics[0]["definition"] == "bsseval_v4_images"
    ckpts = store.checkpoints("r1")
    assert ckpts[0]["role"] == "best" and ckpts[0]["epoch"] == 2
    assert store.lineage() == [{"child": ckpts[0]["id"], "parent": "r0/best.pth",
                                "relation": "pretrained", "weight": None}]
    listed = store.list_runs()
    assert listed[0]["id"] == "r1" and listed[0]["best_val_loss"] == 0.7
    store.close()
    # any SQLite tool can read it
    conn = sqlite3.connect(tmp_path / "nkd.db")
    assert conn.execute("select count(*) from epochs").fetchone()[0] == 3
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_migration_from_v1_keeps_rows(tmp_path: Path) -> None:
    old = Store(tmp_path / "nkd.db", migrate_to=1)
    assert old.version == 1
    # rows as a v1 nkd wrote them (today's handlers write today's columns)
    old.conn.execute("INSERT INTO runs (id, experiment, status, created_at) "
                     "VALUES ('r1', 'mark1', 'finished', 1.0)")
    old.conn.execute("INSERT INTO epochs (run, epoch, train_loss, at) VALUES ('r1', 1, 2.0, 2.0)")
    cols = {c.name for c in old.db["metrics"].columns}
    assert "definition" not in cols
    old.close()

    new = Store(tmp_path / "nkd.db")
    assert new.version == SCHEMA_VERSION == 11
    assert {c.name for c in new.db["metrics"].columns} >= {"definition"}
    assert {c.name for c in new.db["runs"].columns} >= {"device"}
    assert new.get_run("r1")["experiment"] == "mark1"
    assert new.epochs("r1")[0]["train_loss"] == 2.0
    versions = [r[0] for r in new.conn.execute("select version from schema_version order by 1")]
    assert versions == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    new.close()
    assert Store(tmp_path / "nkd.db").version == 11  # reopening migrates nothing twice


def _rows(store: Store) -> dict[str, list[tuple]]:
    out = {}
    for table, order in (("runs", "id"), ("epochs", "run, epoch"), ("metrics", "run, at, name"),
                         ("checkpoints", "id"), ("lineage", "child, parent")):
        cur = store.conn.execute(f"select * from {table} order by {order}")
        names = [d[0] for d in cur.description]
        # heartbeats are not events; a metric's id is a surrogate key
        skip = {"heartbeat_at"} | ({"id"} if table == "metrics" else set())
        keep = [i for i, n in enumerate(names) if n not in skip]
        out[table] = [tuple(r[i] for i in keep) for r in cur.fetchall()]
    return out


def test_reindex_reproduces_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "nkd.db")
    _fill(store, tmp_path / "runs" / "r1", "r1")
    _fill(store, tmp_path / "runs" / "r2", "r2")
    # a torn last line, as left by a worker killed mid-write, is skipped
    with open(tmp_path / "runs" / "r2" / "events.jsonl", "a") as fh:
        fh.write('{"type": "epoch", "epo')
    before = _rows(store)
    store.conn.execute("delete from epochs")
    store.conn.execute("delete from runs")
    report = store.reindex(tmp_path / "runs")
    assert report.runs == 2 and report.skipped_lines == 1 and list(report.skipped) == ["r2"]
    assert _rows(store) == before

    # and a brand-new database file rebuilt from the folders has the same rows
    fresh = Store(tmp_path / "other.db")
    fresh.reindex(tmp_path / "runs")
    assert _rows(fresh) == before


def _writer(db: str, run_dir: str, run_id: str, n: int, errors: mp.Queue) -> None:
    try:
        store = Store(db)
        rep = Reporter(run_id, Path(run_dir), store)
        rep.event({"type": "run", "experiment": "tick"})
        for epoch in range(1, n + 1):
            rep.epoch(epoch, train_loss=1.0 / epoch, val_loss=1.0 / epoch)
            rep.metric("accuracy", epoch / n, split="val", epoch=epoch)
            if epoch % 25 == 0:
                store.heartbeat(run_id)
        rep.status("finished")
        rep.close()
    except Exception as exc:  # pragma: no cover - reported through the queue
        errors.put(f"{run_id}: {exc!r}")


def _reader(db: str, stop: mp.Event, errors: mp.Queue) -> None:
    try:
        store = Store(db)
        while not stop.is_set():
            for row in store.list_runs():
                store.epochs(row["id"])
    except Exception as exc:  # pragma: no cover
        errors.put(f"reader: {exc!r}")


def test_four_writers_and_a_reader(tmp_path: Path) -> None:
    db = str(tmp_path / "nkd.db")
    Store(db).close()
    ctx = mp.get_context("fork")
    errors: mp.Queue = ctx.Queue()
    stop = ctx.Event()
    n = 150
    reader = ctx.Process(target=_reader, args=(db, stop, errors))
    reader.start()
    writers = []
    for i in range(4):
        run_dir = tmp_path / "runs" / f"w{i}"
        run_dir.mkdir(parents=True)
        writers.append(ctx.Process(target=_writer, args=(db, str(run_dir), f"w{i}", n, errors)))
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    stop.set()
    reader.join(30)
    assert all(w.exitcode == 0 for w in writers)
    errs = []
    while not errors.empty():
        errs.append(errors.get())
    assert errs == [], errs
    store = Store(db)
    for i in range(4):
        assert len(store.epochs(f"w{i}")) == n
        assert len(store.metrics(f"w{i}")) == n
        assert store.get_run(f"w{i}")["status"] == "finished"


def test_a_replayed_metric_is_one_row(tmp_path: Path) -> None:
    """kill -9 during a final evaluation, then restart: the evaluation reports its metrics again;
    a metric key (name, stem, track, split, epoch, definition) holds one row, the latest."""
    store = Store(tmp_path / "nkd.db")
    store.apply("r1", {"type": "run", "experiment": "e", "t": 1.0})
    for t, value in ((2.0, 3.1), (3.0, 3.4)):
        store.apply("r1", {"type": "metric", "name": "sdr", "value": value, "stem": "vocals",
                           "split": "val", "t": t})
    store.apply("r1", {"type": "metric", "name": "sdr", "value": 2.0, "stem": "bass", "t": 4.0})
    rows = [(m["stem"], m["value"]) for m in store.metrics("r1")]
    assert sorted(rows) == [("bass", 2.0), ("vocals", 3.4)]


def test_underscore_prefixes_and_registry_after_the_command(tmp_path: Path, capsys) -> None:
    from nkd_tui.cli import main

    (tmp_path / "experiments.toml").write_text("[experiments.a]\ncommand = ['t']\n")
    store = Store(tmp_path / "nkd.db")
    for run_id, t in (("crnn_long_20260101_120000", 1.0), ("crnn_large_20260102_120000", 2.0)):
        store.apply(run_id, {"type": "run", "experiment": run_id[:-16], "t": t})
    store.close()
    reg = str(tmp_path / "experiments.toml")
    assert main(["show", "crnn_long_2026", "--registry", reg]) == 0
    assert "crnn_long_20260101_120000" in capsys.readouterr().out
    assert main(["show", "crnn_l", "-r", reg]) == 2  # both start with it
    assert "ambiguous" in capsys.readouterr().err


def test_show_puts_val_and_test_side_by_side_and_says_where_gains_came_from(
    tmp_path: Path, capsys
) -> None:
    from nkd_tui.cli import main

    (tmp_path / "experiments.toml").write_text("[experiments.a]\ncommand = ['t']\n")
    store = Store(tmp_path / "nkd.db")
    store.apply("a_1", {"type": "run", "experiment": "a", "t": 1.0})
    for split, value in (("val", 4.5), ("test", 3.25)):
        store.apply("a_1", {"type": "metric", "name": "sdr", "value": value, "stem": "mean",
                            "split": split, "gains": "val:musdb_val", "t": 2.0})
        store.apply("a_1", {"type": "metric", "name": "sdr", "value": value + 1, "stem": "vocals",
                            "track": "song", "split": split, "t": 2.0})
    row = store.get_run("a_1")
    assert (row["sdr"], row["test_sdr"]) == (4.5, 3.25)  # each split its own column
    store.close()
    assert main(["show", "a_1", "-r", str(tmp_path / "experiments.toml")]) == 0
    out = capsys.readouterr().out
    assert "val" in out and "test" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("sdr mean"))
    assert line.split()[-2:] == ["4.5", "3.25"]
    assert "gain correction of the test values fitted on val:musdb_val" in out
    assert "and 2 per-track values" in out


def test_two_registries_sharing_one_runs_folder_are_warned(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two registries whose [workspace] runs name one folder have two stores, each listing only
    its own runs: the second is warned, naming the first; a copied workspace is not."""
    from nkd_tui.cli import main

    (tmp_path / "shared_runs").mkdir()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "experiments.toml").write_text(
            '[workspace]\nruns = "../shared_runs"\n\n[experiments.x]\ncommand = ["true"]\n')
    assert main(["--registry", str(tmp_path / "a" / "experiments.toml"), "ps"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["--registry", str(tmp_path / "b" / "experiments.toml"), "ps"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nkd: warning:" in err
    assert f"is also the runs folder of the store {tmp_path / 'a' / 'nkd.db'}" in err
    assert main(["--registry", str(tmp_path / "a" / "experiments.toml"), "ps"]) == 0
    assert "warning" not in capsys.readouterr().err  # the first is the folder's own
    shutil.copytree(tmp_path, tmp_path.parent / f"{tmp_path.name}-copy")
    copy = tmp_path.parent / f"{tmp_path.name}-copy"
    assert main(["--registry", str(copy / "a" / "experiments.toml"), "ps"]) == 0
    assert "warning" not in capsys.readouterr().err  # a copy's runs folder is its own


def test_a_batch_of_events_is_recorded_in_order_in_one_write(tmp_path: Path) -> None:
    """Events made inside `Reporter.batch()` reach events.jsonl and the store together, in
    order; one the schema refuses is left out alone; a final status made inside it is
    recorded after what came before it."""
    from core.store.events import EventLog
    from core.store.reporter import Reporter

    store = Store(tmp_path / "nkd.db")
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    rep = Reporter("r1", run_dir, store)
    rep.event({"type": "run", "experiment": "x", "run_dir": str(run_dir)})
    with rep.batch():
        for e in range(1, 4):
            rep.event({"type": "epoch", "epoch": e, "train_loss": 1.0 / e})
        assert store.epochs("r1") == []  # held until the batch ends
        rep.event({"type": "epoch", "epoch": "four"})  # refused by the schema, alone
        rep.event({"type": "epoch", "epoch": 5, "train_loss": 0.2})
        rep.event({"type": "status", "status": "finished"})
    rep.close()
    assert [e["epoch"] for e in store.epochs("r1")] == [1, 2, 3, 5]
    assert store.get_run("r1")["status"] == "finished"
    kinds = [(e["type"], e.get("epoch")) for e in EventLog(run_dir / "events.jsonl")]
    assert kinds[-1] == ("status", None) and kinds[1:4] == [("epoch", 1), ("epoch", 2),
                                                            ("epoch", 3)]
    store.close()


def test_a_burst_of_epochs_keeps_the_best_epoch_the_per_epoch_rule_keeps(tmp_path: Path) -> None:
    """A burst of epochs is recorded with one UPDATE; on random bursts (every select_by, ties,
    missing values, epochs recorded again, bursts before and after a best), each row ends as
    the same rule applied epoch by epoch leaves it."""
    import random

    from core.registry.key import SELECT_BY
    from core.store import best

    store = Store(tmp_path / "nkd.db")
    conn = store.conn
    rng = random.Random(11)
    columns = "epoch, best_epoch, best_val_loss, best_train_loss, best_value"
    for trial in range(300):
        select_by = rng.choice([*SELECT_BY, None])
        one, burst = f"one{trial}", f"burst{trial}"
        start = rng.choice([None, (3, 0.5, 0.6, 0.5)])  # no best yet, or epoch 3 at 0.5
        for run_id in (one, burst):
            conn.execute("INSERT INTO runs (id, select_by, epoch, best_epoch, best_val_loss, "
                         "best_train_loss, best_value) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (run_id, select_by, 3 if start else 0, *(start or (None,) * 4)))
        first = rng.choice([1, 3, 4, 10])
        numbers = list(range(first, first + rng.randint(1, 20)))
        if rng.random() < 0.2:  # an epoch recorded again, or out of order
            numbers.insert(rng.randrange(len(numbers)), rng.choice(numbers))

        def value() -> float | None:
            return rng.choice([None, 0.25, 0.5, 0.75, round(rng.random(), 1)])

        epochs = [{"epoch": n, **{field: value() for field in best.FIELDS}} for n in numbers]
        conn.execute("BEGIN")
        conn.executemany(best.EPOCH_UPDATE, [{**e, "id": one} for e in epochs])
        best.record_epochs(conn, burst, epochs)
        conn.execute("COMMIT")
        rows = [conn.execute(f"SELECT {columns} FROM runs WHERE id = ?", (r,)).fetchone()
                for r in (one, burst)]
        assert rows[0] == rows[1], (select_by, start, epochs)
    store.close()
