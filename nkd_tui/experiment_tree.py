"""The experiments tree: the registry's groups, each experiment followed by the evaluations and
blends made of it with `nkd eval` / `nkd blend` (experiments of their own, not in the registry),
so a model's scores on other data sit beside the runs they score."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Tree


class ExperimentTree(Tree):
    """The experiments tree; space marks the highlighted run (enter still folds a group)."""

    BINDINGS = [Binding("space", "app.mark", "Mark", show=False)]


def tree_groups(
    groups: dict[str, list[str]], adhoc: dict[str, tuple[str, str | None, str]]
) -> list[tuple[str, list[str]]]:
    """(group, experiments) in the registry's order, each experiment followed by the ad-hoc
    ones (`adhoc`: name -> (group, the experiment it scores or None, description)) that score
    it; those that score nothing in the registry (a file, a removed experiment) come last, in
    their own groups."""
    beside: dict[str | None, list[str]] = {}
    for name, (_group, scored, _text) in sorted(adhoc.items()):
        beside.setdefault(scored, []).append(name)
    out: list[tuple[str, list[str]]] = []
    placed: set[str] = set()
    for group, names in groups.items():
        shown: list[str] = []
        for name in names:
            shown.append(name)
            shown += beside.get(name, [])
            placed.update(beside.get(name, []))
        out.append((group, shown))
    rest: dict[str, list[str]] = {}
    for name, (group, _scored, _text) in sorted(adhoc.items()):
        if name not in placed:
            rest.setdefault(group, []).append(name)
    return out + list(rest.items())
