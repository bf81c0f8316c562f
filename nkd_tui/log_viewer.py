"""The full log of one run: every line of output.log, searchable, following the file as it grows.

`enter` on a run opens it. The file is indexed in a worker thread (where each line starts, not the
lines themselves: `nkd_tui/log_file.py`), and only the lines on screen are read, so a 100 MB log
opens, jumps and searches without holding it in memory. `/` searches (case-insensitive, plain
text), `n`/`N` go to the next/previous match, `e`/`E` to the next/previous error line (Traceback,
Error, nan, a refused record), `f` toggles following the end of the file, `g`/`G` jump to the
top/end, `esc` goes back.
"""

from __future__ import annotations

import re
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.geometry import Size
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Input, Static

from core.util.text import log_line
from nkd_tui.log_file import LogIndex
from nkd_tui.messages import LogFound, LogGrew, LogSaid, ReportsWorkerErrors

ERRORS = re.compile(rb"Traceback|Error|Exception|\bnan\b|\binf\b|refused|failed|killed", re.I)
FOLLOW_S = 1.0
PROGRESS_S = 0.1  # while a large file is indexed, the view grows this often
MAX_WIDTH = 4_000  # columns of horizontal scrolling at most


class FileView(ScrollView, can_focus=True):
    """Draws the lines of a LogIndex that are on screen; the found line is highlighted."""

    def __init__(self, index: LogIndex, **kwargs) -> None:
        super().__init__(**kwargs)
        self.index = index
        self.found: int | None = None

    def grew(self) -> None:
        self.virtual_size = Size(min(self.index.widest, MAX_WIDTH), len(self.index))

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        i = scroll_y + y
        style = self.rich_style
        if i >= len(self.index):
            return Strip.blank(width, style)
        if i == self.found:
            style = style + Style(reverse=True)
        text = log_line(self.index[i]).expandtabs(8)[scroll_x: scroll_x + width]
        return Strip([Segment(text, style)]).adjust_cell_length(width, style)


