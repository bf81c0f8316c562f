"""The researcher's own train.py, unedited (examples/own_train.py, registered in the shipped
experiments.toml with no nkd-specific line): epochs from its prints, checkpoints found by name,
a fine-tune through `{pretrained}` with its lineage, and the same as a queued chain."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import Workspace, nkd, wait_until

from core.store import FINAL

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    space = Workspace(tmp_path)
    shutil.copy(ROOT / "experiments.toml", space.registry)
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "own_train.py", tmp_path / "examples" / "own_train.py")
    monkeypatch.setenv("NKD_QUEUE_IDLE_S", "3")
    monkeypatch.setenv("NKD_GPUS", str(tmp_path / "gpus.json"))
    (tmp_path / "gpus.json").write_text('{"gpus": []}')
    yield space
    space.cleanup()


def test_an_unedited_script_is_charted_and_its_checkpoints_found(own: Workspace) -> None:
    assert nkd(own, "run", "own_crnn", "--set", "epochs=3") == 0
    store = own.store()
    run = store.latest_run("own_crnn")
    assert run["status"] == "finished"
    epochs = store.epochs(run["id"])
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert all(e["train_loss"] is not None and e["val_loss"] is not None for e in epochs)
    [ckpt] = store.checkpoints(run["id"])
    kept = Path(ckpt["path"])
    assert ckpt["role"] == "best" and ckpt["sha256"] and 1 <= ckpt["epoch"] <= 3
    assert kept.parent == own.root / "checkpoints" / run["id"]  # linked into the run's folder
    originals = list((own.root / "saved_models").glob("own_crnn_*_best.pth"))
    assert [p.name for p in originals] == [kept.name]  # and never moved from where it was
    assert originals[0].read_bytes() == kept.read_bytes()


def test_a_fine_tune_through_pretrained_records_its_parent(
    own: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert nkd(own, "run", "own_crnn", "--set", "epochs=2") == 0
    assert nkd(own, "run", "own_crnn_finetune", "--set", "epochs=2") == 0
    store = own.store()
    parent = store.latest_run("own_crnn")
    child = store.latest_run("own_crnn_finetune")
    [parent_ckpt] = store.checkpoints(parent["id"])
    [child_ckpt] = store.checkpoints(child["id"])
    log = (own.root / "runs" / child["id"] / "output.log").read_text()
    assert f"Loaded pretrained weights from {parent_ckpt['path']}" in log
    assert {"child": child_ckpt["id"], "parent": parent_ckpt["id"], "relation": "pretrained",
            "weight": None} in store.lineage()
    capsys.readouterr()
    assert nkd(own, "lineage", child["id"]) == 0
    tree = capsys.readouterr().out
    assert "pretrained → own_crnn_finetune_" in tree and parent["id"] in tree


def test_the_chain_queued_in_one_command_pins_the_parent(own: Workspace) -> None:
    assert nkd(own, "run", "own_crnn", "own_crnn_finetune", "--set", "epochs=2") == 0
    store = own.store()
    wait_until(lambda: len(store.list_runs()) == 2
               and all(r["status"] in FINAL for r in store.list_runs()), 90, "the chain")
    parent = store.latest_run("own_crnn")
    child = store.get_run(store.latest_run("own_crnn_finetune")["id"])
    assert child["status"] == "finished" and child["params"]["pretrained"] == f"run:{parent['id']}"


def test_a_missing_parent_is_refused_with_one_line(
    own: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert nkd(own, "run", "own_crnn_finetune", "--set", "epochs=1") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pretrained 'own_crnn' has no finished run yet" in err
    assert own.store().latest_run("own_crnn_finetune") is None  # nothing recorded


def test_a_blend_of_two_plain_checkpoints_keeps_their_layout(
    own: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    assert nkd(own, "run", "own_crnn", "--set", "epochs=1") == 0
    assert nkd(own, "run", "own_crnn", "--set", "epochs=2", "--set", "lr=0.01") == 0
    store = own.store()
    a, b = [r["id"] for r in store.list_runs()][::-1]
    assert nkd(own, "blend", f"run:{a}", f"run:{b}", "--weights", "0.8,0.2",
               "--name", "own_blend") == 0
    run = store.latest_run("own_blend")
    assert run["status"] == "finished", run["error"]
    [out] = store.checkpoints(run["id"])
    sa, sb = (torch.load(store.checkpoints(r)[0]["path"], weights_only=True) for r in (a, b))
    blended = torch.load(out["path"], weights_only=True)
    assert set(blended) == set(sa)  # a bare state dict again, with every key
    for key in sa:
        assert torch.allclose(blended[key], 0.8 * sa[key] + 0.2 * sb[key], atol=1e-6)
    relations = {(r["parent"].split("/")[0], r["relation"], r["weight"])
                 for r in store.lineage() if r["child"] == out["id"]}
    assert relations == {(a, "blend", 0.8), (b, "blend", 0.2)}
    assert "not evaluated" in (own.root / "runs" / run["id"] / "output.log").read_text()


def test_plain_layouts_and_mismatches(tmp_path: Path) -> None:
    import torch

    from core.errors import RunError
    from core.separation.blend import write_plain_blend

    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    torch.save({"epoch": 7, "model_state_dict": {"w": torch.ones(2)}}, one)
    torch.save({"epoch": 9, "model_state_dict": {"w": torch.zeros(2)}}, two)
    out = tmp_path / "out.pt"
    write_plain_blend([one, two], [0.5, 0.5], out)
    got = torch.load(out, weights_only=True)
    assert got["epoch"] == 7 and torch.equal(got["model_state_dict"]["w"], torch.full((2,), 0.5))
    torch.save({"model_state_dict": {"v": torch.ones(2)}}, two)
    with pytest.raises(RunError, match="key 'w' is in .*one.pt but not in .*two.pt"):
        write_plain_blend([one, two], [0.5, 0.5], out)
    torch.save({"w": torch.ones(3)}, two)
    with pytest.raises(RunError, match="under different keys"):
        write_plain_blend([one, two], [0.5, 0.5], out)


def test_an_evaluation_script_attaches_its_sdr_to_the_checkpoint_it_scored(
    own: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(ROOT / "examples" / "own_evaluate.py", own.root / "examples")
    assert nkd(own, "run", "own_crnn", "--set", "epochs=1") == 0
    assert nkd(own, "run", "own_crnn_eval") == 0
    store = own.store()
    trained = store.latest_run("own_crnn")
    evaluation = store.latest_run("own_crnn_eval")
    sdr = {m["stem"]: m["value"] for m in store.metrics(evaluation["id"]) if m["name"] == "sdr"}
    assert set(sdr) == {"bass", "drums", "other", "vocals", "mean"}
    assert evaluation["sdr"] == sdr["mean"]
    [parent] = store.checkpoints(trained["id"])
    assert {"child": f"{evaluation['id']}/evaluation", "parent": parent["id"],
            "relation": "evaluated", "weight": None} in store.lineage()
    capsys.readouterr()
    assert nkd(own, "lineage", trained["id"]) == 0
    assert f"evaluated → {evaluation['id']}" in capsys.readouterr().out
