"""Sweeps: `--set lr=1e-3,1e-4 --set alpha=0.5,0.7` (or `range(a,b,step)`), or a registry
`[sweeps.NAME]` grid, expanded to every combination of settings; and sampled sweeps:
`--set lr=loguniform(1e-4,1e-2) --trials 16` or a registry `sample`, N trials drawn with a seed."""

from __future__ import annotations

import itertools
import json
import random
import re
import tomllib
from typing import Any

from core.errors import RegistryError
from core.registry.sampling import Distribution, is_distribution, parse_distribution
from core.registry.sweeps import MAX_RUNS

RANGE = re.compile(r"range\(\s*([^,()]+)\s*,\s*([^,()]+)\s*(?:,\s*([^,()]+)\s*)?\)")


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


def expand(overrides: list[str], where: str, trials: int | None = None,
           seed: int = 0) -> list[list[str]]:
    """Every combination of the overrides' values, as lists of `key=value` (one list when
    nothing is swept); overrides that name a distribution (`lr=loguniform(1e-4,1e-2)`) are
    drawn `trials` times with `seed`, and each draw goes with every combination."""
    axes, sample = [], {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            axes.append([item])  # refused, with its own message, when it is resolved
            continue
        if is_distribution(text):
            got = parse_distribution(text.strip())
            if isinstance(got, str):
                raise RegistryError(f"{where}: --set '{item}': {got}")
            sample[key.strip()] = got
            continue
        axes.append([f"{key}={v}" for v in split_values(text, f"{where}: --set '{item}'")])
    if sample and not trials:
        raise RegistryError(f"{where}: --set '{next(k for k in sample)}=...' draws values: say "
                            f"how many trials with --trials N")
    if trials and not sample:
        raise RegistryError(f"{where}: --trials needs a --set key=uniform(a,b), "
                            f"loguniform(a,b), int(a,b) or [a list] to draw from")
    combos = _product(axes, where)
    if sample:
        combos = [c + d for d in draws(sample, int(trials or 0), seed) for c in combos]
        if len(combos) > MAX_RUNS:
            raise RegistryError(f"{where}: the sweep has {len(combos)} runs; at most {MAX_RUNS}")
    return combos


def draws(sample: dict[str, Distribution], trials: int, seed: int) -> list[list[str]]:
    """`trials` draws of the sampled keys, each a list of `key=value`: the same seed, the same
    trials."""
    rng = random.Random(seed)
    return [[f"{key}={_toml(dist.draw(rng))}" for key, dist in sample.items()]
            for _ in range(trials)]


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
