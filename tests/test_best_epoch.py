"""One rule for the best epoch: a run whose lowest-validation-loss epoch is not its
highest-validation-SDR epoch names the same best epoch in the loop, its best checkpoint, the
store, `nkd show` and the end-of-run line, by its own `select_by`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.runs.context import RunContext
from core.runs.control import Control
from core.store import Store
from core.store.reporter import Reporter
from core.training import checkpoint
from core.training.loop import Trainer
from nkd_tui.cli.follow import report_end

# per epoch: the validation loss is lowest at epoch 3, the validation SDR highest at epoch 2
VAL_LOSS = [0.50, 0.40, 0.20, 0.30, 0.35, 0.36]
VAL_SDR = [1.0, 3.0, 2.0, 2.5, 1.5, 1.0]


def _train(tmp_path: Path, select_by: str) -> tuple[dict, Store, Trainer]:
    store = Store(tmp_path / "nkd.db")
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    reporter = Reporter("r1", run_dir, store)
    reporter.event({"type": "run", "experiment": "toy", "recipe": "separation.train",
                    "status": "running", "params": {}, "select_by": select_by})
    ctx = RunContext("r1", {"epochs": 10, "patience": 2, "select_by": select_by, "seed": 1},
                     run_dir, tmp_path / "ckpt", tmp_path, reporter, Control(run_dir))
    model = torch.nn.Linear(2, 1)
    x = torch.randn(8, 2)

    def step(batch, train: bool):
        if train:
            return model(batch).square().mean(), len(batch), {}
        return torch.tensor(VAL_LOSS[trainer.epoch]), 1, {}

    trainer = Trainer(ctx, "toy", {"model": model}, step, lambda g: [x], lambda: [x], {},
                      torch.device("cpu"),
                      select=("sdr", lambda: VAL_SDR[trainer.epoch]))
    result = trainer.fit()
    reporter.status("finished")
    reporter.close()
    return result, store, trainer


@pytest.mark.parametrize(("select_by", "best", "value"), [("val_sdr", 2, 3.0),
                                                           ("val_loss", 3, 0.20)])
def test_the_best_epoch_agrees_everywhere(tmp_path: Path, capsys, select_by: str, best: int,
                                          value: float) -> None:
    result, store, _ = _train(tmp_path, select_by)
    # the two rules disagree on this run: each names its own epoch
    assert min(range(6), key=VAL_LOSS.__getitem__) + 1 == 3
    assert max(range(6), key=VAL_SDR.__getitem__) + 1 == 2
    assert result["best_epoch"] == best and result["select_by"] == select_by
    assert result["best_value"] == pytest.approx(value) and result["early_stopped"]
    meta = checkpoint.load(tmp_path / "ckpt" / "best_toy_model.pth")["meta"]
    assert meta["epoch"] == best and meta["select_by"] == select_by
    assert meta["value"] == pytest.approx(value)
    row = store.get_run("r1")
    assert row["best_epoch"] == best and row["select_by"] == select_by
    assert row["best_value"] == pytest.approx(value)
    assert row["best_val_loss"] == pytest.approx(VAL_LOSS[best - 1])  # the loss at that epoch
    assert f"no better {select_by} for 2 epochs" in row["early_stop"]
    best_ckpt = [c for c in store.checkpoints("r1") if c["role"] == "best"]
    assert best_ckpt[-1]["epoch"] == best
    report_end(store, "r1")
    out = capsys.readouterr().out
    assert f"best epoch {best} ({select_by} " in out and "stopped early after epoch" in out
    events = [json.loads(line) for line in (tmp_path / "runs" / "r1" / "events.jsonl").open()]
    assert any(e["type"] == "early_stop" and e["best_epoch"] == best for e in events)
    store.close()


def test_reindex_names_the_same_best_epoch(tmp_path: Path) -> None:
    _, store, _ = _train(tmp_path, "val_sdr")
    store.close()
    (tmp_path / "nkd.db").unlink()
    rebuilt = Store(tmp_path / "nkd.db")
    rebuilt.reindex(tmp_path / "runs")
    row = rebuilt.get_run("r1")
    assert row is not None and row["best_epoch"] == 2 and row["select_by"] == "val_sdr"
    rebuilt.close()


def test_a_score_the_recipe_does_not_record_is_refused_by_name(tmp_path: Path) -> None:
    """Refused before anything is recorded, by the registry (which recipes record which score
    is declared once, beside select_by); and by the loop, should one get past it."""
    from core.errors import RegistryError, RunError
    from core.registry import load_registry

    root = Path(__file__).resolve().parent.parent
    registry = load_registry(root / "experiments.toml")
    with pytest.raises(RegistryError, match="key 'select_by': val_sdr is recorded each epoch "
                                            "only by separation.train, not by 'noise.teacher'"):
        registry.resolve("mark1", ["select_by=val_sdr"])
    assert registry.resolve("mask_lstm", ["select_by=val_sdr"]).params["select_by"] == "val_sdr"

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ctx = RunContext("r1", {"select_by": "val_sdr", "epochs": 1}, run_dir, tmp_path / "ckpt",
                     tmp_path, Reporter("r1", run_dir, None), Control(run_dir))
    model = torch.nn.Linear(2, 1)
    x = torch.randn(4, 2)
    trainer = Trainer(ctx, "toy", {"model": model}, lambda b, t: (model(b).mean(), 1, {}),
                      lambda g: [x], lambda: [x], {}, torch.device("cpu"))
    with pytest.raises(RunError, match="select_by = \"val_sdr\": this recipe records no "
                                       "val_sdr"):
        trainer.fit()
