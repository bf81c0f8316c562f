"""The run table: one experiment's runs, with as many columns as the terminal has room for.

The first six columns (run, status, epoch, best val, score, time/ETA) are what a researcher reads
all day and always fit at 80 columns; the mean epoch length, `started` and `device` join them on
wider terminals. Widths
are fixed (a DataTable measures every cell of an auto-width column, which dominates start-up) and
include the one space that separates a column from the next (the table's own cell padding is 0,
so no room is spent on padding at both sides).
"""

from __future__ import annotations

from functools import partial

from rich.text import Text
from textual.widgets import DataTable

from nkd_tui.format import fit_number, middle, status_text
from nkd_tui.poll import RunRow

# header, width with its separating space; in the order a narrow terminal drops them (last first)
COLUMNS: tuple[tuple[str, int], ...] = (
    ("run", 16), ("status", 12), ("epoch", 8), ("best val", 9), ("score", 6), ("time", 8),
    ("t/epoch", 8), ("started", 12), ("device", 10), ("size", 6),
)
NUMERIC = ("epoch", "best val", "score")
ESSENTIAL = 6
SCROLLBAR = 2  # the vertical scrollbar, once there are more runs than rows
LATER_S = 0.25  # rows below the screen are added this long after the first ones (after the paint)


def columns_for(width: int) -> tuple[str, ...]:
    """The columns that fit in `width` cells: the essential ones always, then the rest in order
    while they fit whole."""
    shown = [h for h, _ in COLUMNS[:ESSENTIAL]]
    used = sum(w for _, w in COLUMNS[:ESSENTIAL]) + SCROLLBAR
    for header, w in COLUMNS[ESSENTIAL:]:
        if used + w > width:
            break
        shown.append(header)
        used += w
    return tuple(shown)


WIDTH = dict(COLUMNS)
INDEX = {h: i for i, (h, _) in enumerate(COLUMNS)}


class RunTable(DataTable):
    """Rows are RunRows from the poller; `marked` runs are shown with a dot, archived ones (when
    shown at all) with ⌂, dimmed."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, cell_padding=0, **kwargs)
        self.shown: tuple[str, ...] = ()
        self.rows_shown: tuple[RunRow, ...] = ()
        self.marked: list[str] = []
        self.follow_run: str | None = None  # the row the cursor goes to when rows are added
        self._generation = 0

    def fit(self, width: int) -> None:
        """Choose the columns for `width`; the rows are laid out again if they changed."""
        shown = columns_for(width)
        if shown == self.shown:
            return
        self.shown = shown
        self.clear(columns=True)
        for header in shown:
            self.add_column(header, key=header, width=WIDTH[header])
        rows, self.rows_shown = self.rows_shown, ()
        self.show_rows(rows)

    def show_rows(self, rows: tuple[RunRow, ...]) -> None:
        """Update the table to `rows`: cell by cell when the same runs are listed, else anew."""
        if not self.shown:  # laid out at the first fit
            self.rows_shown = rows
            return
        if rows == self.rows_shown:
            return
        if [r.run_id for r in self.rows_shown] == [r.run_id for r in rows]:
            for old, new in zip(self.rows_shown, rows, strict=True):
                if old is new:  # the poller hands back an unchanged row as the same object
                    continue
                if old.archived != new.archived:
                    old = RunRow(old.run_id, old.status, ("",) * len(old.cells))  # all anew
                for header in self.shown:
                    i = INDEX[header]
                    if old.cells[i] != new.cells[i]:
                        self.update_cell(new.run_id, header, self.cell(header, new))
        else:
            # Rows that fill the screen go in now, the rest a frame after this paint (dropped
            # if a newer snapshot replaced them): they are not on screen, so they wait.
            self.clear()
            self._generation += 1
            first = max(self.app.size.height, 24)
            self._add(rows[:first], self._generation)
            if len(rows) > first:
                self.set_timer(LATER_S, partial(self._add, rows[first:], self._generation))
        self.rows_shown = rows

    def _add(self, rows: tuple[RunRow, ...], generation: int) -> None:
        if generation != self._generation:
            return
        for row in rows:
            self.add_row(*(self.cell(h, row) for h in self.shown), key=row.run_id)
            if row.run_id == self.follow_run:
                self.move_cursor(row=self.row_count - 1, animate=False)

    def cell(self, header: str, row: RunRow) -> Text:
        """A Text, never a str: a DataTable parses a str as markup (slow, and an id with `[`
        in it would be misread)."""
        value = row.cells[INDEX[header]]
        if header == "status":
            value = status_text(value)
        elif header == "run":
            value = ("● " if row.run_id in self.marked else "") \
                + ("⌂ " if row.archived else "") + value
        if header in NUMERIC:  # rounded to fit, never cut in the middle into another number
            value = fit_number(value, WIDTH[header] - 1)
        else:
            value = middle(value, WIDTH[header] - 1)
        return Text(value, style="dim") if row.archived else Text(value)

    def refresh_run(self, run_id: str) -> None:
        """Draw one run's name again (it was marked or unmarked)."""
        row = next((r for r in self.rows_shown if r.run_id == run_id), None)
        if row is not None and "run" in self.shown:
            self.update_cell(run_id, "run", self.cell("run", row))

    def reset(self) -> None:
        self.clear()
        self.rows_shown = ()
