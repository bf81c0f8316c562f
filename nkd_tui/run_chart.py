"""The highlighted run's chart: any per-epoch metric it records, live, with its legend above the
plot (never over the curves) and the experiment's `reported` value as a reference line.

`m`/`M` pick the metric (loss, lr, accuracy, SDR per stem: whatever the run's epochs carry), `y`
toggles a log y axis. Each series has its own colour and mark, so curves differ without colour.
"""

from __future__ import annotations

from array import array

from rich.text import Text
from textual.widgets import Static
from textual_plotext import PlotextPlot

from nkd_tui.chart import LOSS, STYLES, curves_of, decimate, legend, reference, series_from, views


class LossChart(PlotextPlot):
    """Keeps each series of one run and redraws, decimated to its width, only when stale."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run_id: str | None = None
        self.progress = ""  # "epoch 4/100 · step 120/480 · ETA 1h12m05s" while the run trains
        self.view = LOSS
        self.log_y = False
        self.reported: dict[str, float] = {}
        self.last_epoch = 0
        # name -> (epochs, values): arrays of doubles, cheap to append, read without a copy
        self.series: dict[str, tuple[array, array]] = {}
        self.legend: Static | None = None  # where the legend is written (the pane's top line)
        self.cuts: dict[tuple, tuple[list[float], list[float]]] = {}  # series cut to a width

    def follow(self, run_id: str | None) -> None:
        if run_id != self.run_id:
            self.run_id = run_id
            self.series = {}
            self.last_epoch = 0
            self.redraw()

    def extend(self, rows: tuple[tuple, ...]) -> None:
        """New epochs from the store: (epoch, train, val, lr, extra JSON); epochs it already has
        (a read that overlapped another) are skipped."""
        rows = tuple(r for r in rows if r[0] > self.last_epoch)
        if not rows:
            return
        for name, values in series_from(rows).items():
            xs, ys = self.series.setdefault(name, (array("d"), array("d")))
            for epoch in sorted(values):
                xs.append(epoch)
                ys.append(values[epoch])
        self.last_epoch = max(self.last_epoch, *(int(r[0]) for r in rows))
        self.redraw()

    def show_progress(self, progress: str) -> None:
        if progress != self.progress:
            self.progress = progress
            self.redraw()

    def set_reported(self, reported: dict[str, float]) -> None:
        if reported != self.reported:
            self.reported = dict(reported)
            self.redraw()

    def cycle_view(self, step: int) -> None:
        offered = views(list(self.series))
        at = offered.index(self.view) if self.view in offered else 0
        self.view = offered[(at + step) % len(offered)]
        self.redraw()

    def toggle_log(self) -> None:
        self.log_y = not self.log_y
        self.redraw()

    def redraw(self) -> None:
        """Mark the plot stale; it is rebuilt at the next render, when the size is known."""
        self._built_for = None
        if self.legend is not None:
            self.legend.update(self.legend_text())
        self.refresh()

    def shown_view(self) -> str:
        return self.view if self.view in views(list(self.series)) else LOSS

    def legend_text(self) -> Text:
        view = self.shown_view()
        text = Text()
        for piece, style in legend(curves_of(view, list(self.series))):
            text.append(piece, style=style)
        ref = reference(view, self.reported)
        if ref is not None:
            text.append("┄┄ ", style="bold")
            text.append(f"reported {ref[0]} {ref[1]:g}  ")
        offered = len(views(list(self.series)))
        text.append(f"m metric {views(list(self.series)).index(view) + 1}/{offered} · "
                    f"y log{' ✓' if self.log_y else ''}", style="dim")
        return text

    def render(self):  # noqa: ANN201 - the plotext widget's renderable
        key = (self.run_id, self.last_epoch, self.size.width, self.size.height, self.progress,
               self.view, self.log_y, tuple(sorted(self.reported.items())))
        if key != getattr(self, "_built_for", None):
            self._built_for = key
            self._build()
        return super().render()

    def _decimated(self, name: str, columns: int) -> tuple[list[float], list[float]]:
        """A series cut to the plot's width, kept until it grows or the width changes: a new
        title (the step progress, every 2 s) or another view redraws without cutting again."""
        xs, ys = self.series[name]
        key = (self.run_id, name, len(ys), columns)
        if key not in self.cuts:
            if len(self.cuts) > 16:
                self.cuts.clear()
            self.cuts[key] = decimate(xs, ys, columns)
        return self.cuts[key]

    def _build(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        view = self.shown_view()
        title = "no run yet · l launches one" if self.run_id is None else view.replace("_", " ")
        if self.run_id is not None and self.progress:
            title = self.progress if len(title) + 3 + len(self.progress) > self.size.width - 4 \
                else f"{title} · {self.progress}"
        # plotext drops a title wider than the plot, so a long one is cut to fit instead
        width = max(8, self.size.width - 4)  # plotext needs a few columns of margin
        plt.title(title if len(title) <= width else title[: width - 1] + "…")
        columns = max(self.size.width - 10, 10)
        drawn = False
        for name, (colour, mark, _) in zip(curves_of(view, list(self.series)), STYLES,
                                           strict=False):
            x, y = self._decimated(name, columns)
            if self.log_y:
                x, y = [a for a, b in zip(x, y, strict=True) if b > 0], [b for b in y if b > 0]
            if y:
                plt.plot(x, y, marker=mark, color=colour)
                drawn = True
        ref = reference(view, self.reported)
        if drawn and ref is not None and (ref[1] > 0 or not self.log_y):
            plt.hline(ref[1], color="gray")
        if drawn:
            if self.log_y:
                plt.yscale("log")
            plt.xlabel("epoch")


def chart_widgets() -> tuple[Static, LossChart]:
    """The legend line and the plot under it (app.tcss lays them out in #chart-pane)."""
    legend = Static("", id="legend")
    chart = LossChart(id="chart")
    chart.legend = legend
    return legend, chart
