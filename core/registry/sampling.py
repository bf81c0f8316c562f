"""What a sampled sweep draws from, and how it halves: the forms of `[sweeps.NAME] sample` (and
of `--set key=loguniform(a,b)`) and of `halving`, checked where the registry is read.

    sample = { lr = "loguniform(1e-4, 1e-2)", dropout = "uniform(0, 0.5)",
               hidden_size = [256, 512], num_layers = "int(2, 4)" }
    halving = { metric = "val_sdr", mode = "max", rungs = [5, 15, 45], keep = 0.33 }

`uniform(a, b)` and `loguniform(a, b)` draw a float in [a, b) (loguniform: evenly in log
space, both bounds positive), `int(a, b)` an integer in [a, b], a list one of its values.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any

DISTRIBUTION = re.compile(r"\s*(uniform|loguniform|int)\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)\s*")
LOOKS_LIKE = re.compile(r"\s*[A-Za-z_]\w*\s*\(.*\)\s*")  # something(...): a distribution, or a typo
KINDS = ("uniform", "loguniform", "int")


@dataclass(frozen=True)
class Distribution:
    kind: str  # uniform | loguniform | int | choice
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def draw(self, rng: random.Random) -> Any:
        """One value."""
        if self.kind == "choice":
            return self.choices[rng.randrange(len(self.choices))]
        if self.kind == "int":
            return rng.randint(int(self.low), int(self.high))
        if self.kind == "loguniform":
            return float(f"{math.exp(rng.uniform(math.log(self.low), math.log(self.high))):.6g}")
        return float(f"{rng.uniform(self.low, self.high):.6g}")  # as a person would write it


def parse_distribution(value: Any) -> Distribution | str:
    """The distribution a sample value names, or why it names none (one phrase)."""
    if isinstance(value, list):
        if not value:
            return "an empty list has nothing to draw"
        return Distribution("choice", choices=tuple(value))
    if not isinstance(value, str):
        return f"{value!r} is neither a list nor uniform(a, b), loguniform(a, b) or int(a, b)"
    found = DISTRIBUTION.fullmatch(value)
    if found is None:
        if LOOKS_LIKE.fullmatch(value):
            name = value.strip().split("(")[0]
            return (f"unknown distribution '{name}' in {value!r} (known: "
                    f"{', '.join(KINDS)}, or a list)")
        return f"{value!r} is neither a list nor uniform(a, b), loguniform(a, b) or int(a, b)"
    kind, a, b = found.groups()
    try:
        low, high = float(a), float(b)
    except ValueError:
        return f"{value!r} needs two numbers"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{value!r} needs finite bounds"
    if low >= high:
        return f"{value!r} needs a < b"
    if kind == "loguniform" and low <= 0:
        return f"{value!r}: loguniform needs bounds above 0"
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        return f"{value!r}: int needs whole-number bounds"
    return Distribution(kind, low, high)


def is_distribution(text: str) -> bool:
    """Whether a `--set` value asks for a draw (`loguniform(1e-4,1e-2)`), not a value."""
    return LOOKS_LIKE.fullmatch(text) is not None and not text.strip().startswith("range(")


@dataclass(frozen=True)
class Halving:
    metric: str
    mode: str  # max | min
    rungs: tuple[int, ...]  # the epochs at which trials are compared, increasing
    keep: float  # the share of a rung's trials promoted to the next

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "mode": self.mode, "rungs": list(self.rungs),
                "keep": self.keep}


HALVING_KEYS = ("metric", "mode", "rungs", "keep")


def parse_halving(value: Any) -> Halving | str:
    """A `halving` table, or what is wrong with it (one phrase naming the key)."""
    if not isinstance(value, dict):
        return "must be a table { metric, mode, rungs, keep }"
    unknown = [k for k in value if k not in HALVING_KEYS]
    if unknown:
        return f"unknown key '{unknown[0]}' (known: {', '.join(HALVING_KEYS)})"
    metric, mode = value.get("metric"), value.get("mode", "max")
    rungs, keep = value.get("rungs"), value.get("keep", 1 / 3)
    if not isinstance(metric, str) or not metric:
        return "key 'metric' must name a value the runs record each epoch (val_sdr, val_loss, ...)"
    if mode not in ("max", "min"):
        return f"key 'mode' must be max or min, got {mode!r}"
    if not (isinstance(rungs, list) and rungs and all(
            isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rungs)):
        return f"key 'rungs' must be a list of epochs ≥ 1, got {rungs!r}"
    if any(b <= a for a, b in zip(rungs, rungs[1:], strict=False)):
        return f"key 'rungs' must increase, got {rungs}"
    if isinstance(keep, bool) or not isinstance(keep, int | float) or not 0 < keep < 1:
        return f"key 'keep' must be a share in (0, 1), got {keep!r}"
    return Halving(metric, mode, tuple(rungs), float(keep))


__all__ = ["Distribution", "Halving", "is_distribution", "parse_distribution", "parse_halving"]
