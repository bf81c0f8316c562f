"""`eval_result_<stem>[_<split>].csv` that the researcher's own evaluation script writes (one row
per track, a column per BSS Eval measure, as nkd's own separation evaluation writes them): read as
metrics when the script has ended, per track and, unless the script said it itself, the median
over tracks per stem (the BSS Eval summary) and their mean over stems.

Input from an untrusted program: a file that cannot be read as such a table is said in one line
in the log and skipped; values must be finite numbers; only files written during the run, in the
script's working folder or the run's folder, are read.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from pathlib import Path
from typing import Any

NAME = re.compile(r"^eval_result_(?P<stem>[A-Za-z0-9-]+?)(?:_(?P<split>val|test))?\.csv$")
MEASURES = ("sdr", "sir", "isr", "sar", "si_sdr")
TRACK_COLUMNS = ("track", "name", "song", "title", "file")
SUMMARY_ROWS = ("mean", "median", "average", "all", "total")
MAX_BYTES = 8 << 20


def _measure(header: str) -> str | None:
    """`SDR`, `sdr (dB)`, `SI-SDR` -> the measure's name, else None."""
    name = re.sub(r"\(.*?\)|\[.*?\]|db\b", "", header.strip().lower()).strip().replace("-", "_")
    return name if name in MEASURES else None


def result_files(folders: list[Path], since: float) -> list[Path]:
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("eval_result_*.csv")):
            try:
                fresh = path.is_file() and not path.is_symlink() and path.stat().st_mtime >= since
            except OSError:
                continue
            if fresh and NAME.match(path.name):
                found.setdefault(path.name, path)  # the script's own folder first
    return list(found.values())


def read_result(path: Path) -> list[dict[str, Any]]:
    """Metric events of one file: per track, then the summary per measure. ValueError (its
    message says why) for a file that is not such a table."""
    match = NAME.match(path.name)
    if match is None:
        raise ValueError("not named eval_result_<stem>[_val|_test].csv")
    if path.stat().st_size > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES >> 20} MB")
    stem, split = match["stem"], match["split"]
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError("empty")
    header = rows[0]
    measures = {i: m for i, h in enumerate(header) if (m := _measure(h))}
    if not measures:
        raise ValueError(f"no SDR/SIR/ISR/SAR column (columns: {', '.join(header[:8])})")
    track_col = next((i for i, h in enumerate(header) if h.strip().lower() in TRACK_COLUMNS),
                     None)
    where = {"stem": stem, **({"split": split} if split else {})}
    events: list[dict[str, Any]] = []
    per_track: dict[str, list[float]] = {m: [] for m in measures.values()}
    given: dict[str, float] = {}
    for n, row in enumerate(rows[1:], start=1):
        track = row[track_col].strip() if track_col is not None and track_col < len(row) else ""
        track = track[:200] or f"row {n}"
        for i, measure in measures.items():
            try:
                value = float(row[i])
            except (IndexError, ValueError):
                continue
            if not math.isfinite(value):
                continue
            if track.lower() in SUMMARY_ROWS:
                given[measure] = value
                continue
            per_track[measure].append(value)
            events.append({"type": "metric", "name": measure, "value": value, "track": track,
                           **where})
    for measure, values in per_track.items():
        value = given.get(measure, statistics.median(values) if values else None)
        if value is not None:
            events.append({"type": "metric", "name": measure, "value": value, **where})
    return events
