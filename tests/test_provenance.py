"""What made a run, recorded at launch: the code (git commit, branch, dirty flag, the diff), each
data source's fingerprint and the environment; shown by `nkd show`; never a reason for a run to
fail (no git, not a repository)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Workspace, nkd

from core.runs.fingerprint import fingerprint

GIT = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t",
       "-c", "init.defaultBranch=main"]


def _repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    (repo / "train.py").write_text("print('@nkd {\"epoch\": 1, \"train_loss\": 0.5}')\n")
    subprocess.run([*GIT, "init", "-q", str(repo)], check=True)
    subprocess.run([*GIT, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-qm", "first"], check=True)
    return repo


def _prov(ws: Workspace, experiment: str) -> tuple[dict, Path]:
    run_dir = Path(ws.store().latest_run(experiment)["run_dir"])
    return json.loads((run_dir / "provenance.json").read_text()), run_dir


def test_a_run_records_its_code_and_an_edit_shows_in_the_next_one(
        ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _repo(ws.root)
    ws.registry.write_text(ws.registry.read_text() + f'''
[experiments.mine]
command = ["{sys.executable}", "train.py"]
cwd = "repo"
''')
    assert nkd(ws, "run", "mine") == 0
    first, _ = _prov(ws, "mine")
    commit = subprocess.run([*GIT, "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    assert first["code"]["commit"] == commit and first["code"]["branch"] == "main"
    assert first["code"]["dirty"] is False and first["environment"]["python"]
    (repo / "train.py").write_text("print('@nkd {\"epoch\": 1, \"train_loss\": 0.25}')\n")
    (repo / "helper.py").write_text("x = 1\n")
    assert nkd(ws, "run", "mine") == 0
    second, run_dir = _prov(ws, "mine")
    assert second["code"]["dirty"] is True and second["code"]["untracked"] == ["helper.py"]
    assert "+print('@nkd {\"epoch\": 1, \"train_loss\": 0.25}')" in \
        (run_dir / "code.diff").read_text()
    assert (run_dir / "packages.txt").read_text().count("==") == \
        second["environment"]["packages"]
    capsys.readouterr()
    assert nkd(ws, "show", run_dir.name) == 0
    shown = capsys.readouterr().out
    assert f"code         {commit[:12]} on main in {repo}, uncommitted changes" in shown
    assert "1 untracked source files" in shown and "environment  Python" in shown


def test_outside_a_repository_and_without_git_the_run_goes_on(
        ws: Workspace, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (ws.root / "plain").mkdir()
    ws.registry.write_text(ws.registry.read_text() + f'''
[experiments.loose]
command = ["{sys.executable}", "-c", "print(1)"]
cwd = "plain"
''')
    assert nkd(ws, "run", "loose") == 0
    prov, _ = _prov(ws, "loose")
    assert prov["code"] == {"repository": None,
                            "why": f"{ws.root / 'plain'} is not in a git repository"}
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # python, no git
    capsys.readouterr()
    assert nkd(ws, "run", "loose") == 0
    assert "code: git is not installed; the code state is not recorded" in \
        capsys.readouterr().err
    prov, _ = _prov(ws, "loose")
    assert prov["code"]["why"] == "git is not installed"


def test_the_data_fingerprint_changes_with_a_file_added(tmp_path: Path) -> None:
    data = tmp_path / "clips"
    (data / "a").mkdir(parents=True)
    (data / "a" / "one.wav").write_bytes(b"x" * 10)
    before = fingerprint(data)
    assert (before["files"], before["bytes"]) == (1, 10)
    assert fingerprint(data) == before  # the same folder, the same print
    (data / "a" / "two.wav").write_bytes(b"y")
    after = fingerprint(data)
    assert after["files"] == 2 and after["fingerprint"] != before["fingerprint"]
