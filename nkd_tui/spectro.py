"""A kept spectrogram (uint8 dB levels, core/results) drawn in the terminal: two rows of pixels
per line with the upper half block, high frequencies on top; with colour off (NO_COLOR) each
cell is a shade character instead, so loud still stands apart from quiet."""

from __future__ import annotations

import os

import numpy as np
from rich.text import Text
from textual.widget import Widget

from core.results.spectrogram import RANGE_DB

# dark to bright, a perceptually ordered ramp (inferno-like), indexed by level // 32
PALETTE = ("#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925",
           "#fb9b06", "#f7d13d", "#fcffa4")
SHADES = " .:-=+*#%@"


def _color(level: int) -> str:
    return PALETTE[min(len(PALETTE) - 1, level * len(PALETTE) // 256)]


def resample(spec: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """The spectrogram at rows × columns (the loudest value of each block, so a short loud
    event is not averaged away), high frequencies first."""
    bands, cols = spec.shape
    ri = np.linspace(0, bands, rows + 1).astype(int)
    ci = np.linspace(0, cols, columns + 1).astype(int)
    out = np.zeros((rows, columns), dtype=np.uint8)
    for r in range(rows):
        block = spec[ri[r]:max(ri[r + 1], ri[r] + 1)]
        for c in range(columns):
            out[r, c] = block[:, ci[c]:max(ci[c + 1], ci[c] + 1)].max()
    return out[::-1]


def render(spec: np.ndarray, width: int, height: int, color: bool | None = None) -> Text:
    """`height` lines of `width` cells."""
    color = not os.environ.get("NO_COLOR") if color is None else color
    text = Text(no_wrap=True, overflow="crop")
    if width <= 0 or height <= 0:
        return text
    if not color:
        grid = resample(spec, height, width)
        for r in range(height):
            text.append("".join(SHADES[int(v) * len(SHADES) // 256] for v in grid[r]))
            if r + 1 < height:
                text.append("\n")
        return text
    grid = resample(spec, 2 * height, width)
    for r in range(height):
        top, bottom = grid[2 * r], grid[2 * r + 1]
        for c in range(width):
            text.append("▀", style=f"{_color(int(top[c]))} on {_color(int(bottom[c]))}")
        if r + 1 < height:
            text.append("\n")
    return text


def legend(color: bool | None = None) -> Text:
    """What the levels mean: dB below the mixture's loudest band."""
    color = not os.environ.get("NO_COLOR") if color is None else color
    text = Text(f"-{RANGE_DB:g} dB ")
    if color:
        for c in PALETTE:
            text.append("█", style=c)
    else:
        text.append(SHADES.replace(" ", "·"))
    text.append(" 0 dB (the mixture's peak)")
    return text


class Spectrogram(Widget):
    """One panel: a title line, then the spectrogram at the widget's size."""

    DEFAULT_CSS = "Spectrogram { height: 1fr; width: 1fr; }"

    def __init__(self, title: str, spec: np.ndarray | None, note: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.title, self.spec, self.note = title, spec, note

    def render(self) -> Text:  # noqa: D102 - Textual's render
        width, height = self.size.width, self.size.height
        out = Text(self.title[:width], style="bold", no_wrap=True, overflow="crop")
        out.append("\n")
        if self.spec is None:
            out.append(self.note or "not kept", style="dim")
            return out
        out.append_text(render(self.spec, width, max(1, height - 1)))
        return out
