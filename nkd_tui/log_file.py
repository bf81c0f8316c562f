"""A log file read as lines without holding them: an index of where each line starts.

The log viewer shows any line by reading it from the file (`pread`), so a 100 MB output.log costs
an array of line offsets (8 bytes a line) rather than a Python string per line, and searching is
a regular expression run over blocks of the file's bytes.
"""

from __future__ import annotations

import os
import re
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path

BLOCK = 8 << 20  # bytes indexed, or searched, at a time
NEWLINE = re.compile(b"\n")


class LogIndex(Sequence[str]):
    """The complete lines of a growing file: `index[i]` is line i, without its newline. A last
    line without its newline yet is left out until it is finished."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.starts = array("q")  # byte offset where each line starts
        self.end = 0  # bytes indexed: through the newline of the last complete line
        self.widest = 0  # the longest line seen, in bytes
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i):  # noqa: ANN001, ANN204 - Sequence's int | slice
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self.starts)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        start = self.starts[i]
        stop = self.starts[i + 1] if i + 1 < n else self.end
        return self._read(start, stop - start).rstrip(b"\r\n").decode("utf-8", "replace")

    def _read(self, offset: int, size: int) -> bytes:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return os.pread(self._fd, size, offset)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def grow(self) -> int:
        """Index up to BLOCK more bytes of complete lines; returns how many lines were added (0
        when the file has nothing new). Raises OSError if the file cannot be read."""
        data = self._read(self.end, BLOCK)
        last = data.rfind(b"\n")
        if last < 0:
            if len(data) == BLOCK:  # one line longer than a block: index it whole anyway
                last = len(data) - 1
            else:
                return 0
        base = self.end
        ends = [m.end() for m in NEWLINE.finditer(data, 0, last + 1)]  # just after each \n
        if not ends or ends[-1] != last + 1:
            ends.append(last + 1)
        starts = [base, *(base + e for e in ends[:-1])]
        lengths = (b - a for a, b in zip([0, *ends[:-1]], ends, strict=True))
        self.widest = max(self.widest, *lengths)
        self.starts.extend(starts)
        self.end = base + last + 1
        return len(starts)

    def line_at(self, offset: int) -> int:
        """The line that holds byte `offset`."""
        return max(0, bisect_right(self.starts, offset) - 1)

    def search(self, pattern: re.Pattern[bytes], line: int, step: int) -> int | None:
        """The first line after `line` (step 1) or last line before it (step -1) in which
        `pattern` matches, read a block at a time; None if there is none."""
        n = len(self.starts)
        if step > 0:
            at = line + 1
            while at < n:
                stop = min(n, bisect_right(self.starts, self.starts[at] + BLOCK, at + 1))
                begin = self.starts[at]
                end = self.starts[stop] if stop < n else self.end
                m = pattern.search(self._read(begin, end - begin))
                if m:
                    return self.line_at(begin + m.start())
                at = stop
            return None
        at = min(line, n)
        while at > 0:
            end = self.starts[at] if at < n else self.end
            first = min(at - 1, self.line_at(max(0, end - BLOCK)))
            begin = self.starts[first]
            found = None
            for found in pattern.finditer(self._read(begin, end - begin)):  # noqa: B007
                pass
            if found is not None:
                return self.line_at(begin + found.start())
            at = first
        return None
