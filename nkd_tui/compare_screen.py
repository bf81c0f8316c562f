"""The compare screen: marked runs side by side (metrics, loss curves, differing settings)."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from core.workspace import atomic_write_text
from nkd_tui.chart import decimate
from nkd_tui.compare import Comparison, compare, fmt, param_text

CURVE_POINTS = 200  # per run: the overlaid chart is small


class CurvesPlot(PlotextPlot):
    """Validation loss of every compared run, overlaid, one colour each."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.curves: dict[str, list[tuple[int, float | None, float | None]]] = {}

    def render(self):  # noqa: ANN201 - Textual's render type
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("val loss")
        for run_id, points in self.curves.items():
            pts = [(e, v) for e, _t, v in points if v is not None]
            if not pts:
                continue
            xs, ys = decimate([p[0] for p in pts], [p[1] for p in pts], CURVE_POINTS)
            plt.plot(xs, ys, label=run_id[:28], marker="braille")
        return super().render()


class CompareScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back", id="compare.back"),
        Binding("o", "sort(1)", "Sort", id="compare.sort"),
        Binding("O", "sort(-1)", "Sort back", id="compare.sort_back"),
        Binding("e", "export", "Export CSV", id="compare.export"),
    ]

    def __init__(
        self, db_path: Path, run_ids: list[str], export_dir: Path, clock=time.time
    ) -> None:
        super().__init__()
        self.db_path = db_path
        self.run_ids = run_ids
        self.export_dir = export_dir
        self.clock = clock
        self.comparison: Comparison | None = None
        self.sort_column = 0
        self.reverse = False

    def compose(self) -> ComposeResult:
        yield Static(f"comparing {len(self.run_ids)} runs", id="compare-title")
        yield DataTable(id="compare-metrics", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="compare-bottom"):
            yield CurvesPlot(id="compare-curves")
            yield DataTable(id="compare-params", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exit_on_error=False)
    def _load(self) -> None:
        from core.store import Store

        store = Store(self.db_path)
        try:
            result = compare(store, self.run_ids)
        except Exception as exc:  # a message, never a crash of the whole interface
            self.app.call_from_thread(self.notify, f"compare: {exc}", severity="error")
            return
        finally:
            store.close()
        self.app.call_from_thread(self._show, result)

    def _show(self, result: Comparison) -> None:
        self.comparison = result
        differ = sum(1 for _k, _v, d in result.params if d)
        self.query_one("#compare-title", Static).update(
            f"comparing {len(result.run_ids)} runs · {differ} settings differ, "
            f"{len(result.params) - differ} the same · o/O sort · e export CSV · esc back"
        )
        self._fill_metrics()
        params = self.query_one("#compare-params", DataTable)
        params.clear(columns=True)
        params.add_column("setting", key="setting")
        for i, run_id in enumerate(result.run_ids):
            params.add_column(f"#{i + 1} {run_id}", key=run_id)
        for key, values, differs in result.params:
            style = "bold yellow" if differs else "dim"
            params.add_row(
                Text(key, style=style), *[Text(param_text(v), style=style) for v in values]
            )
        curves = self.query_one(CurvesPlot)
        curves.curves = result.curves
        curves.refresh()

    def _fill_metrics(self) -> None:
        result = self.comparison
        if result is None:
            return
        table = self.query_one("#compare-metrics", DataTable)
        table.clear(columns=True)
        column = result.columns[self.sort_column]
        for name in result.columns:
            mark = (" ▼" if self.reverse else " ▲") if name == column else ""
            table.add_column(name + mark, key=name)
        for row in result.sorted_rows(column, self.reverse):
            cells = []
            for name, value in zip(result.columns, row, strict=True):
                cells.append(fmt(value, signed=name == "Δ vs parent"))
            table.add_row(*cells, key=row[0])

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

    def action_export(self) -> None:
        if self.comparison is None:
            return
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(self.clock()))
        path = self.export_dir / f"compare_{stamp}.csv"
        atomic_write_text(path, self.comparison.to_csv())
        self.notify(f"wrote {path}")
