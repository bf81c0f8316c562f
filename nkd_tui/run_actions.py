"""What the main screen's keys do to runs: control, launch, tags and notes, marks and compare,
lineage; each finds its run through the app (`_sync_run`) and does its work in a thread."""

from __future__ import annotations

from functools import partial

from textual import work

from core.errors import NkdError
from core.util.text import visible
from nkd_tui.gpu_panel import GpuPanel
from nkd_tui.messages import Said
from nkd_tui.run_table import RunTable

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


class RunActions:
    """Mixed into NkdApp: the actions behind its BINDINGS."""

    def action_log(self) -> None:
        if not self._sync_run():
            self.notify("no run highlighted", severity="warning")
            return
        from nkd_tui.log_viewer import LogViewer

        self.push_screen(LogViewer(self.workspace.run_dir(self.run_id) / "output.log",
                                   f"{self.run_id} · output.log"))

    def action_tags(self) -> None:
        self._prompt("tags", "Tags of", lambda row: " ".join(row.tags),
                     "spaces or commas between tags · enter keeps · esc leaves")

    def action_note(self) -> None:
        self._prompt("note", "Note on", lambda row: row.note,
                     "one line in your words · empty clears · esc leaves")

    def _prompt(self, what: str, title: str, value, hint: str) -> None:  # noqa: ANN001
        """One line to edit for the highlighted run; `value(row)` is what it holds now."""
        row = self._row(self._sync_run())
        if row is None:
            self.notify("no run highlighted", severity="warning")
            return
        from nkd_tui.screens import PromptScreen

        def answered(text: str | None) -> None:
            if text is not None:
                self._annotate(row.run_id, what, text)

        self.push_screen(PromptScreen(f"{title} {row.run_id}", value(row), hint), answered)

    def action_archive(self) -> None:
        row = self._row(self._sync_run())
        if row is not None:
            self._annotate(row.run_id, "archived", "" if row.archived else "yes")

    def action_show_archived(self) -> None:
        self.poller.show_archived = not self.poller.show_archived
        self.notify("archived runs shown (⌂)" if self.poller.show_archived
                    else "archived runs hidden")
        self.refresh_data()

    def on_said(self, message: Said) -> None:
        """A worker's notice; the store is read again after an action."""
        self.notify(visible(message.text), severity=message.severity,  # type: ignore[arg-type]
                    **({"timeout": message.timeout} if message.timeout else {}))
        if message.refresh:
            self.refresh_data()

    @work(thread=True, group="control", name="tags and note", exit_on_error=False)
    def _annotate(self, run_id: str, what: str, text: str) -> None:
        from core.runs import annotate

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
            self.post_message(Said(str(exc), "error"))
            return
        self.post_message(Said(message, refresh=True))

    def action_metric(self, step: int) -> None:
        if self.chart is not None:
            self.chart.cycle_view(step)

    def action_log_y(self) -> None:
        if self.chart is not None:
            self.chart.toggle_log()

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

    @work(thread=True, group="control", name="launch", exit_on_error=False)
    def _launch(self, name: str, overrides: list[str], queued: bool = False) -> None:
        from core.backends.queue.scheduler import ensure_running
        from core.runs.launch import launch_experiment

        try:
            exp = self.registry.resolve(name, overrides)
            done = launch_experiment(self.registry, exp, store=self.poller.store, queued=queued)
            if queued:
                ensure_running(self.workspace)
        except NkdError as exc:
            self.post_message(Said(str(exc), "error", timeout=10))
            return
        what = "queued" if queued else "started" + (f" on GPU {done.gpus}" if done.gpus else "")
        said = "".join(f"\n{line}" for line in done.skipped)
        self.post_message(Said(f"{done.run_id}: {what}{said}", timeout=10 if said else 5,
                               refresh=True))

    def action_queue(self, what: str) -> None:
        if self._sync_run():
            self._control(self.run_id, what)

    def action_control(self, action: str) -> None:
        if self._sync_run():
            self._control(self.run_id, action)

    @work(thread=True, group="control", name="control", exit_on_error=False)
    def _control(self, run_id: str, action: str) -> None:
        from core.runs.actions import cancel, kill, restart, send, set_priority

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
            self.post_message(Said(str(exc), "error"))
            return
        self.post_message(Said(message, refresh=True))

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
        if action == "filter":  # a priority key: `/` typed into a text box stays text
            from textual.widgets import Input, TextArea

            return len(self.screen_stack) == 1 and not isinstance(self.focused, Input | TextArea)
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
        """The marked runs side by side; one marked run beside the highlighted one (space on a
        run, move to another, in the tree or the table, then c)."""
        ids = list(self.marked)
        highlighted = self._sync_run()
        if len(ids) == 1 and highlighted and highlighted not in ids:
            ids.append(highlighted)
        if len(ids) < 2:
            said = f"{ids[0]} is marked; " if ids else ""
            self.notify(f"{said}mark another run with space (or highlight it), then press c",
                        severity="warning")
            return
        from nkd_tui.compare_screen import CompareScreen

        self.push_screen(CompareScreen(self.workspace.db_path, ids,
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

    def action_sweep(self) -> None:
        """The highlighted trial's sweep: trials × rungs, the best so far, and settings against
        the metric in parallel coordinates."""
        row = self.poller.store.get_run(self.run_id) if self._sync_run() else None
        if not row or not row.get("sweep"):
            self.notify("the highlighted run is not part of a sweep", severity="warning")
            return
        from nkd_tui.sweep_screen import SweepScreen

        self.push_screen(SweepScreen(self.workspace.registry_path, row["sweep"],
                                     poll=self.poll_enabled))

    def action_lineage(self) -> None:
        if not self._sync_run():
            self.notify("no run highlighted", severity="warning")
            return
        from nkd_tui.lineage_screen import LineageScreen

        self.push_screen(LineageScreen(self.registry, self.workspace.db_path, self.run_id))

    def action_results(self) -> None:
        """What the highlighted run's evaluation kept: see its outputs (and hear them with
        `nkd listen`)."""
        run_id = self._sync_run()
        if not run_id:
            self.notify("no run highlighted", severity="warning")
            return
        from nkd_tui.results_screen import ResultsScreen

        self.push_screen(ResultsScreen(self.workspace.run_dir(run_id), run_id))

    def action_stop(self) -> None:
        self._confirm(f"Stop {self._sync_run()}? It saves its last state.", "stop")

    def action_kill(self) -> None:
        self._confirm(f"Kill {self._sync_run()}? Unsaved progress is lost.", "kill")
