"""What made a run, recorded at launch: the code (git commit, branch, dirty flag, the diff), each
data source's fingerprint and the environment; shown by `nkd show`, compared by `nkd compare`
and `nkd diff`, checked by `nkd rerun`; never a reason for a run to fail (no git, not a
repository, a huge or binary diff, a detached HEAD, a submodule, a folder that vanishes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Workspace, nkd

from core.runs import provenance
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


MINE = """
[data.clips]
root = "clips"

[experiments.mine]
command = ["{python}", "train.py"]
cwd = "repo"
data = "clips"
"""


def _mine(ws: Workspace, extra: str = "") -> Path:
    repo = _repo(ws.root)
    (ws.root / "clips" / "a").mkdir(parents=True)
    (ws.root / "clips" / "a" / "one.wav").write_bytes(b"x" * 10)
    ws.registry.write_text(ws.registry.read_text() + MINE.format(python=sys.executable) + extra)
    return repo


def test_an_edit_shows_in_compare_and_diff_and_a_rerun_refuses_until_anyway(
        ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _mine(ws)
    assert nkd(ws, "run", "mine") == 0
    first = ws.store().latest_run("mine")["id"]
    (repo / "train.py").write_text("print('@nkd {\"epoch\": 1, \"train_loss\": 0.25}')\n")
    (ws.root / "clips" / "a" / "two.wav").write_bytes(b"y")
    assert nkd(ws, "run", "mine") == 0
    second = ws.store().latest_run("mine")["id"]
    capsys.readouterr()

    assert nkd(ws, "compare", first, second) == 0
    out = capsys.readouterr().out
    made = out[out.index("made by"):].splitlines()
    assert made[1].startswith("code (differs)") and made[2].startswith("data (differs)")
    assert "(1 file)" in made[2] and "(2 files)" in made[2]

    assert nkd(ws, "diff", first, second) == 0
    out = capsys.readouterr().out
    assert "settings: the same" in out and "code differs:" in out
    assert "-print('@nkd {\"epoch\": 1, \"train_loss\": 0.5}')" in out
    assert "+print('@nkd {\"epoch\": 1, \"train_loss\": 0.25}')" in out
    assert "data differs:" in out and "environment: the same" in out

    assert nkd(ws, "rerun", first) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"nkd: {first}: code differs (" in err
    assert "data 'data' differs (1 → 2 files)" in err and "--anyway" in err
    assert len(ws.store().list_runs("mine")) == 2  # nothing recorded

    assert nkd(ws, "rerun", second) == 0  # nothing changed since the second run
    again = ws.store().latest_run("mine")
    assert json.loads((Path(again["run_dir"]) / "provenance.json").read_text())["rerun"] == \
        {"of": second, "differs": []}
    assert nkd(ws, "rerun", first, "--anyway") == 0
    rerun = ws.store().latest_run("mine")
    prov = json.loads((Path(rerun["run_dir"]) / "provenance.json").read_text())
    assert prov["rerun"]["of"] == first and len(prov["rerun"]["differs"]) == 2
    events = (Path(rerun["run_dir"]) / "events.jsonl").read_text()
    assert f'"rerun_of": "{first}"' in events
    capsys.readouterr()
    assert nkd(ws, "show", rerun["id"]) == 0
    shown = capsys.readouterr().out
    assert f"rerun of     {first} (code differs" in shown
    assert "machine      " in shown and "no GPU" in shown  # the worker's own record


def test_a_rerun_uses_the_recorded_settings_and_the_run_its_reference_resolved_to(
        ws: Workspace) -> None:
    _mine(ws)
    assert nkd(ws, "run", "mine", "--set", "seed=7") == 0
    first = ws.store().latest_run("mine")
    assert nkd(ws, "rerun", first["id"]) == 0
    again = ws.store().latest_run("mine")
    assert again["id"] != first["id"] and again["seed"] == 7
    config = json.loads((Path(again["run_dir"]) / "config.json").read_text())
    assert config["settings"]["seed"] == 7


def test_rerun_refuses_what_it_cannot_repeat_in_one_line(
        ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    _mine(ws)
    assert nkd(ws, "run", "mine") == 0
    run = ws.store().latest_run("mine")
    (Path(run["run_dir"]) / "provenance.json").unlink()  # a run from before provenance
    capsys.readouterr()
    assert nkd(ws, "rerun", run["id"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "has no provenance record" in err
    ws.registry.write_text(ws.registry.read_text().replace("[experiments.mine]",
                                                           "[experiments.renamed]"))
    assert nkd(ws, "rerun", run["id"], "--anyway") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "its experiment 'mine' is not in" in err
    assert nkd(ws, "rerun", "nosuchrun") == 2
    assert nkd(ws, "diff", run["id"], "nosuchrun") == 2
    assert "nosuchrun" in capsys.readouterr().err


def _git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


def test_faults_give_one_notice_and_never_stop_a_record(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("x = 1\n")
    (repo / "blob.bin").write_bytes(bytes(range(256)))
    _git(tmp_path, "init", "-q", str(repo))
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    # a submodule, a detached HEAD, a binary change, a huge diff, an untracked binary source
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "s.py").write_text("s = 1\n")
    _git(tmp_path, "init", "-q", str(sub))
    _git(sub, "add", ".")
    _git(sub, "commit", "-qm", "s")
    _git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "sub")
    _git(repo, "commit", "-qm", "with a submodule")
    _git(repo, "checkout", "-q", "--detach")
    (repo / "blob.bin").write_bytes(bytes(range(255, -1, -1)))
    (repo / "odd.py").write_bytes(b"\x00\x01binary")
    (repo / "sub" / "s.py").write_text("s = 2\n")
    state, notices, diff = provenance.code_state(repo)
    assert state["branch"] is None and state["dirty"] is True and not notices
    assert state["untracked"] == ["odd.py"]
    text = diff.decode()
    assert "Binary files a/blob.bin and b/blob.bin differ" in text
    assert "+Subproject commit" in text and "-dirty" in text
    assert "diff --git a/odd.py b/odd.py\nnew file (untracked), binary or unreadable" in text
    (repo / "a.py").write_text("".join(f"x{i} = {i}\n" for i in range(120_000)))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / "one.wav").write_bytes(b"x")
    (data / "gone.wav").symlink_to(tmp_path / "nowhere.wav")  # an entry that cannot be read
    made = provenance.snapshot(repo, {"data": data, "val_data": tmp_path / "vanished"})
    notices, _ = provenance.record(run_dir, made)
    prov = provenance.read(run_dir)
    assert prov["code"]["diff_cut"] is True
    assert (run_dir / "code.diff").stat().st_size == provenance.DIFF_CAP
    said = "\n".join(notices)
    assert len(notices) == 3 and "the uncommitted diff is" in said
    assert "first 1,048,576 are kept" in said
    assert "data data: 1 entry of" in said and "data val_data:" in said
    assert prov["data"]["data"]["files"] == 1 and prov["data"]["data"]["unreadable"] == 1
    assert prov["data"]["val_data"] == {"root": str(tmp_path / "vanished"), "missing": True}


def test_the_fingerprint_cache_agrees_with_a_full_read_and_sees_a_file_added(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.runs.fingerprint as fp

    data = tmp_path / "clips"
    for d in ("a", "b/c"):
        (data / d).mkdir(parents=True)
        for i in range(3):
            (data / d / f"{i}.wav").write_bytes(b"x" * i)
    (data / "b" / "link").symlink_to(data)  # a loop: read once
    monkeypatch.setattr(fp, "RACY_S", -1.0)  # cache what was just written
    cache = tmp_path / "cache.json"
    full = fingerprint(data)
    assert fingerprint(data, cache) == full and cache.exists()
    reads = []
    real = fp._dir_entry
    monkeypatch.setattr(fp, "_dir_entry", lambda path: reads.append(path) or real(path))
    assert fingerprint(data, cache) == full and reads == []  # nothing read again
    (data / "b" / "c" / "new.wav").write_bytes(b"z")
    changed = fingerprint(data, cache)
    assert reads == [str(data / "b" / "c")]  # only the folder that changed
    assert changed == fingerprint(data) and changed["fingerprint"] != full["fingerprint"]
    cache.write_text("{not json")
    assert fingerprint(data, cache) == changed  # a broken cache is a full read


def test_the_worker_records_its_machine_and_a_new_one_on_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.runs import machine

    gpus = tmp_path / "gpus.json"
    gpus.write_text(json.dumps({"gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3",
                                          "memory_total_mib": 81559}]}))
    monkeypatch.setenv("NKD_GPUS", str(gpus))  # the documented GPU test seam
    machine.record_worker(tmp_path)
    machine.record_worker(tmp_path)  # the same machine: not recorded twice
    starts = json.loads((tmp_path / machine.NAME).read_text())["starts"]
    assert len(starts) == 1 and starts[0]["gpus"] == ["NVIDIA H100 80GB HBM3"]
    assert starts[0]["torch"] and starts[0]["python"]
    monkeypatch.delenv("NKD_GPUS")
    machine.record_worker(tmp_path)  # resumed where there is no GPU
    starts = json.loads((tmp_path / machine.NAME).read_text())["starts"]
    assert len(starts) == 2 and starts[1]["gpus"] == []
    assert provenance.machine_text(starts[0]).endswith("NVIDIA H100 80GB HBM3")


def test_the_package_list_is_kept_until_a_package_on_sys_path_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [str(site)])

    def install(name: str, version: str) -> None:
        meta = site / f"{name}-{version}.dist-info"
        meta.mkdir()
        (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        later = site.stat().st_mtime + 1  # the folder's time moves, however coarse the clock
        os.utime(site, (later, later))
        provenance.installed.cache_clear()  # a new process, as the next launch is

    install("alpha", "1.0")
    cache = tmp_path / "cache"
    assert provenance.packages_cached(cache) == ("alpha==1.0",)
    assert json.loads((cache / "packages.json").read_text())["packages"] == ["alpha==1.0"]
    provenance.installed.cache_clear()
    monkeypatch.setattr(provenance, "installed", lambda: pytest.fail("the list was read again"))
    assert provenance.packages_cached(cache) == ("alpha==1.0",)  # kept: nothing changed
    (site / "nkd.db-journal").write_text("")  # the folder's other entries come and go
    assert provenance.packages_cached(cache) == ("alpha==1.0",)  # still kept
    monkeypatch.undo()
    monkeypatch.setattr(sys, "path", [str(site)])
    install("beta", "2.0")
    assert provenance.packages_cached(cache) == ("alpha==1.0", "beta==2.0")
    provenance.installed.cache_clear()


def test_the_cheap_answers_agree_with_git_and_platform(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Launches skip starting git outside any repository and read the platform from uname:
    the same answers as git's own search and as the platform module give."""
    import platform
    import subprocess

    from core.runs import machine

    plain, repo = tmp_path / "plain" / "deep", tmp_path / "repo"
    plain.mkdir(parents=True)
    (repo / "sub").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for folder, inside in ((plain, False), (repo / "sub", True)):
        found = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
                               capture_output=True, check=False).returncode == 0
        assert found is inside
        assert provenance._outside_repositories(folder) is not inside
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))
    assert not provenance._outside_repositories(plain)  # git is asked: GIT_DIR names one
    assert machine.platform_text() == platform.platform()
    assert machine.python_version() == platform.python_version()
    assert machine.host() == platform.node()
