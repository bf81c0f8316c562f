"""The nkd Textual app: experiments, their runs, the highlighted run's live loss and log."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, Log, Static, Tree
from textual.widgets.tree import TreeNode

from core.errors import NkdError
from core.events import ACTIVE
from core.registry import Registry, load_registry
from core.workspace import Workspace
from nkd_tui.format import STATUS_SYMBOL, middle
from nkd_tui.gpu_panel import GpuPanel
from nkd_tui.poll import Poller, Snapshot
from nkd_tui.run_chart import ChartPane, LossChart
from nkd_tui.run_table import RunTable

MIN_SIZE = (80, 24)  # below this the TUI shows one line saying so instead of a clipped layout
POLL_S = 1.0  # bounded refresh: one store read a second, redraws only for what changed
PREFETCH_WAIT_S = 0.25  # how long the first paint waits for the prefetched snapshot
FIRST_ROWS = 200  # the first paint reads this many runs; the rest come with the next read
WIDE = 120  # from this width the chart and the log sit side by side; below, the log is under it
LOG_LINES = 2_000  # lines the log pane keeps (the log viewer, enter, has the whole file)


# what the command palette says under each key's name
HELP_OF = {
    "run.launch": "launch the highlighted experiment, its settings editable first",
    "run.suspend": "checkpoint, exit and free the GPU; r resumes",
    "run.kill": "stop, then kill after a grace period (asks first)",
    "run.restart": "start an ended run again from its last state",
    "run.compare_sweep": "compare every run of the highlighted run's sweep",
    "run.clear_marks": "unmark every run marked for compare",
    "chart.metric": "plot the next recorded per-epoch metric",
    "chart.log_y": "toggle a logarithmic y axis",
    "run.tags": "edit the highlighted run's tags",
    "run.note": "edit the highlighted run's note",
    "run.archive": "hide the ended run from listings (never deleted); again to restore",
    "app.show_archived": "list archived runs too",
    "queue.cancel": "cancel the highlighted queued run",
    "queue.top": "start the highlighted queued run next",
}


class LogPane(Log):
    """The followed run's last lines, wrapped at word boundaries to the pane's width (again when
    the width changes), so an SDR or accuracy line is read whole at 80 columns."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = ""
        self._wrapped_at = 0

    def show(self, text: str) -> None:
        self.text = text
        self._wrapped_at = 0
        self._wrap()

    def on_resize(self) -> None:
        self._wrap()

    def _wrap(self) -> None:
        width = self.scrollable_content_region.width
        if width <= 0 or width == self._wrapped_at:
            return
        self._wrapped_at = width
        import textwrap

        lines = []
        for line in self.text.rstrip("\n").split("\n")[-LOG_LINES:] if self.text else []:
            lines += textwrap.wrap(line, width, subsequent_indent="  ", drop_whitespace=False,
                                   replace_whitespace=False) or [""]
        at_end = self.is_vertical_scroll_end
        self.clear()
        self.write_lines(lines, scroll_end=False)
        if at_end:  # the newest line in view (the size is known after this refresh)
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)


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
        Binding("v", "log", "View log", id="run.log", show=False),
        Binding("slash", "filter", "Filter", id="app.filter", show=False),
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
        self.experiment: str | None = None
        self.run_id: str | None = None  # the highlighted run, followed by chart and log
        self.marked: list[str] = []  # runs marked for the compare screen, in marking order
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
        self._prefetched.append(self.poller.snapshot(experiment, None, 0, False,
                                                     limit=FIRST_ROWS))

    def compose(self) -> ComposeResult:
        yield Static("", id="too-small")
        # the layout class for the size the terminal has now: set later, it would restyle every
        # widget once more before the first paint
        with Horizontal(id="main", classes="-narrow" if self.size.width < WIDE else ""):
            yield Input(placeholder="filter experiments (enter keeps it, esc clears)",
                        id="filter")
            yield ExperimentTree("experiments", id="experiments")
            with Vertical(id="right"):
                yield Static("", id="about")
                yield RunTable(id="runs")
                yield Static("", id="run-notes")
                yield GpuPanel(id="gpus")
                with Horizontal(id="detail"):
                    yield ChartPane(id="chart-pane")
                    yield LogPane(id="log", highlight=False, auto_scroll=True)
        yield Footer()

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
        self.query_one(RunTable).fit(max(self.size.width, MIN_SIZE[0]) - 20)
        self._fit(self.size.width, self.size.height)
        self._prefetch.join(PREFETCH_WAIT_S)
        prefetched = self._prefetched[0] if self._prefetched else None
        focus = prefetched.experiment if prefetched else (first_leaf and first_leaf.data)
        leaves = {leaf.data: leaf for branch in tree.root.children for leaf in branch.children}
        if focus in leaves:
            self.experiment = focus
            self._show_about(focus)
            self.call_after_refresh(tree.move_cursor, leaves[focus])  # lines exist after a refresh
        tree.focus()
        if prefetched is not None:
            self._apply(prefetched)
        else:
            self.refresh_data()
        if self.poll_enabled:
            self.set_interval(POLL_S, self.refresh_data)
        if self.message:
            self.notify(self.message.strip(), title="printed before nkd opened", timeout=30)

    def _fill_tree(self, text: str) -> TreeNode | None:
        """The experiments whose names contain `text` (all for ""), or that have runs whose
        tags or note match it (`#best`: tagged best), by group in the registry's order; returns
        the first leaf. The run table then lists only the matching runs."""
        tree = self.query_one(Tree)
        tree.clear()
        first_leaf: TreeNode | None = None
        self.poller.search = text
        by_runs = set()
        if text:
            from core.annotate import experiments_matching

            by_runs = experiments_matching(self.poller.store, text)
        for group, names in self.registry.groups().items():
            shown = [n for n in names if text.lower() in n.lower() or n in by_runs]
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
        self.set_focus(box)  # at once: the keys typed right after `/` go to the box

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._fill_tree(event.value.strip())
        self.refresh_data()

    @on(Input.Submitted, "#filter")
    def _filter_kept(self, event: Input.Submitted) -> None:
        event.input.remove_class("-shown")
        self.set_focus(self.query_one(Tree))

    def key_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("-shown"):
            box.value = ""
            box.remove_class("-shown")
            self.set_focus(self.query_one(Tree))

    # ── polling ─────────────────────────────────────────────────────────────────────────────

    def refresh_data(self) -> None:
        chart = self.query_one(LossChart)
        after = chart.last_epoch if chart.run_id == self.run_id else 0
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
            table = self.query_one(RunTable)
            table.follow_run = self.run_id
            table.show_rows(snap.runs)
            self._show_run_notes()
            if self.run_id is None:
                self.run_id = snap.run_id
            if snap.run_id == self.run_id:
                chart = self.query_one(LossChart)
                chart.follow(self.run_id)
                chart.extend(snap.new_epochs)
                chart.show_progress(snap.progress)
                self._show_log(snap.log_tail)
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
        if snap.partial and not self.poll_enabled:  # else the next poll reads them all
            self.refresh_data()

    def _update_tree(
        self, latest: dict[str, str], summaries: dict[str, tuple[int, float | None]] | None = None
    ) -> None:
        """Each experiment: its latest run's status, or `▶N` while N of its runs are live (an
        older run may be running while a newer one finished), and its best score so far."""
        self._latest = latest
        self._summaries = summaries = summaries if summaries is not None else self._summaries
        tree = self.query_one(Tree)
        # the width left beside the guide, and the scrollbar once the tree is taller than shown
        budget = max(8, tree.size.width - 2 - (2 if tree.show_vertical_scrollbar else 0))
        for branch in tree.root.children:
            for leaf in branch.children:
                status = latest.get(leaf.data)
                live, best = summaries.get(leaf.data, (0, None))
                symbol = f"▶{live}" if live > 1 or (live and status not in ACTIVE) \
                    else STATUS_SYMBOL.get(status or "", " ")
                score = f" {best:.3g}" if best is not None else ""
                name = middle(leaf.data, max(5, budget - len(score) - len(symbol) - 1))
                label = name if status is None else f"{symbol} {name}{score}"
                if str(leaf.label) != label:
                    leaf.set_label(label)

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
        if row is None or not (row.tags or row.note or row.archived):
            box.remove_class("-shown")
            return
        text = Text(row.cells[0] + " ", style="bold")
        if row.archived:
            text.append("archived · ", style="dim")
        text.append(" ".join(f"#{t}" for t in row.tags), style="cyan")
        if row.note:
            text.append((" · " if row.tags else "") + row.note)
        box.update(text)
        box.add_class("-shown")

    def _show_about(self, name: str) -> None:
        """The line over the run table: the experiment, its description and what the
        researcher reported for it (the value new runs are judged against)."""
        exp = self.registry.experiments.get(name)
        if exp is None:
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
        self.query_one(LossChart).set_reported(
            {k: v for k, v in exp.reported.items() if isinstance(v, int | float)})

    # ── selection ───────────────────────────────────────────────────────────────────────────

    @on(Tree.NodeHighlighted, "#experiments")
    def _experiment_highlighted(self, event: Tree.NodeHighlighted) -> None:
        name = event.node.data
        if name and name != self.experiment:
            self.experiment = name
            self.run_id = None
            self.query_one(RunTable).reset()
            self.query_one(LossChart).follow(None)
            self._show_about(name)
            self._log_text = ""
            self.query_one(LogPane).show("")
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
            self.query_one(LossChart).follow(run_id)
            self._log_text = ""
            self._show_run_notes()
            self.refresh_data()

    @on(DataTable.RowSelected, "#runs")
    def _run_selected(self, event: DataTable.RowSelected) -> None:
        """enter on a run: its whole log."""
        if event.row_key and event.row_key.value:
            self.run_id = event.row_key.value
            self.action_log()

    # ── actions ─────────────────────────────────────────────────────────────────────────────

    def action_log(self) -> None:
        if not self._sync_run():
            self.notify("no run highlighted", severity="warning")
            return
        from nkd_tui.log_viewer import LogViewer

        self.push_screen(LogViewer(self.workspace.run_dir(self.run_id) / "output.log",
                                   f"{self.run_id} · output.log"))

    def action_tags(self) -> None:
        row = self._row(self._sync_run())
        if row is None:
            self.notify("no run highlighted", severity="warning")
            return
        from nkd_tui.screens import PromptScreen

        def answered(text: str | None) -> None:
            if text is not None:
                self._annotate(row.run_id, "tags", text)

        self.push_screen(PromptScreen(f"Tags of {row.run_id}", " ".join(row.tags),
                                      "spaces or commas between tags · enter keeps · esc leaves"),
                         answered)

    def action_note(self) -> None:
        row = self._row(self._sync_run())
        if row is None:
            self.notify("no run highlighted", severity="warning")
            return
        from nkd_tui.screens import PromptScreen

        def answered(text: str | None) -> None:
            if text is not None:
                self._annotate(row.run_id, "note", text)

        self.push_screen(PromptScreen(f"Note on {row.run_id}", row.note,
                                      "one line in your words · empty clears · esc leaves"),
                         answered)

    def action_archive(self) -> None:
        row = self._row(self._sync_run())
        if row is not None:
            self._annotate(row.run_id, "archived", "" if row.archived else "yes")

    def action_show_archived(self) -> None:
        self.poller.show_archived = not self.poller.show_archived
        self.notify("archived runs shown (⌂)" if self.poller.show_archived
                    else "archived runs hidden")
        self.refresh_data()

    @work(thread=True, group="control", exit_on_error=False)
    def _annotate(self, run_id: str, what: str, text: str) -> None:
        from core import annotate

        store, ws = self.poller.store, self.workspace
        try:
            if what == "tags":
                tags = annotate.set_tags(store, ws, run_id, annotate.parse_tags(text))
                message = f"{run_id}: {' '.join('#' + t for t in tags) or 'no tags'}"
            elif what == "note":
                annotate.note(store, ws, run_id, text)
                message = f"{run_id}: note {'saved' if text.strip() else 'cleared'}"
            else:
                message = annotate.archive(store, ws, run_id, archived=bool(text))
        except NkdError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.call_from_thread(self.notify, message)
        self.call_from_thread(self.refresh_data)

    def action_metric(self, step: int) -> None:
        self.query_one(LossChart).cycle_view(step)

    def action_log_y(self) -> None:
        self.query_one(LossChart).toggle_log()

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
        if self._sync_run():
            self._control(self.run_id, what)

    def action_control(self, action: str) -> None:
        if self._sync_run():
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

    RUN_ACTIONS = frozenset({"launch", "control", "stop", "kill", "mark", "compare", "lineage",
                             "tags", "note", "archive", "metric", "log_y", "clear_marks"})

    def get_system_commands(self, screen):  # noqa: ANN001, ANN201 - Textual's signature
        """The command palette (ctrl+p) finds every key of the main screen by what it does,
        the ones the footer has no room for included."""
        yield from super().get_system_commands(screen)
        if screen is not self.screen_stack[0]:
            return
        from textual.app import SystemCommand

        for binding in self.BINDINGS:
            if binding.action in ("quit", "help"):
                continue
            yield SystemCommand(f"{binding.description} ({self.get_key_display(binding)})",
                                HELP_OF.get(binding.id, binding.description),
                                partial(self.run_action, binding.action))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Run keys act on the main screen only (they are hidden on the compare screen)."""
        if action in self.RUN_ACTIONS and len(self.screen_stack) > 1:
            return False
        return True

    def action_mark(self) -> None:
        """Mark the highlighted run for comparison (again: unmark it)."""
        run_id = self._sync_run()
        if not run_id:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        self._sync_marks(run_id)

    def _sync_marks(self, *run_ids: str) -> None:
        table = self.query_one(RunTable)
        table.marked = self.marked
        for run_id in run_ids:
            table.refresh_run(run_id)

    def action_clear_marks(self) -> None:
        """Unmark every run (marks otherwise stay after a compare, for the next one)."""
        cleared, self.marked = self.marked, []
        self._sync_marks(*cleared)
        self.notify(f"cleared {len(cleared)} mark{'s' if len(cleared) != 1 else ''}")

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark two or more runs with space, then press c", severity="warning")
            return
        from nkd_tui.compare_screen import CompareScreen

        self.push_screen(CompareScreen(self.workspace.db_path, list(self.marked),
                                       self.workspace.root / "exports", clock=self.poller.clock,
                                       poll=self.poll_enabled))

    def action_compare_sweep(self) -> None:
        """Every run of the highlighted run's sweep, side by side (the swept settings differ,
        so they lead the settings table)."""
        row = self.poller.store.get_run(self.run_id) if self._sync_run() else None
        if not row or not row.get("sweep"):
            self.notify("the highlighted run is not part of a sweep", severity="warning")
            return
        ids = [r["id"] for r in self.poller.store.list_runs(sweep=row["sweep"])]
        from nkd_tui.compare_screen import CompareScreen

        self.push_screen(CompareScreen(self.workspace.db_path, ids,
                                       self.workspace.root / "exports", clock=self.poller.clock,
                                       poll=self.poll_enabled))

    def action_lineage(self) -> None:
        if not self._sync_run():
            self.notify("no run highlighted", severity="warning")
            return
        from nkd_tui.lineage_screen import LineageScreen

        self.push_screen(LineageScreen(self.registry, self.workspace.db_path, self.run_id))

    def action_stop(self) -> None:
        self._confirm(f"Stop {self._sync_run()}? It saves its last state.", "stop")

    def action_kill(self) -> None:
        self._confirm(f"Kill {self._sync_run()}? Unsaved progress is lost.", "kill")


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
