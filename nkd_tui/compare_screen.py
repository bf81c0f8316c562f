"""The compare screen: marked runs side by side (metrics, loss curves, differing settings)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from core.util.files import atomic_write_text
from nkd_tui.chart import STYLES, decimate, legend
from nkd_tui.compare import Comparison, compare, fmt, param_text
from nkd_tui.format import fit_number, middle
from nkd_tui.messages import ComparisonRead, ReadsWhileLive, ReportsWorkerErrors

CURVE_POINTS = 200  # per run: the overlaid chart is small
RUN_WIDTH = 30  # run ids are shortened in the middle beyond this
TEXT_WIDTH = 24  # tags, note, experiment
KEY_WIDTH = 18  # setting names
CELL_WIDTH = 12  # setting values: the full value is on the line under the table


class CurvesPlot(PlotextPlot):
    """Validation loss of every compared run, overlaid: #1, #2 … as in the table, each in its
    own colour and mark (named on the line above the plot, never over the curves)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.curves: dict[str, list[tuple[int, float | None, float | None]]] = {}

    def render(self):  # noqa: ANN201 - Textual's render type
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("val loss")
        for points, (colour, mark, _) in zip(self.curves.values(),
                                             STYLES * len(self.curves), strict=False):
            pts = [(e, v) for e, _t, v in points if v is not None]
            if not pts:
                continue
            xs, ys = decimate([p[0] for p in pts], [p[1] for p in pts], CURVE_POINTS)
            plt.plot(xs, ys, marker=mark, color=colour)
        return super().render()


