"""Dialogs: launch an experiment with edited settings, confirm a stop or kill, help."""

from __future__ import annotations

import json
import tomllib
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from core.errors import NkdError
from core.registry import Registry

# Keys shown in the launch dialog are the ones a researcher tunes; wiring stays in the registry.
HIDDEN_KEYS = ("group", "description", "command", "reported", "recipe", "env", "cwd", "tags")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    return repr(value)


def editable_lines(params: dict[str, Any]) -> str:
    lines = []
    for key, value in params.items():
        if key in HIDDEN_KEYS:
            continue
        if key == "params":
            lines += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines)


def overrides_from(text: str, original: str) -> list[str]:
    """`key=value` overrides for the lines that differ from the resolved settings."""
    before = tomllib.loads(original)
    try:
        edited = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NkdError(f"launch dialog: {_toml_problem(text, exc)}") from None
    return [f"{k}={_toml_value(v)}" for k, v in edited.items() if before.get(k, object()) != v]


def _toml_problem(text: str, exc: tomllib.TOMLDecodeError) -> str:
    """A TOML error in the dialog's own words: the line and the key it is about."""
    import re

    reason = str(exc).split(" (at ")[0]
    if reason.startswith("Cannot overwrite a value"):  # tomllib names no key, often no line
        seen: set[str] = set()
        for n, line in enumerate(text.splitlines(), 1):
            key = line.split("=", 1)[0].strip() if "=" in line else ""
            if key and key in seen:
                return f"line {n}: '{key}' is set twice; keep one"
            seen.add(key)
    lines = text.splitlines()
    m = re.search(r"line (\d+)", str(exc))
    if m:
        n = int(m.group(1))
    elif "end of document" in str(exc) and any(line.strip() for line in lines):
        n = max(i for i, line in enumerate(lines, 1) if line.strip())
    else:
        return reason
    line = lines[n - 1] if 0 < n <= len(lines) else ""
    return f"line {n} ({line.strip()[:40]}): {reason}"


class LaunchScreen(ModalScreen[tuple[list[str], bool] | None]):
    """The resolved settings of one experiment, editable; validated by the registry on launch.
    Dismissed with (overrides, queued), or None."""

    BINDINGS = [
        Binding("ctrl+s", "launch", "Launch", id="launch.go"),
        Binding("ctrl+e", "launch(True)", "Queue", id="launch.queue"),
        Binding("escape", "cancel", "Cancel", id="launch.cancel"),
    ]

    def __init__(self, registry: Registry, experiment: str) -> None:
        super().__init__()
        self.registry = registry
        self.experiment = experiment
        exp = registry.get(experiment)
        self.original = editable_lines(exp.params)
        self.what = exp.recipe or " ".join(exp.command or [])

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(Text.assemble("Launch ", (self.experiment, "bold"), f"  ({self.what})"),
                        id="title")
            yield TextArea(self.original, id="settings", language=None, soft_wrap=False)
            yield Static("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Launch (ctrl+s)", variant="primary", id="go")
                yield Button("Queue (ctrl+e)", id="queue")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self._fit_height(self.app.size.height)

    def on_resize(self, event) -> None:  # noqa: ANN001 - Textual's Resize event
        self._fit_height(self.app.size.height)

    def _fit_height(self, height: int) -> None:
        """The settings take what the terminal has left, so the buttons always show: the
        dialog's border, padding, title, error line and buttons need 13 rows."""
        self.query_one("#settings", TextArea).styles.height = max(3, min(14, height - 13))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id in ("go", "queue"):
            self.action_launch(event.button.id == "queue")
        else:
            self.action_cancel()

    def action_launch(self, queued: bool = False) -> None:
        text = self.query_one("#settings", TextArea).text
        try:
            overrides = overrides_from(text, self.original)
            self.registry.resolve(self.experiment, overrides)
        except NkdError as exc:
            # an edit made here is named as one, not as a line of experiments.toml
            message = str(exc).replace(f"{self.registry.path}: ", "launch dialog: ")
            self.query_one("#error", Static).update(Text(message, style="red"))
            return
        self.dismiss((overrides, queued))

    def action_cancel(self) -> None:
        self.dismiss(None)


class PromptScreen(ModalScreen[str | None]):
    """One line to edit (a run's tags, its note): enter keeps it, esc leaves it as it was."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, question: str, value: str, hint: str) -> None:
        super().__init__()
        self.question, self.value, self.hint = question, value, hint

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="title")
            yield Input(self.value, id="answer")
            yield Static(Text(self.hint, style="dim"), id="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="title")
            with Horizontal(id="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


HELP_KEYS = (
    ("tab", "move between experiments, runs and the log pane"),
    ("/", "filter by name, or to runs by #tag or note text"),
    ("l", "launch the experiment, its settings editable first"),
    ("p / r", "pause / resume the highlighted run"),
    ("u", "suspend: checkpoint, exit, free the GPU (r restarts)"),
    ("s", "stop (asks first): finish the step, save the state"),
    ("K / R", "kill (asks first) / restart an ended run from its state"),
    ("space", "mark / unmark a run for compare; C clears all marks"),
    ("c / S", "compare the marked runs / the highlighted run's sweep"),
    ("L", "lineage: fine-tunes, blends, evaluations; b blends"),
    ("o", "results: tracks worst first, spectrograms (nkd listen to hear)"),
    ("enter", "whole log (or v): / search, n next, e error, f follow"),
    ("m / y", "chart: next metric (M back) / log y axis"),
    ("t / n", "tags / note of the highlighted run"),
    ("a / A", "archive (hidden, never deleted) / show the archived"),
    ("g", "GPU panel: each GPU's use, its nkd runs and others' jobs"),
    ("x / T", "queued run: cancel / start next (ctrl+e in launch queues)"),
    ("q", "quit; runs keep going, reopen nkd to see them again"),
)


def help_text() -> Text:
    text = Text.assemble(("nkd", "bold"), ": experiments on the left, their runs on the right, "
                         "the highlighted run's chart and log below.\n\n")
    for key, what in HELP_KEYS:
        text.append(f"  {key:<7}", style="bold")
        text.append(f"{what}\n")
    text.append("\nRuns started elsewhere (`nkd run`) appear within a second. ctrl+p finds any "
                "command by name.")
    return text


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "Close", id="help.close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Static(help_text())

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
