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
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.runs import machine
from core.runs.fingerprint import cache_file, fingerprint
from core.util.checksum import sha256
from core.util.files import atomic_write_json, atomic_write_text, read_json

DIFF_CAP = 1 << 20  # bytes of uncommitted diff kept in code.diff
UNTRACKED_CAP = 1 << 16  # bytes of one untracked source file added to it
GIT_TIMEOUT_S = 5.0
# untracked files that are code or its configuration (not outputs or notes a script writes)
SOURCE_SUFFIXES = (".py", ".pyx", ".sh", ".toml", ".yaml", ".yml", ".cfg", ".ini")
NAME = "provenance.json"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                          timeout=GIT_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise OSError(done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or
                      ["git failed"])
    return done.stdout.decode("utf-8", "replace")


def _outside_repositories(folder: Path) -> bool:
    """No `.git` in the folder or any folder above it, and no GIT_DIR naming a repository:
    git's own search would find none. Said without starting git (a few ms of every launch
    from outside a repository); anywhere else, git itself decides."""
    if os.environ.get("GIT_DIR"):
        return False
    folder = Path(os.path.abspath(folder))
    return not any(os.path.lexists(d / ".git") for d in (folder, *folder.parents))


def code_state(folder: Path) -> tuple[dict[str, Any], list[str], bytes]:
    """The repository holding `folder`: commit, branch, dirty, untracked source files, and
    its uncommitted diff (capped; untracked source files included as new files).
    ({"repository": None, "why": ...} when there is none.) Returns the summary, the notices
    and the diff."""
    if shutil.which("git") is None:
        return {"repository": None, "why": "git is not installed"}, \
            ["code: git is not installed; the code state is not recorded"], b""
    outside = {"repository": None, "why": f"{folder} is not in a git repository"}, [], b""
    if _outside_repositories(folder):
        return outside
    try:
        top = Path(_git(folder, "rev-parse", "--show-toplevel").strip())
    except (OSError, subprocess.TimeoutExpired):
        return outside
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
        # an untracked source file is part of the code that ran: its text, as a new file
        diff += "".join(_new_file(top, rel) for rel in state["untracked"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        notices.append(f"code: git status failed in {top} ({exc}); the diff is not recorded")
        state["dirty"], diff = None, ""
    data = diff.encode("utf-8", "surrogateescape")
    if data:
        if len(data) > DIFF_CAP:
            notices.append(f"code: the uncommitted diff is {len(data):,} bytes; its first "
                           f"{DIFF_CAP:,} are kept in code.diff")
            data = data[:DIFF_CAP]
            state["diff_cut"] = True
        state["diff_sha256"] = sha256(data).hexdigest()
        state["diff_bytes"] = len(data)
    return state, notices, data


def _new_file(top: Path, rel: str) -> str:
    """An untracked file as a unified diff from nothing; a binary or unreadable one, a line
    saying so."""
    try:
        data = (top / rel).read_bytes()[:UNTRACKED_CAP + 1]
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "binary")
        text = data[:UNTRACKED_CAP].decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return f"diff --git a/{rel} b/{rel}\nnew file (untracked), binary or unreadable\n"
    lines = text.splitlines()
    body = "".join(f"+{line}\n" for line in lines)
    cut = "\\ cut: the file is longer\n" if len(data) > UNTRACKED_CAP else ""
    return (f"diff --git a/{rel} b/{rel}\nnew file (untracked)\n--- /dev/null\n+++ b/{rel}\n"
            f"@@ -0,0 +1,{len(lines)} @@\n{body}{cut}")


@functools.cache
def installed() -> tuple[str, ...]:
    """`name==version` of every installed package, read once per process (a sweep launches
    many runs from one): every distribution on sys.path, as `importlib.metadata` lists them."""
    found: set[str] = set()
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:  # a zip file or a folder that is gone
            continue
        for name in names:
            if name.endswith(".dist-info"):
                meta = os.path.join(entry, name, "METADATA")
            elif name.endswith(".egg-info"):
                meta = os.path.join(entry, name, "PKG-INFO")
                if os.path.isfile(os.path.join(entry, name)):  # an old single-file egg-info
                    meta = os.path.join(entry, name)
            else:
                continue
            dist, version = _name_version(meta)
            if dist:
                found.add(f"{dist}=={version}")
    return tuple(sorted(found, key=str.lower))


def _name_version(path: str) -> tuple[str | None, str | None]:
    """A distribution's Name and Version from the head of its metadata file: the same values
    as `importlib.metadata` gives, without importing it or parsing the file as e-mail (a tenth
    of the time, on every launch)."""
    name = version = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\r\n")
                if not line:  # the headers end at the first blank line
                    break
                if name is None and line.startswith("Name:"):
                    name = line[5:].strip()
                elif version is None and line.startswith("Version:"):
                    version = line[8:].strip()
                if name and version:
                    break
    except OSError:
        return None, None
    return name, version


def packages_cached(cache_dir: Path) -> tuple[str, ...]:
    """installed(), kept in the workspace's cache with the names of the metadata folders on
    sys.path: installing, upgrading or removing a package adds or removes one (a .dist-info
    folder's name holds its version; an .egg-info folder counts with its change time), and
    the list is read again. A tenth of the time of reading every package's metadata, on every
    launch; a folder's other entries changing (the project's own, on sys.path in an editable
    install) does not count."""
    return _kept_packages(cache_dir)[0]


def _package_text(packages: tuple[str, ...]) -> str:
    return "\n".join(packages) + "\n"


def _package_digest(packages: tuple[str, ...]) -> str:
    return sha256(_package_text(packages).encode()).hexdigest()


def _kept_packages(cache_dir: Path) -> tuple[tuple[str, ...], str]:
    """packages_cached, and the hash of packages.txt's text, kept with it."""
    key = []
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as found:
                names = sorted(
                    e.name if e.name.endswith(".dist-info")
                    else f"{e.name} {e.stat(follow_symlinks=False).st_mtime_ns}"
                    for e in found if e.name.endswith((".dist-info", ".egg-info")))
        except OSError:  # a zip file or a folder that is gone
            continue
        key.append([entry, names])
    path = cache_dir / "packages.json"
    try:
        kept = read_json(path)
        if kept.get("python") == sys.executable and kept.get("key") == key:
            packages = tuple(kept["packages"])
            return packages, kept.get("sha256") or _package_digest(packages)
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass
    packages = installed()
    digest = _package_digest(packages)
    try:
        atomic_write_json(path, {"python": sys.executable, "key": key,
                                 "packages": list(packages), "sha256": digest})
    except OSError:  # a read-only cache: read each time
        pass
    return packages, digest


def environment(run_dir: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    """Python, the platform, the host, and the installed packages (packages.txt, its hash);
    the package list kept in `cache_dir` (packages_cached)."""
    if cache_dir:
        packages, digest = _kept_packages(cache_dir)
    else:
        packages = installed()
        digest = _package_digest(packages)
    text = _package_text(packages)
    atomic_write_text(run_dir / "packages.txt", text)
    versions = {p.split("==")[0].lower(): p.split("==")[1] for p in packages}
    return {"python": machine.python_version(), "platform": machine.platform_text(),
            "host": machine.host(), "executable": sys.executable,
            "torch": versions.get("torch"), "numpy": versions.get("numpy"),
            "packages": len(packages),
            "packages_sha256": digest[:16]}


@dataclass
class Snapshot:
    """What made a run that can be read before its folder exists: the code (with its diff) and
    each data source's fingerprint; `nkd rerun` compares one with a run's record, then hands
    it to the launch, which records it."""

    code: dict[str, Any]
    diff: bytes
    data: dict[str, Any]
    notices: list[str] = field(default_factory=list)


def snapshot(code_folder: Path, data_roots: dict[str, Path],
             cache_dir: Path | None = None) -> Snapshot:
    """The code of the repository holding `code_folder` and each data root's fingerprint,
    cached by directory times in `cache_dir` (None: every file read). Never raises for what
    it cannot read: that is recorded as such, with one notice."""
    notices: list[str] = []
    try:
        code, said, diff = code_state(code_folder)
        notices += said
    except Exception as exc:  # provenance never fails a run
        code, diff = {"repository": None, "why": f"not recorded ({type(exc).__name__})"}, b""
        notices.append(f"code: not recorded ({exc})")
    return Snapshot(code, diff, data_state(data_roots, cache_dir, notices), notices)


def record(run_dir: Path, made: Snapshot, rerun: dict[str, Any] | None = None,
           cache_dir: Path | None = None) -> tuple[list[str], dict[str, Any]]:
    """Write provenance.json (and code.diff, packages.txt) into the run folder; the notices
    to give and what was written. `rerun`: the run this one repeats, and what differs;
    `cache_dir`: the workspace's cache, where the package list is kept."""
    notices = list(made.notices)
    if made.diff:
        try:
            atomic_write_text(run_dir / "code.diff", made.diff.decode("utf-8", "replace"))
        except OSError as exc:
            notices.append(f"code: code.diff not written ({exc.strerror or exc})")
    try:
        env = environment(run_dir, cache_dir)
    except Exception as exc:
        env = {"python": machine.python_version(), "why": f"packages not listed ({exc})"}
        notices.append(f"environment: the package list is not recorded ({exc})")
    doc = {"code": made.code, "data": made.data, "environment": env,
           **({"rerun": rerun} if rerun else {})}
    atomic_write_json(run_dir / NAME, doc)
    return notices, doc


def data_state(data_roots: dict[str, Path], cache_dir: Path | None,
               notices: list[str] | None = None) -> dict[str, Any]:
    """Each data source's fingerprint (cached by directory times where `cache_dir` is given);
    a folder that is not there is recorded missing, with a notice."""
    data: dict[str, Any] = {}
    for key, root in data_roots.items():
        try:
            if not root.is_dir():
                raise FileNotFoundError(root)
            data[key] = fingerprint(root, cache_file(cache_dir, root) if cache_dir else None)
            if data[key].get("unreadable") and notices is not None:
                n = data[key]["unreadable"]
                notices.append(f"data {key}: {n} entr{'y' if n == 1 else 'ies'} of {root} could "
                               f"not be read; the fingerprint leaves them out")
        except OSError:
            data[key] = {"root": str(root), "missing": True}
            if notices is not None:
                notices.append(f"data {key}: {root} is not there; its fingerprint is not "
                               f"recorded")
    return data


def read(run_dir: Path) -> dict[str, Any] | None:
    """provenance.json, with the machine the worker last ran on under "machine" once it has
    started (worker_environment.json); None for a run recorded before provenance was."""
    import json

    try:
        prov = json.loads((run_dir / NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(prov, dict):
        return None
    worker = machine.last(run_dir)
    if worker:
        prov["machine"] = worker
    return prov


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
    if prov.get("machine"):
        out.append(f"machine      {machine_text(prov['machine'])}")
    rerun = prov.get("rerun")
    if rerun:
        differs = "; ".join(rerun.get("differs") or []) or "code and data as recorded"
        out.append(f"rerun of     {rerun.get('of')} ({differs})")
    return out


def machine_text(m: dict[str, Any]) -> str:
    """The worker's machine in one line: host, torch with CUDA and cuDNN, driver and GPUs."""
    torch = f"torch {m.get('torch') or '-'}"
    extra = [f"CUDA {m['cuda']}" if m.get("cuda") else "no CUDA"]
    if m.get("cudnn"):
        extra.append(f"cuDNN {m['cudnn']}")
    gpus = m.get("gpus") or []
    shown = ", ".join(f"{n}× {name}" if n > 1 else name
                      for name, n in Counter(gpus).items()) if gpus else "no GPU"
    driver = f", driver {m['driver']}" if m.get("driver") else ""
    return f"{m.get('host', '?')}: {torch} ({', '.join(extra)}), {shown}{driver}"