class CompareScreen(ReadsWhileLive, ReportsWorkerErrors, Screen[None]):
    """Live: while a compared run is still going the comparison is read again every second, so
    its epochs, metrics and curves keep up with the run table behind it."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back", id="compare.back"),
        Binding("o", "sort(1)", "Sort", id="compare.sort"),
        Binding("O", "sort(-1)", "Sort back", id="compare.sort_back"),
        Binding("e", "export", "Export CSV", id="compare.export"),
        Binding("C", "clear_marks", "Clear marks", id="compare.clear_marks"),
    ]

    def __init__(
        self, db_path: Path, run_ids: list[str], export_dir: Path, clock=time.time,
        poll: bool = True,
    ) -> None:
        super().__init__()
        self.db_path = db_path
        self.run_ids = run_ids
        self.export_dir = export_dir
        self.clock = clock
        self.poll = poll
        self.comparison: Comparison | None = None
        self.sort_column = 0
        self.reverse = False
        self.reads = 0  # how many times the comparison was read (the first, then live ones)

    def compose(self) -> ComposeResult:
        yield Static(f"comparing {len(self.run_ids)} runs", id="compare-title")
        yield DataTable(id="compare-metrics", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="compare-bottom"):
            with Vertical(id="compare-left"):
                yield Static("", id="compare-legend")
                yield CurvesPlot(id="compare-curves")
            with Vertical(id="compare-right"):
                yield DataTable(id="compare-params", cursor_type="row")
                yield Static("", id="compare-value")
        yield Footer()

    def live(self) -> bool:
        return self.comparison is not None and self.comparison.active

    @work(thread=True, exclusive=True, group="compare", name="compare", exit_on_error=False)
    def _load(self) -> None:
        from core.store import Store

        store = Store(self.db_path)
        try:
            result = compare(store, self.run_ids)
        finally:
            store.close()
        self.post_message(ComparisonRead(result))

    def on_comparison_read(self, message: ComparisonRead) -> None:
        self._show(message.comparison)

    def _show(self, result: Comparison) -> None:
        self.reads += 1
        if result == self.comparison:
            return
        self.comparison = result
        differ = sum(1 for _k, _v, d in result.params if d)
        live = " · live" if result.active else ""
        made = "".join(f" · {k} differs" for k, _v, d in result.made if d)
        self.query_one("#compare-title", Static).update(
            f"{len(result.run_ids)} runs{live} · {differ} of {len(result.params)} settings "
            f"differ{made} · o/O sort · e CSV · C unmark · esc"
        )
        self._fill_metrics()
        self._fill_params()
        curves = self.query_one(CurvesPlot)
        curves.curves = {f"#{i + 1}": result.curves[r] for i, r in enumerate(result.run_ids)}
        curves.refresh()
        legend_line = Text.assemble(*legend(list(curves.curves)))
        self.query_one("#compare-legend", Static).update(legend_line)

    def _fill_params(self) -> None:
        """Narrow cells (#1, #2 … as in the table above); the highlighted setting's full values
        on the line under them."""
        result = self.comparison
        assert result is not None
        params = self.query_one("#compare-params", DataTable)
        row = params.cursor_row
        params.clear(columns=True)
        params.add_column("setting", key="setting")
        for i, run_id in enumerate(result.run_ids):
            params.add_column(f"#{i + 1}", key=run_id)
        rows = self._rows()
        for i, (key, values, differs) in enumerate(rows):
            style = "bold yellow" if differs else "dim"
            made = i < len(result.made)  # what made the runs: code, data, environment
            params.add_row(
                Text(middle(key, KEY_WIDTH), style=style + (" italic" if made else "")),
                *[Text(fit_number(param_text(v), CELL_WIDTH), style=style) for v in values],
                key=f"made:{key}" if made else key,
            )
        if rows:
            params.move_cursor(row=min(row, len(rows) - 1), animate=False)
            self._show_value(min(row, len(rows) - 1))

    def _rows(self) -> list[tuple[str, list[Any], bool]]:
        """What made the runs (code, data, environment: differences first), then settings."""
        result = self.comparison
        return [] if result is None else [*result.made, *result.params]

    @on(DataTable.RowHighlighted, "#compare-params")
    def _param_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_value(event.cursor_row)

    def _show_value(self, index: int) -> None:
        rows = self._rows()
        if not 0 <= index < len(rows):
            return
        key, values, _ = rows[index]
        text = Text(f"{key}: ", style="bold")
        for i, value in enumerate(values):
            text.append(f"#{i + 1} ", style="dim")
            text.append(param_text(value) + ("  " if i + 1 < len(values) else ""))
        self.query_one("#compare-value", Static).update(text)

    def _fill_metrics(self) -> None:
        result = self.comparison
        if result is None:
            return
        table = self.query_one("#compare-metrics", DataTable)
        row = table.cursor_row
        table.clear(columns=True)
        column = result.columns[self.sort_column]
        for name in result.columns:
            mark = (" ▼" if self.reverse else " ▲") if name == column else ""
            table.add_column(name + mark, key=name)
        number = {run_id: i + 1 for i, run_id in enumerate(result.run_ids)}
        for values in result.sorted_rows(column, self.reverse):
            cells: list[str | Text] = []
            for name, value in zip(result.columns, values, strict=True):
                if name == "run":
                    cells.append(f"#{number[value]} {middle(value, RUN_WIDTH)}")
                elif name in ("tags", "note", "experiment"):
                    cells.append(middle(fmt(value), TEXT_WIDTH))
                else:
                    cells.append(fmt(value, signed=name.startswith("Δ")))
            table.add_row(*cells, key=values[0])
        table.move_cursor(row=min(row, max(0, table.row_count - 1)), animate=False)

    def action_sort(self, step: int) -> None:
        if self.comparison is None:
            return
        n = len(self.comparison.columns)
        if step < 0:
            self.reverse = not self.reverse
        else:
            self.sort_column = (self.sort_column + 1) % n
            self.reverse = False
        self._fill_metrics()

    def action_clear_marks(self) -> None:
        """Unmark every run and go back: the next compare starts from nothing."""
        self.app.action_clear_marks()
        self.app.pop_screen()

    def action_export(self) -> None:
        if self.comparison is None:
            return
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(self.clock()))
        path = self.export_dir / f"compare_{stamp}.csv"
        atomic_write_text(path, self.comparison.to_csv())
        self.notify(f"wrote {path}")
