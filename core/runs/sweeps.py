"""Sweeps: `--set lr=1e-3,1e-4 --set alpha=0.5,0.7` (or `range(a,b,step)`), or a registry
`[sweeps.NAME]` grid, expanded to every combination of settings."""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from typing import Any

from core.errors import RegistryError

RANGE = re.compile(r"range\(\s*([^,()]+)\s*,\s*([^,()]+)\s*(?:,\s*([^,()]+)\s*)?\)")
MAX_RUNS = 1000  # a grid larger than this is almost certainly a typo


def split_values(text: str, where: str) -> list[str]:
    """The values one `--set key=...` stands for: a comma list, a range, or one value (a TOML
    list such as ['a', 'b'] is one value)."""
    t = text.strip()
    m = RANGE.fullmatch(t)
    if m:
        return _range(m, where)
    try:
        tomllib.loads(f"v = {t}")
        return [t]
    except tomllib.TOMLDecodeError:
        pass
    if "," in t:
        parts = [p.strip() for p in t.split(",")]
        if all(parts):
            return parts
        raise RegistryError(f"{where}: '{text}' has an empty value in its comma list")
    return [t]


def _range(m: re.Match[str], where: str) -> list[str]:
    try:
        nums = [tomllib.loads(f"v = {g}")["v"] for g in m.groups() if g is not None]
    except tomllib.TOMLDecodeError:
        raise RegistryError(f"{where}: {m.group(0)} needs numbers") from None
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in nums):
        raise RegistryError(f"{where}: {m.group(0)} needs numbers")
    start, stop = nums[0], nums[1]
    step = nums[2] if len(nums) > 2 else 1
    if step <= 0 or stop <= start:
        raise RegistryError(f"{where}: {m.group(0)} is empty (it needs start < stop, step > 0)")
    count = int((stop - start) / step + 1e-9)
    count += 1 if start + count * step < stop - 1e-12 else 0
    if count > MAX_RUNS:
        raise RegistryError(f"{where}: {m.group(0)} has more than {MAX_RUNS} values")
    ints = all(isinstance(n, int) for n in nums)
    return [str(start + i * step) if ints else repr(round(start + i * step, 12))
            for i in range(count)]


def expand(overrides: list[str], where: str) -> list[list[str]]:
    """Every combination of the overrides' values, as lists of `key=value` (one list when
    nothing is swept)."""
    axes = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            axes.append([item])  # refused, with its own message, when it is resolved
            continue
        axes.append([f"{key}={v}" for v in split_values(text, f"{where}: --set '{item}'")])
    return _product(axes, where)


def grid_combos(grid: dict[str, list[Any]], where: str) -> list[list[str]]:
    """Every combination of a registry `[sweeps.NAME]` grid, as lists of `key=value`."""
    return _product([[f"{key}={_toml(v)}" for v in values] for key, values in grid.items()],
                    where)


def _product(axes: list[list[str]], where: str) -> list[list[str]]:
    size = 1
    for axis in axes:
        size *= len(axis)
    if size > MAX_RUNS:
        raise RegistryError(f"{where}: the sweep has {size} runs; at most {MAX_RUNS}")
    return [list(combo) for combo in itertools.product(*axes)]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def swept_keys(combos: list[list[str]]) -> list[str]:
    """The keys whose value differs between combinations."""
    if len(combos) < 2:
        return []
    keys = []
    for i, item in enumerate(combos[0]):
        if len({c[i] for c in combos}) > 1:
            keys.append(item.partition("=")[0])
    return keys