class LogViewer(ReportsWorkerErrors, Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("slash", "search", "Search"),
        Binding("n", "match(1)", "Next"),
        Binding("N", "match(-1)", "Previous", show=False),
        Binding("e", "error(1)", "Next error"),
        Binding("E", "error(-1)", "Previous error", show=False),
        Binding("f", "follow", "Follow"),
        Binding("g", "edge('top')", "Top", show=False),
        Binding("G", "edge('end')", "End", show=False),
    ]
    DEFAULT_CSS = """
    LogViewer #where { height: 1; background: $boost; padding: 0 1; }
    LogViewer #full { height: 1fr; }
    LogViewer #search { display: none; }
    LogViewer #search.-shown { display: block; }
    """

    def __init__(self, path: Path, title: str) -> None:
        super().__init__()
        self.path, self.title_text = path, title
        self.lines = LogIndex(path)
        self.following = True
        self.pattern = ""
        self.indexed = False  # the whole file as it was at opening has been indexed

    def compose(self) -> ComposeResult:
        yield Static(self.title_text, id="where")
        yield FileView(self.lines, id="full")
        yield Input(placeholder="search (enter: find, esc: close)", id="search")
        yield Footer()

    def on_mount(self) -> None:
        self._read()
        self.set_interval(FOLLOW_S, self._read)

    def on_unmount(self) -> None:
        self.lines.close()

    # ── reading ──────────────────────────────────────────────────────────────────────────────

    @work(thread=True, exclusive=True, group="log-read", name="reading the log",
          exit_on_error=False)
    def _read(self) -> None:
        """Index what was written since the last read (a worker thread); the view grows every
        PROGRESS_S while a large file is indexed."""
        import time

        told = time.monotonic()
        added = 0
        try:
            while n := self.lines.grow():
                added += n
                if time.monotonic() - told >= PROGRESS_S:
                    told = time.monotonic()
                    self.post_message(LogGrew())
        except OSError as exc:
            self.post_message(LogSaid(f"{self.path}: {exc.strerror or exc}"))
            return
        self.indexed = True
        if added or not self.lines:
            self.post_message(LogGrew())

    def on_log_grew(self, _message: LogGrew) -> None:
        self._grew()

    def on_log_said(self, message: LogSaid) -> None:
        self._say(message.text)

    def on_log_found(self, message: LogFound) -> None:
        if message.line is None:
            self._status(f"no further {message.what}")
        else:
            self._go(message.line, message.what)

    def _grew(self) -> None:
        view = self.query_one(FileView)
        view.grew()
        if self.following:
            view.scroll_end(animate=False, immediate=True)
        view.refresh()
        self._status()

    # ── moving ───────────────────────────────────────────────────────────────────────────────

    def _top_line(self) -> int:
        return int(self.query_one(FileView).scroll_offset.y)

    def _go(self, line: int, what: str) -> None:
        self.following = False
        view = self.query_one(FileView)
        view.found = line
        view.scroll_to(y=max(0, line - 2), animate=False, immediate=True)
        view.refresh()
        self._status(f"{what} at line {line + 1}: {log_line(self.lines[line])[:120]}")

    def _find(self, pattern: re.Pattern[bytes], step: int, what: str) -> None:
        view = self.query_one(FileView)
        start = view.found if view.found is not None else self._top_line() + (1 if step > 0 else 2)
        self._say(f"searching for {what}…")
        self._search(pattern, start, step, what)

    @work(thread=True, exclusive=True, group="log-search", name="log search",
          exit_on_error=False)
    def _search(self, pattern: re.Pattern[bytes], start: int, step: int, what: str) -> None:
        """A search reads the file a block at a time: a miss in 100 MB is about a second, in
        this thread, never the interface's."""
        try:
            line = self.lines.search(pattern, start, step)
        except OSError as exc:
            self.post_message(LogSaid(f"{self.path}: {exc.strerror or exc}"))
            return
        self.post_message(LogFound(line, what))

    def _search_pattern(self) -> re.Pattern[bytes]:
        return re.compile(re.escape(self.pattern.encode("utf-8")), re.I)

    def action_match(self, step: int) -> None:
        if not self.pattern:
            self.action_search()
            return
        self._find(self._search_pattern(), step, f"'{self.pattern}'")

    def action_error(self, step: int) -> None:
        self._find(ERRORS, step, "error line")

    def action_follow(self) -> None:
        self.following = not self.following
        view = self.query_one(FileView)
        if self.following:
            view.found = None
            view.scroll_end(animate=False, immediate=True)
        self._status()

    def action_edge(self, which: str) -> None:
        self.following = which == "end"
        view = self.query_one(FileView)
        view.found = None
        if which == "top":
            view.scroll_home(animate=False, immediate=True)
        else:
            view.scroll_end(animate=False, immediate=True)
        view.refresh()
        self._status()

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.add_class("-shown")
        box.display = True  # now, not at the next restyle: a hidden box cannot take focus
        self.set_focus(box)  # at once: the keys typed right after `/` go to the box

    def action_back(self) -> None:
        box = self.query_one("#search", Input)
        if box.has_class("-shown"):
            box.remove_class("-shown")
            box.display = False
            self.set_focus(self.query_one(FileView))
            return
        self.app.pop_screen()

    @on(Input.Submitted, "#search")
    def _searched(self, event: Input.Submitted) -> None:
        self.pattern = event.value.strip()
        event.input.remove_class("-shown")
        event.input.display = False
        self.set_focus(self.query_one(FileView))
        if self.pattern:
            self.query_one(FileView).found = None
            self._find(self._search_pattern(), 1, f"'{self.pattern}'")

    def _status(self, message: str = "") -> None:
        mode = "following" if self.following else "paused (f follows)"
        self._say(message or f"{self.title_text} · {len(self.lines):,} lines · {mode}")

    def _say(self, text: str) -> None:
        self.query_one("#where", Static).update(text)
