"""The shipped demo experiment (seed 004's kind of script) runs for real through `nkd run`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.store import Store
from nkd_tui.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_ts_recon_cls_learns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(ROOT / "experiments.toml", tmp_path / "experiments.toml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    code = main(["--registry", str(tmp_path / "experiments.toml"), "run", "ts_recon_cls",
                 "--set", "epochs=6", "--set", "ce_warmup=1"])
    out = capsys.readouterr().out
    assert code == 0, out
    store = Store(tmp_path / "nkd.db")
    run = store.list_runs()[0]
    assert run["status"] == "finished"
    epochs = store.epochs(run["id"])
    assert len(epochs) == 6
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]  # it learns
    assert run["score"] == store.get_run(run["id"])["accuracy"] > 1 / 6 + 0.2  # above chance
    ckpts = {c["role"]: c for c in store.checkpoints(run["id"])}
    assert set(ckpts) == {"best", "last"}
    last = Path(ckpts["last"]["path"])
    assert last.parent == tmp_path / "checkpoints" / run["id"] and last.is_file()
    assert len(ckpts["last"]["sha256"]) == 64
    import torch  # the test may import torch; the CLI may not

    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 6
