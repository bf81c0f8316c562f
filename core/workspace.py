"""Where a registry's runs, checkpoints and database live: beside the registry file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

DB_NAME = "nkd.db"


@dataclass(frozen=True)
class Workspace:
    """Where a registry's runs, checkpoints, database and caches are: beside the registry file,
    or where its [workspace] table says (paths relative to the registry)."""

    registry_path: Path
    places: tuple[tuple[str, str], ...] = ()  # the [workspace] table: runs, checkpoints, db, cache

    @classmethod
    def at(cls, registry_path: str | Path) -> Workspace:
        from core.compose import workspace_table

        path = Path(registry_path).resolve()
        return cls(path, tuple(sorted(workspace_table(path).items())))

    @property
    def root(self) -> Path:
        return self.registry_path.parent

    def _place(self, key: str, default: str) -> Path:
        given = dict(self.places).get(key)
        if not given:
            return self.root / default
        path = Path(given).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def runs_dir(self) -> Path:
        return self._place("runs", "runs")

    @property
    def checkpoints_dir(self) -> Path:
        return self._place("checkpoints", "checkpoints")

    @property
    def db_path(self) -> Path:
        return self._place("db", DB_NAME)

    @property
    def cache_dir(self) -> Path:
        """Derived files: prepared audio, clip indexes, features."""
        return self._place("cache", "cache")

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id


def atomic_write(path: Path, write: Callable[[BinaryIO], None], suffix: str = "") -> Path:
    """Write a file so that readers see the old or the new content, never half of it:
    `write` fills a temporary file beside it, which then replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def csv_text(rows: list[list[Any]]) -> str:
    """Rows as CSV text with plain newlines."""
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def atomic_write_json(path: Path, data: Any, sort_keys: bool = True) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
