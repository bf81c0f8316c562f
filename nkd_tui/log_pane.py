"""The main screen's log pane: the tail of the highlighted run's output.log, wrapped."""

from __future__ import annotations

import textwrap

from textual.widgets import Log

from core.util.text import log_line

LOG_LINES = 2_000  # lines the pane keeps (the log viewer, enter, has the whole file)


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
        lines = []
        for line in self.text.rstrip("\n").split("\n")[-LOG_LINES:] if self.text else []:
            lines += textwrap.wrap(log_line(line), width, subsequent_indent="  ",
                                   drop_whitespace=False, replace_whitespace=False) or [""]
        at_end = self.is_vertical_scroll_end
        self.clear()
        self.write_lines(lines, scroll_end=False)
        if at_end:  # the newest line in view (the size is known after this refresh)
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)
