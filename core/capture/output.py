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
    """Read fd to its end: put(lines) for each chunk's complete lines (each ending in "\\n";
    the last line of the output as it is), then put(None)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while True:
        try:
            chunk = os.read(fd, CHUNK)
        except InterruptedError:
            continue
        text = pending + decoder.decode(chunk, final=not chunk)
        if chunk and text.endswith("\r"):  # perhaps the first half of "\r\n"
            text, pending = text[:-1], "\r"
        else:
            pending = ""
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        pending = lines.pop() + pending  # an unfinished line waits for the rest of it
        if lines:
            put([line + "\n" for line in lines])
        if not chunk:
            break
    if pending:
        put([pending])
    put(None)
