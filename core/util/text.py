"""Text from people and scripts (notes, tags, metric names, paths, log lines, input echoed in a
refusal) made safe to put on a terminal: no control sequence of theirs ever reaches it. The
record keeps what was given; only what is shown is changed."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, and the C1 controls (0x9b is a one-byte CSI)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# whole escape sequences: CSI (colours, cursor moves, clear screen), OSC (window titles,
# hyperlinks, clipboard), DCS/PM/APC strings, and two-byte escapes
_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_ -/]?[0-~]?"
)


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return "^" + chr(code + 0x40)  # ^[ for ESC, ^G for BEL, as `cat -v` shows them
    if code == 0x7F:
        return "^?"
    return f"<{code:02x}>"


def has_control_but_newline(text: str) -> bool:
    """Whether text holds a control character other than newline and tab (a table's lines)."""
    return _CONTROL.search(text) is not None


def has_control(text: str) -> bool:
    """Whether a name holds a control character (tab and newline included)."""
    return bool(_CONTROL.search(text)) or "\t" in text or "\n" in text


def visible(text: str, keep: str = "\t\n") -> str:
    """`text` with every control character shown as caret notation (`^[`, `^G`), except those
    in `keep`; for notes, tags, names and paths."""
    if not _CONTROL.search(text):
        return text
    if not keep:
        return _CONTROL.sub(_picture, text)
    return "".join(c if c in keep else _CONTROL.sub(_picture, c) for c in text)


def log_line(text: str) -> str:
    """A line a script printed, for a screen that draws it as plain text: escape sequences
    (colours, cursor moves, titles, clear screen) removed, what a carriage return overwrote
    dropped (a progress bar shows its last state), any other control character made visible."""
    if "\r" in text:
        text = text.rstrip("\r").rsplit("\r", 1)[-1]
    if "\x1b" in text:
        text = _SEQUENCE.sub("", text)
    return visible(text, keep="\t")


def fmt_bytes(n: int | None) -> str:
    """`-`, `812B`, `4.2K`, `310M`, `1.2G`, `3.4T`: a size in at most five characters."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if size < 1024 or unit == "T":
            return f"{size:.0f}{unit}" if unit == "B" or size >= 10 else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}T"
