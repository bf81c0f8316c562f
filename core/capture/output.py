"""A script's output, read in chunks and cut into lines: what a text-mode pipe with universal
newlines gives (UTF-8, undecodable bytes replaced; "\\r\\n" and a lone "\\r" end a line as
"\\n" does), a whole chunk's lines at a time. Read line by line, each line cost the reading
thread a system call and a hand-over to the worker's own thread, a third of what a script
printing thousands of records a second costs the worker (bench/capture_bench.py)."""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable

CHUNK = 1 << 16


def read_lines(fd: int, put: Callable[[list[str] | None], None]) -> None:
    """Read fd to its end: put(lines) for each chunk's complete lines (each ending in "\n";
    the last line of the output as it is), then put(None). A line longer than a chunk is kept
    in pieces until its end comes, so that a long one costs no more than its length."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces: list[str] = []  # the line not yet ended
    carried = ""  # a chunk's last "\r": perhaps the first half of "\r\n"
    while True:
        try:
            chunk = os.read(fd, CHUNK)
        except InterruptedError:
            continue
        text = carried + decoder.decode(chunk, final=not chunk)
        carried = ""
        if chunk and text.endswith("\r"):
            text, carried = text[:-1], "\r"
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" in text:
            lines = text.split("\n")
            lines[0] = "".join(pieces) + lines[0]
            pieces = [lines.pop()]
            put([line + "\n" for line in lines])
        else:
            pieces.append(text)
        if not chunk:
            break
    rest = "".join(pieces)
    if rest:
        put([rest])
    put(None)
