"""The sweep view (`w` on a trial): the sweep's trials × rungs with the metric at each, the
settings that differ, promoted / pruned / running, the best so far, and a parallel-coordinates
chart of the settings against the metric. Read again every second while a trial is active."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from nkd_tui.format import best_trial_text, sweep_head, sweep_table
from nkd_tui.messages import ReadsWhileLive, ReportsWorkerErrors, SweepRead
from nkd_tui.parallel import ParallelChart


class SweepScreen(ReadsWhileLive, ReportsWorkerErrors, Screen[None]):
    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back", id="sweep.back")]

    def __init__(self, registry_path: Path, sweep: str, poll: bool = True) -> None:
        super().__init__()
        self.registry_path, self.sweep, self.poll = registry_path, sweep, poll
        self.summary = None

    def compose(self) -> ComposeResult:
        yield Static(f"sweep {self.sweep}", id="sweep-title")
        yield DataTable(id="sweep-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="sweep-best")
        yield ParallelChart(id="sweep-chart")
        yield Static("", id="sweep-axes")
        yield Footer()

    def live(self) -> bool:
        from core.store.states import ACTIVE

        return self.summary is not None and any(t.status in ACTIVE for t in self.summary.trials)

    @work(thread=True, exclusive=True, group="sweep", name="sweep", exit_on_error=False)
    def _load(self) -> None:
        from core.errors import NkdError
        from core.registry.workspace import Workspace
        from core.runs.sweep_summary import sweep_summary
        from core.store import Store

        ws = Workspace.at(self.registry_path)
        store = Store(ws.db_path)
        try:
            self.post_message(SweepRead(sweep_summary(store, ws, self.sweep)))
        except NkdError as exc:
            self.post_message(SweepRead(None, str(exc)))
        finally:
            store.close()

    def on_sweep_read(self, message: SweepRead) -> None:
        if message.error:
            self.query_one("#sweep-title", Static).update(Text(message.error, style="yellow"))
            return
        if message.summary == self.summary:
            return
        self.summary = summary = message.summary
        self.query_one("#sweep-title", Static).update(f"{sweep_head(summary)} · esc back")
        best = summary.best()
        self._fill_table(best[0] if best else None)
        line = Text("best so far: ", style="bold")
        said = best_trial_text(summary, best)
        line.append(said or f"no {summary.metric} yet", style="" if said else "dim")
        self.query_one("#sweep-best", Static).update(line)
        axes = self.query_one(ParallelChart).show(summary)
        legend = Text("  ".join(a.text() for a in axes), style="dim")
        legend.append("   green: best third · orange: middle · red: worst · grey: none yet")
        self.query_one("#sweep-axes", Static).update(legend)

    def _fill_table(self, best: str | None) -> None:
        header, rows = sweep_table(self.summary)
        table = self.query_one("#sweep-table", DataTable)
        table.clear(columns=True)
        table.add_columns(*header)
        for run_id, *cells in rows:  # the best trial's name in green
            table.add_row(Text(run_id, style="bold green" if run_id == best else ""), *cells,
                          key=run_id)
