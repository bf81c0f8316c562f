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

from nkd_tui.format import fmt_num, settings_text, status_text
from nkd_tui.messages import ReadsWhileLive, ReportsWorkerErrors, SweepRead
from nkd_tui.parallel import ParallelChart, axes_and_lines


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
        spec = summary.halving
        title = f"sweep {summary.sweep} · {summary.experiment} · {len(summary.trials)} trials"
        if spec:
            title += (f" · halving by {spec['metric']} ({spec['mode']}), rungs "
                      f"{list(spec['rungs'])}, keep {spec['keep']:g}")
        if summary.paused:
            title += " · paused (nkd sweep resume)"
        self.query_one("#sweep-title", Static).update(title + " · esc back")
        self._fill_table()
        best = summary.best()
        line = Text("best so far: ", style="bold")
        if best is None:
            line.append(f"no {summary.metric} yet", style="dim")
        else:
            run_id, rung, value = best
            line.append(f"{run_id}  {summary.metric} {value:.4g}"
                        + (f" at rung {rung}" if rung is not None else ""))
        self.query_one("#sweep-best", Static).update(line)
        self.query_one(ParallelChart).show(summary)
        axes, _lines = axes_and_lines(summary)
        legend = Text("  ".join(a.text() for a in axes), style="dim")
        legend.append("   green: best third · orange: middle · red: worst · grey: none yet")
        self.query_one("#sweep-axes", Static).update(legend)

    def _fill_table(self) -> None:
        summary = self.summary
        table = self.query_one("#sweep-table", DataTable)
        rungs = list(summary.halving["rungs"]) if summary.halving else []
        table.clear(columns=True)
        table.add_columns("TRIAL", "SETTINGS", *(f"RUNG {r}" for r in rungs),
                          *([] if rungs else [summary.metric.upper()]), "EPOCH", "STATUS")
        best = summary.best()
        for t in summary.trials:
            name = Text(t.run_id, style="bold green" if best and best[0] == t.run_id else "")
            table.add_row(name, settings_text(t.settings, summary.swept),
                          *(fmt_num(t.at_rungs.get(r)) for r in rungs),
                          *([] if rungs else [fmt_num(t.best_value)]),
                          f"{t.epoch}/{t.epochs_total or '-'}", status_text(t.status),
                          key=t.run_id)
