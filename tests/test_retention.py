"""`keep_checkpoints`: which checkpoints a training run keeps as it goes (the best, the last, the
K best epochs, every N-th). An epoch file that drops out of the K best is recorded deleted
before it goes, so the record (and `nkd reindex`) still shows it, marked gone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import run_context

from core.registry.retention import Keep, parse_keep
from core.store import Store


@pytest.mark.parametrize("value,keep", [
    (["best", "last"], Keep(1, True, 0)),
    (["best:3", "last"], Keep(3, True, 0)),
    (["best", "every:10"], Keep(1, False, 10)),
    (["best:2", "every:3"], Keep(2, False, 3)),
    (["last"], None),  # the best is what the test split and every reference read
    (["best:0"], None),
    (["every"], None),
    (["last:2", "best"], None),
    ("best", None),
    ([], None),
])
def test_the_forms_of_keep_checkpoints(value, keep) -> None:
    assert parse_keep(value) == keep


def test_the_k_best_epochs_and_every_nth_are_kept_and_a_dropped_one_is_recorded(
        tmp_path: Path) -> None:
    """best:2 and every:3 over six epochs whose values are 5 3 4 1 2 6 (lower is better)."""
    from core.training.retention import Checkpoints

    ctx = run_context(tmp_path)
    ctx.reporter.event({"type": "run", "experiment": "toy", "recipe": "noise.teacher",
                        "run_dir": str(tmp_path / "r1")})
    model = torch.nn.Linear(4, 2)
    kept = Checkpoints(ctx, "toy", {"model": model}, {"kind": "toy"}, [], Keep(2, False, 3),
                       "val_loss")
    best, best_epoch = float("inf"), 0
    for epoch, value in enumerate([5.0, 3.0, 4.0, 1.0, 2.0, 6.0], start=1):
        if value < best:
            best, best_epoch = value, epoch
        kept.epoch_end(epoch, best_epoch, value, value, value, last_due=True)
        if epoch == 4:  # the K best so far survive a suspend: they are part of the state
            state = kept.state()
            kept = Checkpoints(ctx, "toy", {"model": model}, {"kind": "toy"}, [],
                               Keep(2, False, 3), "val_loss")
            kept.load(state)
    ctx.reporter.close()
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    # 1 and 2 dropped out of the two best; 3 and 6 stay as every third; 4 and 5 are the best
    # two; no last file (the policy has no "last")
    assert names == ["best_toy_model.pth", "toy_model_epoch003.pth", "toy_model_epoch004.pth",
                     "toy_model_epoch005.pth", "toy_model_epoch006.pth"]
    store = Store(tmp_path / "nkd.db")
    (tmp_path / "run").rename(tmp_path / "r1")  # reindex reads <runs>/<run id>/events.jsonl
    store.reindex(tmp_path)
    rows = dict(store.conn.execute(
        "SELECT path, deleted_at IS NOT NULL FROM checkpoints WHERE run = 'r1'").fetchall())
    gone = sorted(Path(p).name for p, deleted in rows.items() if deleted)
    assert gone == ["toy_model_epoch001.pth", "toy_model_epoch002.pth"]
    assert len(rows) == 7  # best (one file, rewritten) and six epoch files, two marked gone
    assert {by for (by,) in store.conn.execute(
        "SELECT deleted_by FROM checkpoints WHERE deleted_at IS NOT NULL")} == {
        "keep_checkpoints best:2,every:3"}
    from core.runs.lineage import describe

    assert "(2 checkpoints deleted by keep_checkpoints best:2,every:3)" in describe(store, "r1")
    on_disk = sum(p.stat().st_size for p in (tmp_path / "ckpt").iterdir())
    assert store.conn.execute("SELECT checkpoint_bytes FROM runs WHERE id = 'r1'"
                              ).fetchone()[0] == on_disk
    store.close()


def test_a_training_run_keeps_what_its_policy_says(tmp_path: Path) -> None:
    """The loop writes through the policy: best:2 over five epochs leaves the best file and two
    epoch files, and no last file; the default keeps the best and the last, as it always did."""
    from core.training.loop import Batcher, Trainer

    def trainer(folder: Path, keep: list[str] | None) -> Trainer:
        torch.manual_seed(0)
        model = torch.nn.Linear(6, 3)
        batches = Batcher({"x": torch.randn(32, 6), "y": torch.randint(0, 3, (32,))}, 8,
                          torch.device("cpu"))

        def step(batch, train):
            loss = torch.nn.functional.cross_entropy(model(batch["x"]), batch["y"])
            return loss, batch["x"].shape[0], {}

        params = {"epochs": 5, "lr": 0.05, "seed": 1, "patience": 0}
        return Trainer(run_context(folder), "toy", {"model": model}, step, batches.batches,
                       lambda: batches.batches(None), {"kind": "toy"}, torch.device("cpu"),
                       params=params | ({"keep_checkpoints": keep} if keep else {}))

    trainer(tmp_path / "a", ["best:2"]).fit()
    names = sorted(p.name for p in (tmp_path / "a" / "ckpt").glob("*.pth"))
    assert names[0] == "best_toy_model.pth" and len(names) == 3
    assert all("_epoch00" in n for n in names[1:])
    trainer(tmp_path / "b", None).fit()
    assert sorted(p.name for p in (tmp_path / "b" / "ckpt").glob("*.pth")) == [
        "best_toy_model.pth", "toy_model.pth"]
