"""The nkd Textual app: experiments, their runs, the highlighted run's live loss and log."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, Static, Tree

from core.registry import Registry, load_registry
from core.registry.workspace import Workspace
from core.store.states import ended_badly
from nkd_tui.experiment_tree import ExperimentTree
from nkd_tui.format import CAVEAT_MARK
from nkd_tui.gpu_panel import GpuPanel
from nkd_tui.log_pane import LogPane
from nkd_tui.messages import Polled, ReportsWorkerErrors
from nkd_tui.poll import Poller, Snapshot
from nkd_tui.run_actions import RunActions
from nkd_tui.run_table import RunTable
from nkd_tui.tree_actions import TreeActions

MIN_SIZE = (80, 24)  # below this the TUI shows one line saying so instead of a clipped layout
POLL_S = 1.0  # bounded refresh: one store read a second, redraws only for what changed
PREFETCH_WAIT_S = 0.25  # how long the first paint waits for the prefetched snapshot
FIRST_ROWS = 200  # the first paint reads this many runs; the rest come with the next read
WIDE = 120  # from this width the chart and the log sit side by side; below, the log is under it


class NkdApp(ReportsWorkerErrors, RunActions, TreeActions, App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "nkd"
    # The footer shows these in order, and a narrow terminal cuts it from the right: quit and
    # help first, so they are always there; the rarer keys are in the help (?) only.
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("l", "launch", "Launch", id="run.launch"),
        Binding("p", "control('pause')", "Pause", id="run.pause"),
        Binding("r", "control('resume')", "Resume", id="run.resume"),
        Binding("s", "stop", "Stop", id="run.stop"),
        Binding("space", "mark", "Mark", id="run.mark"),
        Binding("c", "compare", "Compare", id="run.compare"),
        Binding("L", "lineage", "Lineage", id="run.lineage"),
        Binding("o", "results", "Results", id="run.results", show=False),
        Binding("u", "control('suspend')", "Suspend", id="run.suspend", show=False),
        Binding("K", "kill", "Kill", id="run.kill", show=False),
        Binding("R", "control('restart')", "Restart", id="run.restart", show=False),
        Binding("g", "gpus", "GPUs", id="app.gpus", show=False),
        Binding("x", "queue('cancel')", "Cancel queued", id="queue.cancel", show=False),
        Binding("T", "queue('top')", "Queue top", id="queue.top", show=False),
        Binding("C", "clear_marks", "Clear marks", id="run.clear_marks", show=False),
        Binding("m", "metric(1)", "Metric", id="chart.metric", show=False),
        Binding("M", "metric(-1)", "Metric back", id="chart.metric_back", show=False),
        Binding("y", "log_y", "Log y", id="chart.log_y", show=False),
        Binding("t", "tags", "Tags", id="run.tags", show=False),
        Binding("n", "note", "Note", id="run.note", show=False),
        Binding("a", "archive", "Archive", id="run.archive", show=False),
        Binding("A", "show_archived", "Show archived", id="app.show_archived", show=False),
        Binding("S", "compare_sweep", "Compare sweep", id="run.compare_sweep", show=False),
        Binding("w", "sweep", "Sweep", id="run.sweep", show=False),
        Binding("v", "log", "View log", id="run.log", show=False),
        # priority: checked before the key goes to the focused widget, so the keys typed right
        # after it (tmux send-keys, a paste) already find the filter box focused
        Binding("slash", "filter", "Filter", id="app.filter", show=False, priority=True),
    ]

    def __init__(
        self, registry: Registry, workspace: Workspace, clock: Callable[[], float] = time.time,
        poll: bool = True, message: str | None = None,
    ) -> None:
        super().__init__()
        self.message = message
        self.registry = registry
        self.workspace = workspace
        self.poller = Poller(workspace, clock)
        self.poll_enabled = poll
        self._disk_said = ""  # the low-disk warning last told
        self.experiment: str | None = None
        self.run_id: str | None = None  # the highlighted run, followed by chart and log
        self.marked: list[str] = []  # runs marked for the compare screen, in marking order
        self._log_text = ""
        self._latest: dict[str, str] | None = None  # each experiment's latest status
        self._summaries: dict[str, tuple[int, float | None]] = {}  # live runs, best score
        self._sizes: dict[str, int] = {}  # each experiment's bytes on disk
        self._adhoc: dict[str, tuple[str, str | None, str]] = {}  # evaluations, blends
        self.poller.known = set(registry.experiments)
        self._chart = None  # the LossChart, once mounted (just after the first paint)
        self._reported: dict[str, float] = {}  # the experiment's reported values, for the chart
        self._early: Snapshot | None = None  # read before the chart was mounted
        # The first snapshot is read while Textual starts, so the first paint has the run table.
        self._prefetched: list[Snapshot] = []
        self._prefetch = threading.Thread(target=self._read_first, daemon=True)
        self._prefetch.start()

    def _read_first(self) -> None:
        first = next(iter(self.registry.groups().values()), [None])[0]
        focus = self.poller.store.focus_experiment()
        experiment = focus if focus in self.registry.experiments else first
        self._prefetched.append(self.poller.snapshot(experiment, None, 0, False,
                                                     limit=FIRST_ROWS))

    def compose(self) -> ComposeResult:
        yield Static("", id="too-small")
        # the layout class for the size the terminal has now: set later, it would restyle every
        # widget once more before the first paint
        with Horizontal(id="main", classes="-narrow" if self.size.width < WIDE else ""):
            yield Input(placeholder="filter experiments (enter keeps it, esc clears)",
                        id="filter")
            with Vertical(id="left"):
                yield ExperimentTree("experiments", id="experiments")
                yield Static("", id="workspace")
            with Vertical(id="right"):
                yield Static("", id="about")
                yield RunTable(id="runs")
                yield Static("", id="run-notes")
                yield GpuPanel(id="gpus")
                with Horizontal(id="detail"):
                    # the chart (and plotext's import) comes just after the first paint
                    yield Vertical(id="chart-pane")
                    yield LogPane(id="log", highlight=False, auto_scroll=True)
        # the footer comes just after the first paint too: composed now, it would be composed
        # again for each change of focus and bindings before that paint (a third of its time)

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width, event.size.height)
        if self._latest is not None:  # names are shortened to the tree's new width
            self.call_after_refresh(self._update_tree, self._latest)

    def _fit(self, width: int, height: int) -> None:
        """Below 80×24 the layout cannot show what matters: say so instead of clipping. Below
        WIDE columns the log goes under the chart, so both keep the full width; the run table
        shows the columns that fit."""
        small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        self.set_class(small, "-too-small")
        self.query_one("#main").set_class(width < WIDE, "-narrow")
        if not small:
            tree_width = min(34, max(21, width * 24 // 100))  # as app.tcss sizes the tree
            self.query_one(RunTable).fit(width - tree_width - 1)
        if small:
            self.query_one("#too-small", Static).update(
                f"terminal too small: nkd needs {MIN_SIZE[0]}×{MIN_SIZE[1]}, this one is "
                f"{width}×{height}\n\nq quits; runs keep going")

    def on_mount(self) -> None:
        tree = self.query_one(Tree)
        tree.show_root = False
        tree.guide_depth = 2
        first_leaf = self._fill_tree("")
        self._fit(self.size.width, self.size.height)
        self._prefetch.join(PREFETCH_WAIT_S)
        prefetched = self._prefetched[0] if self._prefetched else None
        focus = prefetched.experiment if prefetched else (first_leaf and first_leaf.data)
        leaves = {leaf.data: leaf for branch in tree.root.children for leaf in branch.children}
        if focus in leaves:
            self.experiment = focus
            self._show_about(focus)
            self.call_after_refresh(tree.move_cursor, leaves[focus])  # lines exist after a refresh
        self.set_focus(tree)  # at once, before the first paint (the footer is composed once)
        if prefetched is not None:
            self._apply(prefetched)
        else:
            self.refresh_data()
        self.call_after_refresh(self._after_first_paint)
        if self.poll_enabled:
            self.set_interval(POLL_S, self.refresh_data)
        if self.message:
            self.notify(self.message.strip(), title="printed before nkd opened", timeout=30)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        """The tree narrowed to the matches; the right pane follows the experiment the cursor
        is on: the one shown before when it still matches, else the first match (never the
        chart and log of an experiment the tree no longer shows)."""
        first = self._fill_tree(event.value.strip())
        tree = self.query_one(Tree)
        leaves = {leaf.data: leaf for branch in tree.root.children for leaf in branch.children}
        target = leaves.get(self.experiment) or first
        if target is not None:
            self.call_after_refresh(tree.move_cursor, target)
        else:
            self._show_experiment(None)
        self.refresh_data()

    @on(Input.Submitted, "#filter")
    def _filter_kept(self, event: Input.Submitted) -> None:
        event.input.remove_class("-shown")
        event.input.display = False
        self.set_focus(self.query_one(Tree))

    def key_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("-shown"):
            box.value = ""
            box.remove_class("-shown")
            box.display = False
            self.set_focus(self.query_one(Tree))

    # ── polling ─────────────────────────────────────────────────────────────────────────────

    @property
    def chart(self):  # noqa: ANN201 - a LossChart, or None before it is mounted
        return self._chart

    async def _after_first_paint(self) -> None:
        """The footer, and the chart pane's legend and plot: importing plotext and drawing the
        plot would otherwise hold back the run table's first paint."""
        pane = self.query_one("#chart-pane")
        if not pane.is_attached:  # quit before the first paint was done
            return
        # a footer composes its keys when the screen says its bindings changed: said once more
        await self.mount(Footer())
        self.screen.refresh_bindings()
        from nkd_tui.run_chart import chart_widgets

        legend, chart = chart_widgets()
        pane.mount(legend, chart)
        chart.set_reported(self._reported)
        self._chart = chart
        if self._early is not None and self._early.run_id == self.run_id:
            self._chart_shows(self._early)  # what the first paint read, without a new read
        self._early = None

    def _chart_shows(self, snap: Snapshot) -> None:
        """The followed run's new epochs, unless they were read for another run: a read that
        started before the highlight moved holds epochs after the old run's last one."""
        chart = self.chart
        if chart.run_id == snap.run_id or not snap.new_epochs or snap.new_epochs[0][0] == 1:
            chart.follow(snap.run_id)
            chart.extend(snap.new_epochs)
            chart.show_progress(snap.progress)

    def refresh_data(self) -> None:
        chart = self.chart
        after = chart.last_epoch if chart is not None and chart.run_id == self.run_id else 0
        self._poll(self.experiment, self.run_id, after, self.query_one(GpuPanel).has_class(
            "-shown"))

    @work(thread=True, exclusive=True, group="poll", name="reading the store",
          exit_on_error=False)
    def _poll(self, experiment: str | None, run_id: str | None, after: int, gpus: bool) -> None:
        self.post_message(Polled(self.poller.snapshot(experiment, run_id, after, gpus=gpus)))

    def on_polled(self, message: Polled) -> None:
        self._apply(message.snapshot)

    def _apply(self, snap: Snapshot) -> None:
        if snap.experiment != self.experiment:
            return  # the user moved on while this was read
        with self.batch_update():
            if snap.adhoc != self._adhoc:  # an evaluation or blend made since: it joins the tree
                self._adhoc = snap.adhoc
                self._refill_tree()
            self._sizes = snap.sizes
            self._update_tree(snap.latest, snap.summaries)
            self._show_workspace(snap.free)
            table = self.query_one(RunTable)
            table.follow_run = self.run_id
            table.show_rows(snap.runs)
            self._show_run_notes()
            if self.run_id is None:
                self.run_id = snap.run_id
            if snap.run_id == self.run_id:
                if self.chart is None:
                    self._early = snap
                else:
                    self._chart_shows(snap)
                self._show_log(snap.log_tail)
            for run_id in snap.lost:
                self.notify(f"{run_id}: its worker vanished; shown as lost", severity="warning")
            for run_id, status in snap.ended:
                if run_id in snap.lost:
                    continue  # told above
                failed = ended_badly(status)
                self.notify(f"{run_id}: {status}", severity="error" if failed else "information")
            if snap.ended:
                self.bell()  # heard from another window too
            if snap.disk and snap.disk != self._disk_said:  # said once, again if it changes
                self.notify(snap.disk, severity="warning", timeout=30)
            self._disk_said = snap.disk
            if snap.gpus is not None:
                self.query_one(GpuPanel).show_reading(snap.gpus)
        if snap.partial and not self.poll_enabled:  # else the next poll reads them all
            self.refresh_data()

    def _show_log(self, tail: str) -> None:
        """The followed run's last lines, wrapped. While the reader has scrolled up the focused
        pane, a newer tail waits for the next poll, so the lines they read stay put."""
        if tail == self._log_text:
            return
        log = self.query_one(LogPane)
        if log.has_focus and not log.is_vertical_scroll_end:
            return
        self._log_text = tail
        log.show(tail)

    def _row(self, run_id: str | None):  # noqa: ANN202 - a RunRow or None
        return next((r for r in self.query_one(RunTable).rows_shown if r.run_id == run_id), None)

    def _show_run_notes(self) -> None:
        """The highlighted run's tags and note, on a line under the table (none without)."""
        row = self._row(self.run_id)
        box = self.query_one("#run-notes", Static)
        if row is None or not (row.tags or row.note or row.archived or row.caveat):
            box.remove_class("-shown")
            return
        text = Text(row.cells[0] + " ", style="bold")
        if row.archived:
            text.append("archived · ", style="dim")
        if row.caveat:
            text.append(f"{CAVEAT_MARK} {row.caveat}", style="yellow")
            text.append(" · " if row.tags or row.note else "")
        text.append(" ".join(f"#{t}" for t in row.tags), style="cyan")
        if row.note:
            text.append((" · " if row.tags else "") + row.note)
        box.update(text)
        box.add_class("-shown")

    def _show_about(self, name: str) -> None:
        """The line over the run table: the experiment, its description and what the
        researcher reported for it (the value new runs are judged against)."""
        exp = self.registry.experiments.get(name)
        if exp is None:  # an evaluation or blend made with `nkd eval` / `nkd blend`
            about = self._adhoc.get(name, ("", None, ""))[2]
            self.query_one("#about", Static).update(
                Text(name, style="bold").append(f" · {about}" if about else ""))
            return
        text = Text(name, style="bold")
        description = str(exp.params.get("description") or "").strip()
        if description:
            text.append(f" · {description}")
        if exp.reported:
            text.append(" · reported ", style="dim")
            text.append(", ".join(f"{k} {v:g}" if isinstance(v, int | float) else f"{k} {v}"
                                  for k, v in exp.reported.items()), style="bold")
        self.query_one("#about", Static).update(text)
        self._reported = {k: v for k, v in exp.reported.items() if isinstance(v, int | float)}
        if self.chart is not None:
            self.chart.set_reported(self._reported)

    # ── selection ───────────────────────────────────────────────────────────────────────────

    @on(Tree.NodeHighlighted, "#experiments")
    def _experiment_highlighted(self, event: Tree.NodeHighlighted) -> None:
        name = event.node.data
        if name and name != self.experiment:
            self._show_experiment(name)
            self.refresh_data()

    @on(DataTable.RowHighlighted, "#runs")
    def _run_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._follow_run(event.row_key.value if event.row_key else None)

    def _sync_run(self) -> str | None:
        """The run a key acts on: the row under the table's cursor while the table has focus.
        Keys typed quickly (down, then p) can arrive before the table's highlight message."""
        table = self.query_one(RunTable)
        if self.focused is table and table.row_count:  # (has_focus waits for a Focus event)
            self._follow_run(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        return self.run_id

    def _follow_run(self, run_id: str | None) -> None:
        if run_id and run_id != self.run_id:
            self.run_id = run_id
            if self.chart is not None:
                self.chart.follow(run_id)
            self._log_text = ""
            self._show_run_notes()
            self.refresh_data()

    @on(DataTable.RowSelected, "#runs")
    def _run_selected(self, event: DataTable.RowSelected) -> None:
        """enter on a run: its whole log."""
        if event.row_key and event.row_key.value:
            self.run_id = event.row_key.value
            self.action_log()

def make_app(
    registry_path: str | Path, clock: Callable[[], float] = time.time, poll: bool = True,
    message: str | None = None,
) -> NkdApp:
    """The app for one registry; raises RegistryError (one line) for a bad registry. A dumb
    terminal gets the monochrome rendering that NO_COLOR asks for."""
    registry = load_registry(registry_path)
    # Textual reads NO_COLOR while the app is built; set it for that moment only, so that
    # nothing else in this process (another app, a worker it starts) inherits it
    dumb = os.environ.get("TERM") == "dumb" and "NO_COLOR" not in os.environ
    if dumb:
        os.environ["NO_COLOR"] = "1"
    try:
        return NkdApp(registry, Workspace.at(registry.path), clock=clock, poll=poll,
                      message=message)
    finally:
        if dumb:
            del os.environ["NO_COLOR"]
