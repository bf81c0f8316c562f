"""What made a run, recorded at launch into its folder (for every backend: a Slurm run at
submission): the code (git commit, branch, dirty flag, the uncommitted diff and the untracked
source files of the repository holding the recipe code or the command's working directory), a
fingerprint of each data source it reads, and the environment (Python, the installed packages).

`provenance.json` holds the summary, `code.diff` the diff (capped), `packages.txt` the package
list (its hash in the summary). Nothing here blocks or fails a run: what cannot be recorded
(no git, not a repository, an unreadable folder) is recorded as such, with one notice.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.util.files import atomic_write_json, atomic_write_text

DIFF_CAP = 1 << 20  # bytes of uncommitted diff kept in code.diff
GIT_TIMEOUT_S = 5.0
SOURCE_SUFFIXES = (".py", ".toml", ".yaml", ".yml", ".json", ".cfg", ".sh", ".txt", ".md")
NAME = "provenance.json"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                          timeout=GIT_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise OSError(done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or
                      ["git failed"])
    return done.stdout.decode("utf-8", "replace")


def code_state(folder: Path, run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The repository holding `folder`: commit, branch, dirty, untracked source files; its
    uncommitted diff written to run_dir/code.diff. ({"repository": None, "why": ...} when there
    is none.) Returns the summary and the notices."""
    if shutil.which("git") is None:
        return {"repository": None, "why": "git is not installed"}, \
            ["code: git is not installed; the code state is not recorded"]
    try:
        top = Path(_git(folder, "rev-parse", "--show-toplevel").strip())
    except (OSError, subprocess.TimeoutExpired):
        return {"repository": None, "why": f"{folder} is not in a git repository"}, []
    notices: list[str] = []
    state: dict[str, Any] = {"repository": str(top)}
    try:
        state["commit"] = _git(top, "rev-parse", "HEAD").strip()
    except (OSError, subprocess.TimeoutExpired):
        state["commit"] = None  # a repository without a commit yet
    try:
        state["branch"] = _git(top, "symbolic-ref", "--short", "-q", "HEAD").strip()
    except (OSError, subprocess.TimeoutExpired):
        state["branch"] = None  # a detached HEAD
    try:
        status = _git(top, "status", "--porcelain", "--untracked-files=all")
        lines = [line for line in status.splitlines() if line.strip()]
        state["dirty"] = any(not line.startswith("??") for line in lines)
        state["untracked"] = sorted(line[3:] for line in lines if line.startswith("??")
                                    and line[3:].endswith(SOURCE_SUFFIXES))[:200]
        diff = _git(top, "diff", "HEAD", "--no-color", "--no-ext-diff") if state["commit"] \
            else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        notices.append(f"code: git status failed in {top} ({exc}); the diff is not recorded")
        state["dirty"], diff = None, ""
    if diff:
        data = diff.encode("utf-8")
        if len(data) > DIFF_CAP:
            notices.append(f"code: the uncommitted diff is {len(data):,} bytes; its first "
                           f"{DIFF_CAP:,} are kept in code.diff")
            data = data[:DIFF_CAP]
            state["diff_cut"] = True
        state["diff_sha256"] = hashlib.sha256(data).hexdigest()
        state["diff_bytes"] = len(data)
        atomic_write_text(run_dir / "code.diff", data.decode("utf-8", "replace"))
    return state, notices


def data_fingerprint(root: Path) -> dict[str, Any]:
    """A folder's files by name, size and modification time: count, bytes, and a sha256 over
    (relative path, size, mtime in ns), sorted; any change of a file's content that moves its
    mtime, an added or a removed file changes it."""
    entries: list[tuple[str, int, int]] = []
    unreadable = 0
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda _e: None):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                unreadable += 1
                continue
            entries.append((os.path.relpath(path, root), st.st_size, st.st_mtime_ns))
    entries.sort()
    digest = hashlib.sha256()
    for rel, size, mtime in entries:
        digest.update(f"{rel}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return {"root": str(root), "files": len(entries), "bytes": sum(e[1] for e in entries),
            "fingerprint": digest.hexdigest()[:16],
            **({"unreadable": unreadable} if unreadable else {})}


@functools.cache
def installed() -> tuple[str, ...]:
    """`name==version` of every installed package, read once per process (a sweep launches
    many runs from one)."""
    from importlib import metadata

    return tuple(sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
                         if d.metadata["Name"]}, key=str.lower))


def environment(run_dir: Path) -> dict[str, Any]:
    """Python, the platform, the host, and the installed packages (packages.txt, its hash)."""
    packages = installed()
    text = "\n".join(packages) + "\n"
    atomic_write_text(run_dir / "packages.txt", text)
    versions = {p.split("==")[0].lower(): p.split("==")[1] for p in packages}
    return {"python": platform.python_version(), "platform": platform.platform(),
            "host": platform.node(), "executable": sys.executable,
            "torch": versions.get("torch"), "numpy": versions.get("numpy"),
            "packages": len(packages),
            "packages_sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}


def record(run_dir: Path, code_folder: Path, data_roots: dict[str, Path]) -> list[str]:
    """Write provenance.json (and code.diff, packages.txt) into the run folder; the notices
    to give. Never raises for what it cannot read."""
    notices: list[str] = []
    try:
        code, said = code_state(code_folder, run_dir)
        notices += said
    except Exception as exc:  # provenance never fails a run
        code = {"repository": None, "why": f"not recorded ({type(exc).__name__}: {exc})"}
        notices.append(f"code: not recorded ({exc})")
    data = {}
    for key, root in data_roots.items():
        if root.is_dir():
            data[key] = data_fingerprint(root)
        else:
            data[key] = {"root": str(root), "missing": True}
    try:
        env = environment(run_dir)
    except Exception as exc:
        env = {"python": platform.python_version(), "why": f"packages not listed ({exc})"}
        notices.append(f"environment: the package list is not recorded ({exc})")
    atomic_write_json(run_dir / NAME, {"code": code, "data": data, "environment": env})
    return notices


def read(run_dir: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads((run_dir / NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def lines(prov: dict[str, Any]) -> list[str]:
    """What `nkd show` prints of it."""
    out = []
    code = prov.get("code") or {}
    if code.get("repository"):
        commit = (code.get("commit") or "no commit")[:12]
        where = f"on {code['branch']}" if code.get("branch") else "detached HEAD"
        dirty = ""
        if code.get("dirty"):
            dirty = f", uncommitted changes ({code.get('diff_bytes', 0):,} bytes in code.diff)"
        untracked = f", {len(code['untracked'])} untracked source files" \
            if code.get("untracked") else ""
        out.append(f"code         {commit} {where} in {code['repository']}{dirty}{untracked}")
    else:
        out.append(f"code         not recorded: {code.get('why', 'unknown')}")
    for key, d in (prov.get("data") or {}).items():
        if d.get("missing"):
            out.append(f"data         {key}: {d['root']} (missing at launch)")
        else:
            out.append(f"data         {key}: {d['files']:,} files, {d['bytes']:,} bytes, "
                       f"fingerprint {d['fingerprint']} ({d['root']})")
    env = prov.get("environment") or {}
    out.append(f"environment  Python {env.get('python')}, torch {env.get('torch') or '-'}, "
               f"{env.get('packages', '?')} packages ({env.get('packages_sha256', '-')}) "
               f"on {env.get('host', '?')}")
    return out
