"""The results screen (`o` on a run): what its evaluation kept. For a separator, tracks × stems
worst first with their SDR, global SDR and a per-second SDR sparkline; the highlighted track and
stem's mixture, reference and estimate as spectrograms side by side. For a noise classifier, the
confusion matrix as a heat map with per-class precision and recall, and the most confidently
misclassified clips. `s` switches between the splits it kept (test, val)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from core.results.table import num_text, separation_rows, signals_of, sparkline
from nkd_tui.messages import ReportsWorkerErrors, ResultsRead
from nkd_tui.spectro import PALETTE, Spectrogram, legend


class ResultsScreen(ReportsWorkerErrors, Screen[None]):
    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back", id="results.back"),
        Binding("s", "split", "Next split", id="results.split"),
    ]

    def __init__(self, run_dir: Path, run_id: str) -> None:
        super().__init__()
        self.run_dir, self.run_id = run_dir, run_id
        self.results: list[Any] = []
        self.index = 0  # which split is shown
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static(f"results of {self.run_id}", id="results-title")
        with Vertical(id="results-body"):
            yield DataTable(id="results-table", cursor_type="row", zebra_stripes=True)
            yield Horizontal(id="results-panels")
            yield Static("", id="results-legend")
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, name="results", exit_on_error=False)
    def _load(self) -> None:
        from core.errors import NkdError
        from core.results.kept import load

        try:
            self.post_message(ResultsRead(load(self.run_dir)))
        except NkdError as exc:
            self.post_message(ResultsRead([], str(exc)))

    def on_results_read(self, message: ResultsRead) -> None:
        self.results = message.results
        if message.error or not self.results:
            why = message.error or (f"{self.run_id} kept no results: only an evaluation (or a "
                                    f"run's final validation) of a separator or a classifier "
                                    f"keeps them")
            self.query_one("#results-title", Static).update(Text(why, style="yellow"))
            return
        self._show()

    def action_split(self) -> None:
        if len(self.results) > 1:
            self.index = (self.index + 1) % len(self.results)
            self._show()

    def _show(self) -> None:
        current = self.results[self.index]
        title = Text(f"results of {self.run_id} · {current.doc['kind']} · split ")
        for i, r in enumerate(self.results):  # the shown split in bold: the names are text
            title.append(f"{r.split} ", style="bold reverse" if i == self.index else "")
        title.append("· s next split · esc back")
        self.query_one("#results-title", Static).update(title)
        table = self.query_one("#results-table", DataTable)
        table.clear(columns=True)
        if current.kind == "separation":
            self._separation(table, current.doc)
        else:
            self._noise(table, current.doc)

    def _separation(self, table: DataTable, doc: dict[str, Any]) -> None:
        self.rows = separation_rows(doc)
        for name in ("track", "stem", "SDR", "global", "per second (−10…20 dB)", "kept"):
            table.add_column(name)
        for r in self.rows:
            table.add_row(r["track"][:24], r["stem"][:8], num_text(r["sdr"]),
                          num_text(r["sdr_global"]), sparkline(r["frames"], 24), r["kept"] or "")
        self.query_one("#results-legend", Static).update(legend())
        if self.rows:
            table.move_cursor(row=0)
            self._panels(0)

    @on(DataTable.RowHighlighted, "#results-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.results and self.results[self.index].kind == "separation":
            self._panels(event.cursor_row)

    def _panels(self, index: int) -> None:
        from core.errors import NkdError
        from core.results.kept import read_spectrogram

        if not 0 <= index < len(self.rows):
            return
        row, current = self.rows[index], self.results[self.index]
        found = signals_of(current.doc, row["track"], row["stem"])
        panels = self.query_one("#results-panels", Horizontal)
        panels.remove_children()
        widgets = []
        for role in ("mixture", "reference", "estimate"):
            title = f"{role}" + (f" {row['stem']}" if role != "mixture" else "") + \
                (f" · {row['track']}" if role == "mixture" else "")
            spec, note = None, "not kept: only the worst, median and best tracks keep audio"
            if role in found:
                try:
                    spec = read_spectrogram(current.path(found[role]["spectrogram"]))
                except NkdError as exc:
                    note = str(exc)
            widgets.append(Spectrogram(title, spec, note))
        panels.mount_all(widgets)

    def _noise(self, table: DataTable, doc: dict[str, Any]) -> None:
        names, matrix = doc["classes"], doc["confusion"]
        table.add_column("true \\ predicted")
        for n in names:
            table.add_column(n[:8])
        table.add_column("precision")
        table.add_column("recall")
        top = max([max(r) for r in matrix] or [1]) or 1
        for n, r, p, rec in zip(names, matrix, doc["precision"], doc["recall"], strict=True):
            cells = [Text(f"{v:>5}", style=f"on {PALETTE[min(9, int(v / top * 9))]}"
                          + (" bold" if i == names.index(n) else ""))
                     for i, v in enumerate(r)]
            table.add_row(n[:16], *cells, num_text(p), num_text(rec))
        wrong = doc.get("misclassified") or []
        lines = Text(f"{doc['clips']} clips · most confidently misclassified:\n" if wrong
                     else f"{doc['clips']} clips · none misclassified", style="bold")
        for item in wrong[:8]:
            lines.append(f"{item['clip'][:40]}  {item['true']} → {item['predicted']} "
                         f"({item['confidence']:.2f})\n", style="")
        panels = self.query_one("#results-panels", Horizontal)
        panels.remove_children()
        panels.mount(Static(lines, id="results-wrong"))
        self.query_one("#results-legend", Static).update(
            "cells: clips; brighter is more (the diagonal is right)")
