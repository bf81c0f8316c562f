"""The one rule for names that become paths (experiments, blends, run ids), and the check that a
path a run writes stays inside its own folders."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import RegistryError, RunError

if TYPE_CHECKING:
    from datetime import datetime

NAME_MAX = 80
# letters, digits, then also . _ - ; no slash, no leading dot, never "." or ".."
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
# <experiment>_<YYYYMMDD>_<HHMMSS>, with an optional _<n> collision suffix
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}_\d{8}_\d{6}(_\d{1,3})?")


def name_problem(name: object) -> str | None:
    """Why `name` cannot name an experiment or a blend, or None when it can."""
    if not isinstance(name, str) or not name:
        return "a name must be a non-empty string"
    if not NAME.fullmatch(name):
        if len(name) > NAME_MAX:
            return f"a name has at most {NAME_MAX} characters"
        return ("a name may hold only ASCII letters (a-z, A-Z), digits, '.', '_' and '-', and "
                "starts with a letter or digit (it becomes a folder name)")
    return None


def check_name(name: object, where: str, error: type[Exception] = RegistryError) -> str:
    problem = name_problem(name)
    if problem:
        raise error(f"{where}: '{name}' is not a valid name: {problem}")
    return str(name)


def inside(path: str | Path, *roots: Path) -> bool:
    """Does `path` (made absolute, links resolved) lie inside one of `roots`?"""
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(os.path.realpath(r)) for r in roots)


def run_path(run_dir: Path, name: str) -> Path:
    """A file of a run folder, refused if it would leave the folder or go through a link."""
    path = run_dir / name
    if path.is_symlink():
        raise RunError(f"{path}: is a symbolic link; nkd never writes through one")
    if not inside(path, run_dir):
        raise RunError(f"{path}: lies outside its run folder {run_dir}")
    return path


def open_append(path: Path) -> int:
    """An O_APPEND descriptor for a run file that never follows a symbolic link."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        if path.is_symlink():
            raise RunError(f"{path}: is a symbolic link; nkd never writes through one") from None
        raise RunError(f"{path}: cannot be written ({exc.strerror})") from None


STAMP = "%Y%m%d_%H%M%S"  # a run folder's time, after its experiment's name


def allocate_run_dir(runs_dir: Path, experiment: str, now: datetime | None = None) -> Path:
    """`runs/<experiment>_<YYYYMMDD_HHMMSS>`, with a suffix on collision; claimed atomically."""
    check_name(experiment, f"{runs_dir}: experiment", RunError)
    stamp = now.strftime(STAMP) if now else time.strftime(STAMP)  # local time, either way
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{runs_dir}: cannot create the runs folder ({exc.strerror})") from None
    base = f"{experiment}_{stamp}"
    for n in range(1, 1000):
        candidate = runs_dir / (base if n == 1 else f"{base}_{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunError(f"{candidate}: cannot create the run folder ({exc.strerror})") from None
        if not inside(candidate, runs_dir):  # one more guard: the name rule keeps it inside
            candidate.rmdir()
            raise RunError(f"{candidate}: lies outside {runs_dir}; nothing was started")
        return candidate
    raise RunError(f"{runs_dir}: cannot allocate a run folder for '{experiment}'")
