"""The full log of one run: every line of output.log, searchable, following the file as it grows.

`enter` on a run opens it. The file is read in a worker thread (a 100 MB log is a few hundred
milliseconds of reading, and the Log widget draws only the lines on screen); `/` searches
(case-insensitive, plain text), `n`/`N` go to the next/previous match, `e`/`E` to the next/previous
error line (Traceback, Error, nan, a refused record), `f` toggles following the end of the file,
`g`/`G` jump to the top/end, `esc` goes back.
"""

from __future__ import annotations

import re
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Log, Static

ERRORS = re.compile(r"Traceback|Error|Exception|\bnan\b|\binf\b|refused|failed|killed", re.I)
FOLLOW_S = 1.0
CHUNK = 1 << 20


class LogViewer(Screen[None]):
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
        self.lines: list[str] = []
        self.read_at = 0  # bytes of the file read so far
        self.pending = b""  # a last line without its newline yet
        self.following = True
        self.pattern = ""

    def compose(self) -> ComposeResult:
        yield Static(self.title_text, id="where")
        yield Log(id="full", highlight=False, auto_scroll=True)
        yield Input(placeholder="search (enter: find, esc: close)", id="search")
        yield Footer()

    def on_mount(self) -> None:
        self._read()
        self.set_interval(FOLLOW_S, self._read)

    # ── reading ──────────────────────────────────────────────────────────────────────────────

    @work(thread=True, exclusive=True, group="log-read")
    def _read(self) -> None:
        """The bytes written since the last read, as whole lines (a worker thread)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.read_at)
                data = b""
                while chunk := fh.read(CHUNK):
                    data += chunk
        except OSError as exc:
            self.app.call_from_thread(self._say, f"{self.path}: {exc.strerror or exc}")
            return
        if not data:
            return
        self.read_at += len(data)
        buffered = self.pending + data
        if b"\n" not in buffered:  # half a line: wait for its end
            self.pending = buffered
            return
        whole, self.pending = buffered.rsplit(b"\n", 1)
        self.app.call_from_thread(self._append, whole.decode("utf-8", errors="replace").split("\n"))

    def _append(self, lines: list[str]) -> None:
        self.lines.extend(lines)
        log = self.query_one(Log)
        log.auto_scroll = self.following
        log.write_lines(lines)
        self._status()

    # ── moving ───────────────────────────────────────────────────────────────────────────────

    def _top_line(self) -> int:
        return int(self.query_one(Log).scroll_offset.y)

    def _go(self, line: int, what: str) -> None:
        self.following = False
        log = self.query_one(Log)
        log.auto_scroll = False
        log.scroll_to(y=max(0, line - 2), animate=False)
        self._status(f"{what} at line {line + 1}: {self.lines[line][:120]}")

    def _find(self, test, step: int, what: str) -> None:
        start = self._top_line() + 2 + step
        order = (range(start, len(self.lines)) if step > 0 else range(min(start, len(self.lines))
                                                                      - 1, -1, -1))
        for i in order:
            if test(self.lines[i]):
                self._go(i, what)
                return
        self._status(f"no further {what}")

    def action_match(self, step: int) -> None:
        if not self.pattern:
            self.action_search()
            return
        needle = self.pattern.lower()
        self._find(lambda line: needle in line.lower(), step, f"'{self.pattern}'")

    def action_error(self, step: int) -> None:
        self._find(ERRORS.search, step, "error line")

    def action_follow(self) -> None:
        self.following = not self.following
        log = self.query_one(Log)
        log.auto_scroll = self.following
        if self.following:
            log.scroll_end(animate=False)
        self._status()

    def action_edge(self, which: str) -> None:
        self.following = which == "end"
        log = self.query_one(Log)
        log.auto_scroll = self.following
        if which == "top":
            log.scroll_home(animate=False)
        else:
            log.scroll_end(animate=False)
        self._status()

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.add_class("-shown")
        self.set_focus(box)  # at once: the keys typed right after `/` go to the box

    def action_back(self) -> None:
        box = self.query_one("#search", Input)
        if box.has_class("-shown"):
            box.remove_class("-shown")
            self.set_focus(self.query_one(Log))
            return
        self.app.pop_screen()

    @on(Input.Submitted, "#search")
    def _searched(self, event: Input.Submitted) -> None:
        self.pattern = event.value.strip()
        event.input.remove_class("-shown")
        self.set_focus(self.query_one(Log))
        if self.pattern:
            self._find(lambda line: self.pattern.lower() in line.lower(), 1, f"'{self.pattern}'")

    def _status(self, message: str = "") -> None:
        mode = "following" if self.following else "paused (f follows)"
        self._say(message or f"{self.title_text} · {len(self.lines):,} lines · {mode}")

    def _say(self, text: str) -> None:
        self.query_one("#where", Static).update(text)
