"""What a registry key is: its type, range, default and who reads it (`Key`), a default that
depends on the recipe's family or another key (`Per`), and the groups of recipes that read
keys. The keys themselves are in core/registry/keys.py."""

from __future__ import annotations

from typing import Any, NamedTuple


class _NoDefault:
    """The default of a key that has none: unset means off, absent or decided by a rule."""

    def __repr__(self) -> str:
        return "—"


NO_DEFAULT: Any = _NoDefault()

# who reads a key: recipe names, a family's pattern ("noise.*") or "command"
BUILTIN = ("noise.*", "separation.*")
TRAINING = ("noise.teacher", "noise.student", "noise.hybrid_kd", "separation.train")
NOISE = ("noise.*",)
SEPARATION = ("separation.*",)
COMMAND = ("command",)
# what a run may select its best epoch by: the epoch field it reads, and whether higher is better
SELECT_BY: dict[str, tuple[str, bool]] = {
    "val_loss": ("val_loss", False),
    "val_sdr": ("val_sdr", True),
    "val_accuracy": ("val_accuracy", True),
    "train_loss": ("train_loss", False),
}
# what a run without that value goes by instead (a run without validation: its training loss)
SELECT_FALLBACK = {"val_loss": "train_loss"}
# the built-in recipes that record a value each epoch, where not every trainer does (a command
# experiment records whatever its script reports)
RECORDED_BY = {
    "val_sdr": ("separation.train",),
    "val_accuracy": ("noise.teacher", "noise.student", "noise.hybrid_kd"),
}
def recorded_each_epoch(recipe: str) -> set[str]:
    """The epoch values a built-in recipe records: train and validation loss for all, and the
    scores of RECORDED_BY for those that record them."""
    return {"val_loss", "train_loss"} | {v for v, by in RECORDED_BY.items() if recipe in by}


SEP_TRAIN = ("separation.train",)
HYBRID = ("noise.hybrid_kd",)


class Per(NamedTuple):
    """A default that depends on another setting: the recipe's family (`on = "family"`) or the
    value of a key such as `model`. (Named tuples, this and Key: the store reads them, and a
    run's worker starts sooner without the dataclasses module.)"""

    on: str
    values: dict[str, Any]
    otherwise: Any = NO_DEFAULT

    def pick(self, settings: dict[str, Any], family: str) -> Any:
        which = family if self.on == "family" else settings.get(self.on)
        return self.values.get(which, self.otherwise)

    def text(self) -> str:
        shown = [
            f"{_show(v)} ({self.on} {k})" if self.on != "family" else f"{_show(v)} ({k})"
            for k, v in self.values.items()
        ]
        if self.otherwise is not NO_DEFAULT:
            shown.append(f"{_show(self.otherwise)} otherwise")
        return ", ".join(shown)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Key(NamedTuple):
    kind: str  # str | int | float | bool | list[str] | classes | weights | table | device ...
    help: str
    choices: tuple[str, ...] = ()
    lo: float | None = None  # smallest allowed value (numbers)
    hi: float | None = None  # largest allowed value
    lo_open: bool = False  # lo itself is not allowed (lr > 0)
    hi_open: bool = False
    # the value a recipe uses when the key is not set: a value, a Per (by family or another
    # key), or NO_DEFAULT (unset means off or absent, or `rule` decides at run time)
    default: Any = NO_DEFAULT
    used_by: tuple[str, ...] = ()  # who reads it (the resolved settings of those runs hold it)
    rule: str = ""  # what decides the value at run time when no experiment sets it

    def default_for(self, settings: dict[str, Any], family: str) -> Any:
        if isinstance(self.default, Per):
            return self.default.pick(settings, family)
        return self.default

    def default_text(self) -> str:
        if self.rule:
            return self.rule
        if isinstance(self.default, Per):
            return self.default.text()
        return "" if self.default is NO_DEFAULT else _show(self.default)

    def read_by(self, recipe: str) -> bool:
        family = recipe.partition(".")[0]
        return any(u in (recipe, f"{family}.*") for u in self.used_by)

    def range_text(self) -> str:
        if self.lo is None and self.hi is None:
            return ""
        if self.hi is None:
            return f"{'>' if self.lo_open else '≥'} {self.lo:g}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '≤'} {self.hi:g}"
        return (
            f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}"
            f"{')' if self.hi_open else ']'}"
        )

    def out_of_range(self, value: float) -> bool:
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return True
        return self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi))


def positive(kind: str, help: str, lo: float = 0, lo_open: bool = True, hi: float | None = None,
             hi_open: bool = False, **rest: Any) -> Key:
    """A number key, positive unless told otherwise."""
    return Key(kind, help, lo=lo, lo_open=lo_open, hi=hi, hi_open=hi_open, **rest)
