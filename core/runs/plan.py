"""What one `nkd run` asks for: one run, a chain (several experiments), a sweep, or both, with the
waits between them. Everything is resolved and checked before anything is written.

A reference (`teacher`, `pretrained`, a blend's `sources`) to an experiment queued earlier in the
same command makes the run wait for that run, and is pinned to it (`run:<id>`), so the chain's
lineage is exactly the runs it started.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import RegistryError
from core.registry import Experiment, Reference, Registry
from core.util.names import check_name

if TYPE_CHECKING:
    from core.registry.sampling import Halving


@dataclass
class Planned:
    experiment: Experiment
    overrides: list[str]
    sweep: str | None = None
    parents: list[int] = field(default_factory=list)  # indices of earlier planned runs
    pinned: dict[str, int] = field(default_factory=dict)  # reference key -> planned index
    halving: Halving | None = None  # its sweep's successive halving


@dataclass
class Plan:
    runs: list[Planned]
    after: list[str]  # run ids every planned run waits for (--after)
    queued: bool

    @property
    def sweeps(self) -> list[str]:
        return sorted({p.sweep for p in self.runs if p.sweep})


def make_plan(
    registry: Registry,
    names: list[str],
    sets: list[str],
    after: list[str],
    sweep_name: str | None,
    queue: bool,
    trials: int | None = None,
    seed: int = 0,
) -> Plan:
    """Resolve every run of the command (RegistryError before anything is written)."""
    if sweep_name is not None:
        check_name(sweep_name, f"{registry.path}: --sweep-name")
    stamp = time.strftime("%Y%m%d_%H%M%S")
    runs: list[Planned] = []
    started: dict[str, list[int]] = {}  # experiment -> indices of its planned runs
    for name in names:
        where = f"{registry.path}: experiment '{name}'"
        combos = _combos(sets, where, trials, seed)
        halving = None
        if name in registry.sweeps:
            from core.runs.sweeps import draws, grid_combos

            sweep = registry.sweeps[name]
            grid = grid_combos(sweep.grid, f"{registry.path}: sweep '{name}'") if sweep.grid \
                else [[]]
            if sweep.sample:
                grid = [g + d for d in draws(sweep.sample, sweep.trials, sweep.seed)
                        for g in grid]
            combos = [g + c for g in grid for c in combos]
            halving = sweep.halving
            experiment, label = sweep.experiment, sweep_name or f"{name}_{stamp}"
        else:
            experiment = name
            label = (sweep_name or f"{name}_sweep_{stamp}") if len(combos) > 1 else sweep_name
        first = len(runs)
        for combo in combos:
            exp = registry.resolve(experiment, combo)
            planned = Planned(exp, combo, label, halving=halving)
            if halving is not None:  # --set epochs=2 may have moved the end before a rung
                from core.registry.sweeps import halving_problem

                why = halving_problem(halving, exp)
                if why:
                    raise RegistryError(f"{registry.path}: sweep '{name}': key 'halving': {why}")
            for key, ref in _refs(exp):
                parents = started.get(ref.target, []) if ref.kind == "experiment" else []
                planned.parents += [i for i in parents if i not in planned.parents]
                if len(parents) == 1:
                    planned.pinned[key] = parents[0]
            runs.append(planned)
        started.setdefault(experiment, []).extend(range(first, len(runs)))
    if not runs:
        raise RegistryError(f"{registry.path}: no experiment named")
    return Plan(runs, after, queue or len(runs) > 1 or bool(after))


def _combos(sets: list[str], where: str, trials: int | None, seed: int) -> list[list[str]]:
    """The runs' `--set` combinations (core.runs.sweeps.expand); one run with none asks for
    nothing to expand, and the sweep modules stay unloaded."""
    if not sets and not trials:
        return [[]]
    from core.runs.sweeps import expand

    return expand(sets, where, trials, seed)


def _refs(exp: Experiment) -> list[tuple[str, Reference]]:
    out = list(exp.references.items())
    out += [(f"sources:{r.target}", r) for r in exp.sources]
    return out


def pin(exp: Experiment, pinned: dict[str, str]) -> Experiment:
    """The experiment with references to planned parents replaced by their run ids."""
    if not pinned:
        return exp
    references = {
        k: Reference("run", pinned[k]) if k in pinned else r for k, r in exp.references.items()
    }
    sources = tuple(
        Reference("run", pinned[f"sources:{r.target}"], r.weight)
        if f"sources:{r.target}" in pinned else r
        for r in exp.sources
    )
    params: dict[str, Any] = dict(exp.params)
    for key, run_id in pinned.items():
        if not key.startswith("sources:"):
            params[key] = f"run:{run_id}"
    return dataclasses.replace(exp, params=params, references=references, sources=sources)
