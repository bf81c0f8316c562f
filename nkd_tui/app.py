"""The nkd Textual app: experiments, their runs, the highlighted run's live loss and log."""

from __future__ import annotations

import os
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, Log, Static, Tree
from textual.widgets.tree import TreeNode
from textual_plotext import PlotextPlot

from core.errors import NkdError
from core.events import ACTIVE
from core.registry import Registry, load_registry
from core.workspace import Workspace
from nkd_tui.format import STATUS_SYMBOL, middle, status_text
from nkd_tui.gpu_panel import GpuPanel
from nkd_tui.poll import Poller, Snapshot

MIN_SIZE = (80, 24)  # below this the TUI shows one line saying so instead of a clipped layout
POLL_S = 1.0  # bounded refresh: one store read a second, redraws only for what changed
PREFETCH_WAIT_S = 0.25  # how long the first paint waits for the prefetched snapshot
RUN_HEADERS = ("run", "status", "epoch", "best val", "score", "started", "time", "device")
# fixed widths: a DataTable measures every cell of auto-width columns, which dominates start-up
RUN_WIDTHS = (17, 11, 9, 8, 6, 11, 8, 7)


class LossChart(PlotextPlot):
    """Train/val loss of one run; keeps the series and redraws decimated to the widget width."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run_id: str | None = None
        self.progress = ""  # "epoch 4/100 · step 120/480 · ETA 1:12:05" while the run trains
        # arrays of doubles: appends are cheap and numpy reads them without a copy
        self.epochs, self.train, self.val = array("d"), array("d"), array("d")

    def follow(self, run_id: str | None) -> None:
        if run_id != self.run_id:
            self.run_id = run_id
            self.epochs, self.train, self.val = array("d"), array("d"), array("d")
            self.redraw()

    def extend(self, rows: tuple[tuple[int, float | None, float | None], ...]) -> None:
        nan = float("nan")
        for epoch, train, val in rows:
            self.epochs.append(epoch)
            self.train.append(nan if train is None else train)
            self.val.append(nan if val is None else val)
        if rows:
            self.redraw()

    def show_progress(self, progress: str) -> None:
        if progress != self.progress:
            self.progress = progress
            self.redraw()

    def redraw(self) -> None:
        """Mark the plot stale; it is rebuilt at the next render, when the size is known."""
        self._built_for = None
        self.refresh()

    def render(self):  # noqa: ANN201 - the plotext widget's renderable
        key = (self.run_id, len(self.epochs), self.size.width, self.progress)
        if key != getattr(self, "_built_for", None):
            self._built_for = key
            self._build()
        return super().render()

    def _build(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        title = "no run yet · l launches one" if self.run_id is None else "train / val loss"
        if self.run_id is not None and self.progress:  # the legend already names the curves
            title = self.progress if len(title) + 3 + len(self.progress) > self.size.width - 4 \
                else f"{title} · {self.progress}"
        # plotext drops a title wider than the plot, so a long one is cut to fit instead
        width = max(8, self.size.width - 4)  # plotext needs a few columns of margin
        plt.title(title if len(title) <= width else title[: width - 1] + "…")
        if len(self.epochs):
            from nkd_tui.chart import decimate

            width = max(self.size.width - 10, 10)
            # without colour (NO_COLOR, TERM=dumb) the two curves differ by their marks
            marks = ("braille", "•") if self.app.no_color else ("braille", "braille")
            for (name, series), mark in zip((("train", self.train), ("val", self.val)), marks,
                                            strict=True):
                x, y = decimate(self.epochs, series, width)
                if y:
                    plt.plot(x, y, label=name, marker=mark)
            plt.xlabel("epoch")


class ExperimentTree(Tree):
    """The experiments tree; space marks the highlighted run (enter still folds a group)."""

    BINDINGS = [Binding("space", "app.mark", "Mark", show=False)]


class NkdApp(App[None]):
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
        Binding("u", "control('suspend')", "Suspend", id="run.suspend", show=False),
        Binding("K", "kill", "Kill", id="run.kill", show=False),
        Binding("R", "control('restart')", "Restart", id="run.restart", show=False),
        Binding("g", "gpus", "GPUs", id="app.gpus", show=False),
        Binding("x", "queue('cancel')", "Cancel queued", id="queue.cancel", show=False),
        Binding("t", "queue('top')", "Queue top", id="queue.top", show=False),
        Binding("S", "compare_sweep", "Compare sweep", id="run.compare_sweep", show=False),
        Binding("v", "log", "View log", id="run.log", show=False),
        Binding("slash", "filter", "Filter", id="app.filter", show=False),
    ]

    def __init__(
        self, registry: Registry, workspace: Workspace, clock: Callable[[], float] = time.time,
        poll: bool = True,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.workspace = workspace
        self.poller = Poller(workspace, clock)
        self.poll_enabled = poll
        self.experiment: str | None = None
        self.run_id: str | None = None  # the highlighted run, followed by chart and log
        self.marked: list[str] = []  # runs marked for the compare screen, in marking order
        self._rows: tuple = ()
        self._table_generation = 0
        self._log_text = ""
        self._latest: dict[str, str] | None = None  # each experiment's latest status
        self._summaries: dict[str, tuple[int, float | None]] = {}  # live runs, best score
        # The first snapshot is read while Textual starts, so the first paint has the run table.
        self._prefetched: list[Snapshot] = []
        self._prefetch = threading.Thread(target=self._read_first, daemon=True)
        self._prefetch.start()

    def _read_first(self) -> None:
        first = next(iter(self.registry.groups().values()), [None])[0]
        focus = self.poller.store.focus_experiment()
        experiment = focus if focus in self.registry.experiments else first
        self._prefetched.append(self.poller.snapshot(experiment, None, 0, False))

    def compose(self) -> ComposeResult:
        yield Static("", id="too-small")
        with Horizontal(id="main"):
            yield Input(placeholder="filter experiments (enter keeps it, esc clears)",
                        id="filter")
            yield ExperimentTree("experiments", id="experiments")
            with Vertical(id="right"):
                yield DataTable(id="runs", cursor_type="row", zebra_stripes=False)
                yield GpuPanel(id="gpus")
                with Horizontal(id="detail"):
                    yield LossChart(id="chart")
                    yield Log(id="log", highlight=False, auto_scroll=True)
        yield Footer()

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width, event.size.height)
        if self._latest is not None:  # names are shortened to the tree's new width
            self.call_after_refresh(self._update_tree, self._latest)

    def _fit(self, width: int, height: int) -> None:
        """Below 80×24 the layout cannot show what matters: say so instead of clipping."""
        small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        self.set_class(small, "-too-small")
        if small:
            self.query_one("#too-small", Static).update(
                f"terminal too small: nkd needs {MIN_SIZE[0]}×{MIN_SIZE[1]}, this one is "
                f"{width}×{height}\n\nq quits; runs keep going")

    def on_mount(self) -> None:
        self._fit(self.size.width, self.size.height)
        tree = self.query_one(Tree)
        tree.show_root = False
        tree.guide_depth = 2
        first_leaf = self._fill_tree("")
        table = self.query_one(DataTable)
        for header, width in zip(RUN_HEADERS, RUN_WIDTHS, strict=True):
            table.add_column(header, key=header, width=width)
        self._prefetch.join(PREFETCH_WAIT_S)
        prefetched = self._prefetched[0] if self._prefetched else None
        focus = prefetched.experiment if prefetched else (first_leaf and first_leaf.data)
        leaves = {leaf.data: leaf for branch in tree.root.children for leaf in branch.children}
        if focus in leaves:
            self.experiment = focus
            self.call_after_refresh(tree.move_cursor, leaves[focus])  # lines exist after a refresh
        tree.focus()
        if prefetched is not None:
            self._apply(prefetched)
        else:
            self.refresh_data()
        if self.poll_enabled:
            self.set_interval(POLL_S, self.refresh_data)

    def _fill_tree(self, text: str) -> TreeNode | None:
        """The experiments whose names contain `text` (all for ""), by group in the registry's
        order; returns the first leaf."""
        tree = self.query_one(Tree)
        tree.clear()
        first_leaf: TreeNode | None = None
        for group, names in self.registry.groups().items():
            shown = [n for n in names if text.lower() in n.lower()]
            if not shown:
                continue
            branch = tree.root.add(group, expand=True, data=None)
            for name in shown:
                leaf = branch.add_leaf(name, data=name)
                first_leaf = first_leaf or leaf
        if self._latest is not None:
            self._update_tree(self._latest)
        return first_leaf

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._fill_tree(event.value.strip())

    @on(Input.Submitted, "#filter")
    def _filter_kept(self, event: Input.Submitted) -> None:
        event.input.remove_class("-shown")
        self.query_one(Tree).focus()

    def key_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("-shown"):
            box.value = ""
            box.remove_class("-shown")
            self.query_one(Tree).focus()

    # ── polling ─────────────────────────────────────────────────────────────────────────────

    def refresh_data(self) -> None:
        chart = self.query_one(LossChart)
        after = int(chart.epochs[-1]) if chart.run_id == self.run_id and len(chart.epochs) else 0
        self._poll(self.experiment, self.run_id, after, self.query_one(GpuPanel).has_class(
            "-shown"))

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll(self, experiment: str | None, run_id: str | None, after: int, gpus: bool) -> None:
        snap = self.poller.snapshot(experiment, run_id, after, gpus=gpus)
        self.call_from_thread(self._apply, snap)

    def _apply(self, snap: Snapshot) -> None:
        if snap.experiment != self.experiment:
            return  # the user moved on while this was read
        with self.batch_update():
            self._update_tree(snap.latest, snap.summaries)
            self._update_table(snap)
            if self.run_id is None:
                self.run_id = snap.run_id
            if snap.run_id == self.run_id:
                chart = self.query_one(LossChart)
                chart.follow(self.run_id)
                chart.extend(snap.new_epochs)
                chart.show_progress(snap.progress)
                if snap.log_tail != self._log_text:
                    self._log_text = snap.log_tail
                    log = self.query_one(Log)
                    log.clear()
                    log.write(snap.log_tail)
            for run_id in snap.lost:
                self.notify(f"{run_id}: its worker vanished; shown as lost", severity="warning")
            for run_id, status in snap.ended:
                if run_id in snap.lost:
                    continue  # told above
                failed = status in ("failed", "killed", "lost", "blocked")
                self.notify(f"{run_id}: {status}", severity="error" if failed else "information")
            if snap.ended:
                self.bell()  # heard from another window too
            if snap.gpus is not None:
                self.query_one(GpuPanel).show_reading(snap.gpus)

    def _update_tree(
        self, latest: dict[str, str], summaries: dict[str, tuple[int, float | None]] | None = None
    ) -> None:
        """Each experiment: its latest run's status, or `▶N` while N of its runs are live (an
        older run may be running while a newer one finished), and its best score so far."""
        self._latest = latest
        self._summaries = summaries = summaries if summaries is not None else self._summaries
        tree = self.query_one(Tree)
        budget = max(8, tree.size.width - 6)  # guide, status symbol, scrollbar
        for branch in tree.root.children:
            for leaf in branch.children:
                status = latest.get(leaf.data)
                live, best = summaries.get(leaf.data, (0, None))
                symbol = f"▶{live}" if live > 1 or (live and status not in ACTIVE) \
                    else STATUS_SYMBOL.get(status or "", " ")
                score = f" {best:.3g}" if best is not None else ""
                name = middle(leaf.data, max(5, budget - len(score) - len(symbol) + 1))
                label = name if status is None else f"{symbol} {name}{score}"
                if str(leaf.label) != label:
                    leaf.set_label(label)

    def _update_table(self, snap: Snapshot) -> None:
        table = self.query_one(DataTable)
        if snap.runs == self._rows:
            return
        keys = [r.run_id for r in snap.runs]
        if [r.run_id for r in self._rows] == keys:
            for old, new in zip(self._rows, snap.runs, strict=True):
                for header, a, b in zip(RUN_HEADERS, old.cells, new.cells, strict=True):
                    if a != b:
                        table.update_cell(new.run_id, header, self._cell(header, b, new.run_id))
        else:
            # A DataTable measures every cell it is given: rows that fill the screen go in now,
            # the rest just after this paint (dropped if a newer snapshot replaced them).
            table.clear()
            self._table_generation += 1
            first = max(self.size.height, 24)  # never more rows than the terminal shows
            self._add_rows(snap.runs[:first], self._table_generation)
            if len(snap.runs) > first:
                self.call_after_refresh(
                    self._add_rows, snap.runs[first:], self._table_generation
                )
        self._rows = snap.runs

    def _add_rows(self, rows: tuple, generation: int) -> None:
        if generation != self._table_generation:
            return
        table = self.query_one(DataTable)
        for row in rows:
            cells = (
                self._cell(h, c, row.run_id) for h, c in zip(RUN_HEADERS, row.cells, strict=True)
            )
            table.add_row(*cells, key=row.run_id)
            if row.run_id == self.run_id:
                table.move_cursor(row=table.row_count - 1, animate=False)

    def _cell(self, header: str, value: str, run_id: str) -> str:
        if header == "status":
            return status_text(value)
        if header == "run" and run_id in self.marked:
            return f"● {value}"
        return value

    # ── selection ───────────────────────────────────────────────────────────────────────────

    @on(Tree.NodeHighlighted, "#experiments")
    def _experiment_highlighted(self, event: Tree.NodeHighlighted) -> None:
        name = event.node.data
        if name and name != self.experiment:
            self.experiment = name
            self.run_id = None
            self._rows = ()
            self.query_one(DataTable).clear()
            self.query_one(LossChart).follow(None)
            self._log_text = ""
            self.query_one(Log).clear()
            self.refresh_data()

    @on(DataTable.RowHighlighted, "#runs")
    def _run_highlighted(self, event: DataTable.RowHighlighted) -> None:
        run_id = event.row_key.value if event.row_key else None
        if run_id and run_id != self.run_id:
            self.run_id = run_id
            self.query_one(LossChart).follow(run_id)
            self._log_text = ""
            self.refresh_data()

    @on(DataTable.RowSelected, "#runs")
    def _run_selected(self, event: DataTable.RowSelected) -> None:
        """enter on a run: its whole log."""
        if event.row_key and event.row_key.value:
            self.run_id = event.row_key.value
            self.action_log()

    # ── actions ─────────────────────────────────────────────────────────────────────────────

    def action_log(self) -> None:
        if not self.run_id:
            self.notify("no run highlighted", severity="warning")
            return
        from nkd_tui.log_viewer import LogViewer

        self.push_screen(LogViewer(self.workspace.run_dir(self.run_id) / "output.log",
                                   f"{self.run_id} · output.log"))

    def action_help(self) -> None:
        from nkd_tui.screens import HelpScreen

        self.push_screen(HelpScreen())

    def action_gpus(self) -> None:
        panel = self.query_one(GpuPanel)
        panel.toggle_class("-shown")
        if panel.has_class("-shown"):
            panel.show_reading(None)
            self.refresh_data()

    def action_launch(self) -> None:
        if not self.experiment:
            return
        from nkd_tui.screens import LaunchScreen

        name = self.experiment

        def launched(choice: tuple[list[str], bool] | None) -> None:
            if choice is not None:
                self._launch(name, *choice)

        self.push_screen(LaunchScreen(self.registry, name), launched)

    @work(thread=True, group="control", exit_on_error=False)
    def _launch(self, name: str, overrides: list[str], queued: bool = False) -> None:
        from core.queue.scheduler import ensure_running
        from core.runner import launch_experiment

        try:
            exp = self.registry.resolve(name, overrides)
            done = launch_experiment(self.registry, exp, store=self.poller.store, queued=queued)
            if queued:
                ensure_running(self.workspace)
        except NkdError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", timeout=10)
            return
        what = "queued" if queued else "started" + (f" on GPU {done.gpus}" if done.gpus else "")
        self.call_from_thread(self.notify, f"{done.run_id}: {what}")
        self.call_from_thread(self.refresh_data)

    def action_queue(self, what: str) -> None:
        if self.run_id:
            self._control(self.run_id, what)

    def action_control(self, action: str) -> None:
        if self.run_id:
            self._control(self.run_id, action)

    @work(thread=True, group="control", exit_on_error=False)
    def _control(self, run_id: str, action: str) -> None:
        from core.actions import cancel, kill, restart, send, set_priority

        try:
            if action == "kill":
                message = kill(self.poller.store, self.workspace, run_id)
            elif action == "restart":
                message = restart(self.poller.store, self.workspace, run_id)
            elif action == "cancel":  # a queued run
                message = cancel(self.poller.store, self.workspace, run_id)
            elif action == "top":
                message = set_priority(self.poller.store, self.workspace, run_id, None)
            else:
                message = send(self.poller.store, self.workspace, run_id, action)
        except NkdError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.call_from_thread(self.notify, message)
        self.call_from_thread(self.refresh_data)

    def _confirm(self, question: str, action: str) -> None:
        from nkd_tui.screens import ConfirmScreen

        run_id = self.run_id
        if not run_id:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._control(run_id, action)

        self.push_screen(ConfirmScreen(question), answered)

    RUN_ACTIONS = frozenset({"launch", "control", "stop", "kill", "mark", "compare", "lineage"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Run keys act on the main screen only (they are hidden on the compare screen)."""
        if action in self.RUN_ACTIONS and len(self.screen_stack) > 1:
            return False
        return True

    def action_mark(self) -> None:
        """Mark the highlighted run for comparison (again: unmark it)."""
        run_id = self.run_id
        if not run_id:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        row = next((r for r in self._rows if r.run_id == run_id), None)
        if row is not None:
            self.query_one(DataTable).update_cell(
                run_id, "run", self._cell("run", row.cells[0], run_id)
            )

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark two or more runs with space, then press c", severity="warning")
            return
        from nkd_tui.compare_screen import CompareScreen

        self.push_screen(CompareScreen(self.workspace.db_path, list(self.marked),
                                       self.workspace.root / "exports", clock=self.poller.clock))

    def action_compare_sweep(self) -> None:
        """Every run of the highlighted run's sweep, side by side (the swept settings differ,
        so they lead the settings table)."""
        row = self.poller.store.get_run(self.run_id) if self.run_id else None
        if not row or not row.get("sweep"):
            self.notify("the highlighted run is not part of a sweep", severity="warning")
            return
        ids = [r["id"] for r in self.poller.store.list_runs(sweep=row["sweep"])]
        from nkd_tui.compare_screen import CompareScreen

        self.push_screen(CompareScreen(self.workspace.db_path, ids,
                                       self.workspace.root / "exports", clock=self.poller.clock))

    def action_lineage(self) -> None:
        if not self.run_id:
            self.notify("no run highlighted", severity="warning")
            return
        from nkd_tui.lineage_screen import LineageScreen

        self.push_screen(LineageScreen(self.registry, self.workspace.db_path, self.run_id))

    def action_stop(self) -> None:
        self._confirm(f"Stop {self.run_id}? It saves its last state.", "stop")

    def action_kill(self) -> None:
        self._confirm(f"Kill {self.run_id}? Unsaved progress is lost.", "kill")


def make_app(
    registry_path: str | Path, clock: Callable[[], float] = time.time, poll: bool = True
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
        return NkdApp(registry, Workspace.at(registry.path), clock=clock, poll=poll)
    finally:
        if dumb:
            del os.environ["NO_COLOR"]
