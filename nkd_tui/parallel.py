"""A sweep's parallel-coordinates chart: one vertical axis per swept setting and one for the
metric, each trial a line through its values, coloured by how good its metric is. Numbers go on
a linear axis, or a log one where they are all positive and span a decade or more (a learning
rate); anything else (a list to choose from, text) gets one evenly spaced place per value."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from textual_plotext import PlotextPlot

# best third, middle third, worst third of the trials with a value; none yet: grey
RANK_COLOURS = ("green", "orange", "red")
NO_VALUE = "gray"


@dataclass
class Axis:
    name: str
    kind: str  # "linear" | "log" | "choice"
    lo: float = 0.0
    hi: float = 1.0
    choices: tuple[str, ...] = ()

    def position(self, value: Any) -> float | None:
        """Where `value` lies on the axis, 0 (bottom) to 1 (top); None when it has none."""
        if value is None:
            return None
        if self.kind == "choice":
            key = _key(value)
            if key not in self.choices:
                return None
            return 0.5 if len(self.choices) == 1 else \
                self.choices.index(key) / (len(self.choices) - 1)
        if not _number(value):
            return None
        v = float(value)
        lo, hi = (math.log10(self.lo), math.log10(self.hi)) if self.kind == "log" else \
            (self.lo, self.hi)
        if self.kind == "log":
            if v <= 0:
                return None
            v = math.log10(v)
        return 0.5 if hi == lo else (v - lo) / (hi - lo)

    def text(self) -> str:
        """The axis's name and range, as the line under the chart gives it."""
        if self.kind == "choice":
            return f"{self.name} {' · '.join(self.choices)}"
        scale = " (log)" if self.kind == "log" else ""
        return f"{self.name} {_fmt(self.lo)}…{_fmt(self.hi)}{scale}"


def axis_of(name: str, values: list[Any]) -> Axis:
    present = [v for v in values if v is not None]
    if present and all(_number(v) for v in present):
        lo, hi = float(min(present)), float(max(present))
        if lo > 0 and hi / lo >= 10:
            return Axis(name, "log", lo, hi)
        return Axis(name, "linear", lo, hi)
    return Axis(name, "choice", choices=tuple(sorted({_key(v) for v in present})))


def axes_and_lines(summary: Any) -> tuple[list[Axis], list[tuple[str, list[float], str]]]:
    """The chart's axes (the swept settings, then the metric) and each trial's line: (trial,
    its place on every axis, its colour). A trial without a place on some axis is left out."""
    values = {t.run_id: summary.value(t) for t in summary.trials}
    axes = [axis_of(k, [t.settings.get(k) for t in summary.trials]) for k in summary.swept]
    axes.append(axis_of(summary.metric, list(values.values())))
    scored = sorted((v for v in values.values() if v is not None),
                    reverse=summary.maximize)
    lines = []
    for t in summary.trials:
        places = [a.position(t.settings.get(a.name)) for a in axes[:-1]]
        places.append(axes[-1].position(values[t.run_id]))
        if any(p is None for p in places[:-1]):
            continue
        value = values[t.run_id]
        if value is None:
            colour, places[-1] = NO_VALUE, 0.0  # not scored yet: drawn to the bottom, grey
        else:
            colour = RANK_COLOURS[min(2, 3 * scored.index(value) // max(1, len(scored)))]
        lines.append((t.run_id, [float(p) for p in places], colour))
    return axes, lines


class ParallelChart(PlotextPlot):
    """The chart of one sweep summary, rebuilt when the summary or the size changes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.summary: Any = None
        self.axes: list[Axis] = []
        self.lines: list[tuple[str, list[float], str]] = []
        self._built_for: tuple | None = None

    def show(self, summary: Any) -> list[Axis]:
        """Chart `summary` at the next render; returns its axes (their ranges are said beside
        the chart)."""
        self.summary = summary
        self.axes, self.lines = axes_and_lines(summary)
        self._built_for = None
        self.refresh()
        return self.axes

    def render(self):  # noqa: ANN201 - the plotext widget's renderable
        key = (id(self.summary), self.size.width, self.size.height)
        if key != self._built_for:
            self._built_for = key
            self._build()
        return super().render()

    def _build(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if self.summary is None or not self.summary.swept:
            plt.title("no settings differ between the trials" if self.summary else "")
            return
        axes, lines = self.axes, self.lines
        xs = list(range(len(axes)))
        ranked = sorted(lines, key=lambda line: RANK_COLOURS[::-1].index(line[2])
                        if line[2] in RANK_COLOURS else -1)  # the best drawn last, on top
        for _run, ys, colour in ranked:
            plt.plot(xs, ys, color=colour, marker="dot")
        for x in xs:
            plt.vline(x, color="gray")
        plt.xticks(xs, [a.name for a in axes])
        plt.yticks([0, 1], ["low", "high"])
        plt.ylim(-0.05, 1.05)
        plt.xlim(-0.3, len(axes) - 0.7)
        better = "higher" if self.summary.maximize else "lower"
        plt.title(f"{len(lines)} trials · colour by {self.summary.metric} ({better} is better)")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _key(value: Any) -> str:
    return f"{value:g}" if _number(value) else str(value)


def _fmt(value: float) -> str:
    return f"{value:.3g}"


__all__ = ["Axis", "ParallelChart", "axes_and_lines", "axis_of"]
