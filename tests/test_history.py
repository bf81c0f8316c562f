"""`nkd import`: the history made before nkd (seed 002's checkpoints) as imported runs whose
lineage reads as the researcher wrote it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import Workspace, nkd

ROOT = Path(__file__).resolve().parent.parent


def test_seed_002_history_reads_in_lineage(ws: Workspace, capsys: pytest.CaptureFixture[str]):
    manifest = ws.root / "history_002.toml"
    shutil.copy(ROOT / "examples" / "history_002.toml", manifest)
    (ws.root / "checkpoints").mkdir()
    (ws.root / "checkpoints" / "crnn_long_20251225_041902_best.pth").write_bytes(b"weights")
    assert nkd(ws, "import", str(manifest)) == 0
    out = capsys.readouterr().out
    assert "crnn_long_20251225_041902: imported\n" in out  # this file exists: hashed
    assert "crnn_large_merged_20251228_120000: imported (file not found" in out
    assert nkd(ws, "lineage", "crnn_large_merged_0_8_0_2") == 0
    tree = capsys.readouterr().out.splitlines()
    assert tree[0] == "crnn_long_20251225_041902  [crnn_long, finished]  SDR 3.200 dB"
    text = "\n".join(tree)
    for line in ("└─ pretrained → crnn_large_finetune_20251226_231234",
                 "└─ pretrained → crnn_large_finetune_ver1_20251227_171118",
                 "├─ pretrained → crnn_large_final_tune_20251228_063127",
                 "blend 0.8 → crnn_large_merged_0_8_0_2_20251229_100000",
                 "blend 0.2 → crnn_large_merged_0_8_0_2_20251229_100000",
                 "pretrained → crnn_large_final_fix_20251228_233017",
                 "SDR 3.933 dB", "SDR 3.963 dB", "SDR 2.828 dB"):
        assert line in text, line
    store = ws.store()
    ckpt = store.checkpoints("crnn_long_20251225_041902")[0]
    assert ckpt["sha256"] and ckpt["role"] == "best"
    assert store.get_run("crnn_large_final_tune_20251228_063127")["params"]["lr"] == 0.0001
    assert nkd(ws, "import", str(manifest)) == 0  # again: nothing twice
    assert capsys.readouterr().out.count("already imported") == 8
    assert nkd(ws, "reindex") == 0
    assert len(ws.store().list_runs()) == 8  # the run folders are the record, as for any run


def test_a_csv_manifest_and_a_folder_scan(ws: Workspace, capsys: pytest.CaptureFixture[str]):
    (ws.root / "ck").mkdir()
    for name in ("crnn_a_20250101_010101_best.pth", "crnn_b_20250102_020202_best.pth",
                 "notes.txt"):
        (ws.root / "ck" / name).write_bytes(b"x")
    assert nkd(ws, "import", "--scan", str(ws.root / "ck")) == 0
    assert capsys.readouterr().out.count("imported") == 2
    csv = ws.root / "more.csv"
    csv.write_text("file,parents,settings,sdr_db\n"
                   "ck/crnn_c_20250103_030303_best.pth,crnn_a_20250101_010101_best.pth*0.7;"
                   "crnn_b_20250102_020202_best.pth*0.3,lr=0.001,4.2\n")
    assert nkd(ws, "import", str(csv)) == 0
    store = ws.store()
    run = store.get_run("crnn_c_20250103_030303")
    assert run["sdr"] == 4.2 and run["params"] == {"lr": 0.001}
    relations = sorted((r["parent"].split("/")[0], r["relation"], r["weight"])
                       for r in store.lineage())
    assert relations == [("crnn_a_20250101_010101", "blend", 0.7),
                         ("crnn_b_20250102_020202", "blend", 0.3)]


@pytest.mark.parametrize("text,words", [
    ("[[checkpoint]]\nexperiment = 'x'", ["checkpoint 1: needs 'file'"]),
    ("[[checkpoint]]\nfile = 'a_20250101_000000_best.pth'\nparents = ['nope.pth']",
     ["parent 'nope.pth' is neither in the manifest nor a recorded checkpoint"]),
    ("[[checkpoint]]\nfile = 'a.pth'\nrelation = 'cousin'", ["'relation' must be one of"]),
    ("[[checkpoint]]\nfile = 'a.pth'\nstamp = 'yesterday'", ["'stamp' 'yesterday' is not"]),
    ("[[checkpoint]]\nfile = 'a.pth'\nexperiment = '../x'", ["experiment '../x'"]),
    ("not = [toml", ["TOML syntax error"]),
    ("title = 'no entries'", ["no [[checkpoint]] entries"]),
])
def test_bad_manifests_are_one_line(ws: Workspace, capsys: pytest.CaptureFixture[str],
                                    text: str, words: list[str]) -> None:
    manifest = ws.root / "bad.toml"
    manifest.write_text(text)
    capsys.readouterr()
    assert nkd(ws, "import", str(manifest)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err
    assert not (ws.root / "runs").exists() or not any((ws.root / "runs").iterdir())
