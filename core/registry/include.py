"""Registries that compose: `include = ["../shared/experiments.toml"]` brings another registry's
data sources, defaults and experiments in (this file's own win on a clash), and a `[workspace]`
table says where runs, checkpoints, the database and the caches go.

Paths in an included file (data roots) stay relative to that file. Includes may include in turn;
a cycle is refused with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import RegistryError

WORKSPACE_KEYS = ("runs", "checkpoints", "db", "cache")


def _read(path: Path, by: Path, item: str) -> dict[str, Any]:
    """An included registry; a failure names the file that includes it, and the entry."""
    import tomllib

    where = f"{by}: include '{item}'"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{where}: registry file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{where}: cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{where}: TOML syntax error in {path}: {exc}") from None


def with_includes(path: Path, doc: dict[str, Any], seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """`doc` with everything its `include` list brings in merged under it."""
    includes = doc.get("include", [])
    if not includes:
        return doc
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise RegistryError(f"{path}: 'include' must be a list of registry file paths")
    here = path.resolve()
    merged: dict[str, Any] = {"defaults": {}, "data": {}, "experiments": {}, "sweeps": {}}
    for item in includes:
        other = Path(item).expanduser()
        other = (other if other.is_absolute() else here.parent / other).resolve()
        if other in (here, *seen):
            raise RegistryError(f"{path}: include '{item}' includes itself (a cycle)")
        sub = with_includes(other, _read(other, path, item), (*seen, here))
        for name, table in sub.get("data", {}).items():
            if isinstance(table, dict) and "root" in table:
                root = Path(str(table["root"])).expanduser()
                table = {**table, "root": str(root if root.is_absolute()
                                              else other.parent / root)}
            merged["data"][name] = table
        for section in ("defaults", "experiments", "sweeps"):
            value = sub.get(section, {})
            if isinstance(value, dict):
                merged[section].update(value)
    out = {k: v for k, v in doc.items() if k != "include"}
    for section, value in merged.items():
        own = doc.get(section, {})
        if isinstance(own, dict):
            out[section] = {**value, **own}
    return out


def workspace_table(registry_path: Path) -> dict[str, str]:
    """The registry's [workspace] paths (unchecked here: `nkd check` reports a bad one). A
    registry whose text never says `workspace` has none, and is not parsed for it: this is
    read before a run's worker is prestarted, and the TOML parser's import alone costs more
    than the rest of that."""
    try:
        text = registry_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    if "workspace" not in text:
        return {}
    import tomllib

    try:
        table = tomllib.loads(text).get("workspace", {})
    except tomllib.TOMLDecodeError:
        return {}
    if not isinstance(table, dict):
        return {}
    return {k: v for k, v in table.items() if k in WORKSPACE_KEYS and isinstance(v, str)}


def check_workspace(path: Path, table: Any, problems: list[str]) -> None:
    if not isinstance(table, dict):
        problems.append(f"{path}: [workspace] must be a table of paths")
        return
    for key, value in table.items():
        if key not in WORKSPACE_KEYS:
            problems.append(f"{path}: [workspace]: unknown key '{key}' (known: "
                            f"{', '.join(WORKSPACE_KEYS)})")
        elif not isinstance(value, str) or not value:
            problems.append(f"{path}: [workspace]: key '{key}' must be a path")
