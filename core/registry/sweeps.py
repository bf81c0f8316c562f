"""The `[sweeps.NAME]` tables of a registry: a grid (every combination), a sample (N trials
drawn from distributions, core/registry/sampling.py), or both, and optionally successive
halving of the trials."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.registry.key import TRAINING, recorded_each_epoch
from core.registry.keys import KEYS
from core.registry.sampling import Distribution, Halving, parse_distribution, parse_halving

SWEEP_KEYS = {
    "experiment": "the experiment the sweep runs",
    "grid": "a table of key -> list of values; the sweep is every combination",
    "sample": 'a table of key -> "uniform(a, b)", "loguniform(a, b)", "int(a, b)" or a list; '
              "`trials` draws",
    "trials": "how many trials a sample draws (with `sample`)",
    "seed": "the seed of the draws (default 0): the same seed draws the same trials",
    "halving": "successive halving: { metric, mode = max|min, rungs = [epochs], keep = share }",
    "description": "one line saying what the sweep is for",
}
MAX_RUNS = 1000  # a sweep larger than this is almost certainly a typo (a grid, or trials)


@dataclass(frozen=True)
class Sweep:
    name: str
    experiment: str
    grid: dict[str, list[Any]] = field(default_factory=dict)
    sample: dict[str, Distribution] = field(default_factory=dict)
    trials: int = 0
    seed: int = 0
    halving: Halving | None = None


def parse_sweeps(path: Path, tables: Any, experiments: dict[str, Any], problems: list[str],
                 built: dict[str, Any] | None = None) -> dict[str, Sweep]:
    """Every sweep table checked: one line per problem in `problems`, naming the sweep and key.
    `built`: the resolved experiments (their recipe and epochs), when they could be built."""
    if tables is None:
        return {}
    if not isinstance(tables, dict):
        problems.append(f"{path}: [sweeps] must be a table of named sweeps")
        return {}
    out = {}
    for name, table in tables.items():
        where = f"{path}: sweep '{name}'"
        before = len(problems)
        sweep = _sweep(where, name, table, experiments, problems, built or {})
        if sweep is not None and len(problems) == before:
            out[name] = sweep
    return out


def _sweep(where: str, name: str, table: Any, experiments: dict[str, Any],
           problems: list[str], built: dict[str, Any]) -> Sweep | None:
    if not isinstance(table, dict):
        problems.append(f"{where} must be a table")
        return None
    unknown = [k for k in table if k not in SWEEP_KEYS]
    if unknown:
        problems.append(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(SWEEP_KEYS)})")
        return None
    experiment = table.get("experiment")
    if experiment not in experiments:
        problems.append(f"{where}: key 'experiment': unknown experiment {experiment!r}")
        return None
    if name in experiments:
        problems.append(f"{where}: an experiment has the same name")
        return None
    grid, sample = table.get("grid"), table.get("sample")
    if grid is None and sample is None:
        problems.append(f"{where}: needs a 'grid' or a 'sample'")
        return None
    if grid is not None and (not isinstance(grid, dict) or not grid or not all(
            isinstance(v, list) and v for v in grid.values())):
        problems.append(f"{where}: key 'grid' must be a table of key -> non-empty list")
        return None
    drawn: dict[str, Distribution] = {}
    if sample is not None:
        if not isinstance(sample, dict) or not sample:
            problems.append(f"{where}: key 'sample' must be a table of key -> distribution")
            return None
        for key, value in sample.items():
            got = parse_distribution(value)
            if isinstance(got, str):
                problems.append(f"{where}: key 'sample.{key}': {got}")
            else:
                drawn[key] = got
    trials, seed = table.get("trials"), table.get("seed", 0)
    if sample is not None and (isinstance(trials, bool) or not isinstance(trials, int)
                               or not 1 <= trials <= MAX_RUNS):
        problems.append(f"{where}: key 'trials' must be an integer in [1, {MAX_RUNS}] with a "
                        f"sample, got {trials!r}")
    if sample is None and trials is not None:
        problems.append(f"{where}: key 'trials' needs a 'sample' to draw from")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        problems.append(f"{where}: key 'seed' must be an integer ≥ 0, got {seed!r}")
    halving = None
    if "halving" in table:
        got_h = parse_halving(table["halving"])
        if isinstance(got_h, str):
            problems.append(f"{where}: key 'halving': {got_h}")
        else:
            halving = got_h
            why = halving_problem(halving, built.get(experiment))
            if why:
                problems.append(f"{where}: key 'halving': {why}")
    return Sweep(name, experiment, {k: list(v) for k, v in (grid or {}).items()}, drawn,
                 trials or 0, seed if isinstance(seed, int) else 0, halving)


def halving_problem(halving: Halving, exp: Any, epochs: int | None = None) -> str | None:
    """Why the experiment's trials cannot be halved so, or None: a rung beyond its epochs, a
    metric its recipe never records, a recipe that cannot be suspended and resumed."""
    if exp is None:
        return None  # the experiment itself is refused with its own line
    recipe = getattr(exp, "recipe", None)
    if recipe not in TRAINING:
        return (f"trials are suspended at each rung and resumed when promoted, which needs a "
                f"built-in training recipe ({', '.join(TRAINING)}); '{exp.name}' has "
                f"{recipe or 'a command'}")
    epochs = epochs or int(exp.params.get("epochs", KEYS["epochs"].default))
    if halving.rungs[-1] > epochs:
        return (f"rung {halving.rungs[-1]} is beyond the experiment's {epochs} epochs "
                f"(rungs {list(halving.rungs)})")
    recorded = recorded_each_epoch(recipe)
    if halving.metric not in recorded:
        return (f"metric '{halving.metric}' is never recorded by {recipe} (it records "
                f"{', '.join(sorted(recorded))} each epoch)")
    return None


__all__ = ["MAX_RUNS", "SWEEP_KEYS", "Sweep", "halving_problem", "parse_sweeps"]
