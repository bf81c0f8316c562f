"""Loss curves for plotext: long series are cut to min and max per screen column first."""

from __future__ import annotations

import math
from collections.abc import Sequence

from core.util.text import visible

NUMPY_FROM = 20_000


def decimate(
    x: Sequence[float], y: Sequence[float], columns: int
) -> tuple[list[float], list[float]]:
    """At most 2 points per column: each bucket's min and max, so spikes stay visible.

    Up to NUMPY_FROM points this is plain Python: numpy's import alone costs more than
    cutting a few thousand epochs.
    """
    columns = max(int(columns), 1)
    if len(y) <= NUMPY_FROM:
        pairs = [(a, b) for a, b in zip(x, y, strict=True) if math.isfinite(b)]
        if len(pairs) <= 2 * columns:
            return [a for a, _ in pairs], [b for _, b in pairs]
        xs_out: list[float] = []
        ys_out: list[float] = []
        n = len(pairs)
        for i in range(columns):
            bucket = pairs[n * i // columns : n * (i + 1) // columns]
            if not bucket:
                continue
            values = [b for _, b in bucket]
            mid = bucket[len(bucket) // 2][0]
            xs_out += [mid, mid]
            ys_out += [min(values), max(values)]
        return xs_out, ys_out
    import numpy as np

    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    keep = np.isfinite(ys)
    if not keep.all():
        xs, ys = xs[keep], ys[keep]
    n = len(ys)
    if n <= 2 * columns:
        return xs.tolist(), ys.tolist()
    edges = np.linspace(0, n, columns + 1).astype(int)
    lo = np.minimum.reduceat(ys, edges[:-1])
    hi = np.maximum.reduceat(ys, edges[:-1])
    mid = xs[(edges[:-1] + edges[1:]) // 2]
    return np.repeat(mid, 2).tolist(), np.column_stack([lo, hi]).ravel().tolist()


# ── the run chart ────────────────────────────────────────────────────────────────────────────

LOSS = "loss"  # train and val loss together: the chart's first view
SKIPPED = frozenset({"seconds", "train_seconds"})  # timings, not metrics
# Each series has its own colour and its own mark, so they differ without colour too.
STYLES = (("cyan", "braille", "⠒"), ("orange", "•", "•"), ("magenta", "x", "x"),
          ("green", "+", "+"), ("red", "o", "o"), ("blue", "*", "*"))
RICH_COLOUR = {"cyan": "cyan", "orange": "dark_orange", "magenta": "magenta", "green": "green",
               "red": "red", "blue": "dodger_blue1"}


def legend(names: Sequence[str]) -> list[tuple[str, str]]:
    """(text, rich style) pieces naming each series with its mark in its colour."""
    out = []
    for name, (colour, _mark, sample) in zip(names, STYLES * (len(names) // len(STYLES) + 1),
                                             strict=False):
        out += [(f"{sample}{sample} ", RICH_COLOUR[colour]), (f"{name}  ", "")]
    return out


def series_from(rows: Sequence[tuple]) -> dict[str, dict[int, float]]:
    """Per-epoch values by name from the store's (epoch, train, val, lr, extra JSON) rows."""
    import json

    out: dict[str, dict[int, float]] = {}
    for epoch, train, val, lr, extra in rows:
        values = {"train_loss": train, "val_loss": val, "lr": lr}
        if extra:
            try:
                values |= {visible(k, keep=""): v for k, v in json.loads(extra).items()
                           if k not in SKIPPED and isinstance(v, int | float)
                           and not isinstance(v, bool)}  # a script's name, drawn as text
            except ValueError:
                pass
        for name, value in values.items():
            if value is not None:
                out.setdefault(name, {})[int(epoch)] = float(value)
    return out


def views(names: Sequence[str]) -> list[str]:
    """What the metric picker offers: loss first, then every other recorded metric."""
    rest = sorted(n for n in names if n not in ("train_loss", "val_loss"))
    return [LOSS, *rest]


def curves_of(view: str, names: Sequence[str]) -> list[str]:
    if view == LOSS:
        return [n for n in ("train_loss", "val_loss") if n in names]
    return [view] if view in names else []


def reference(view: str, reported: dict[str, float]) -> tuple[str, float] | None:
    """The researcher's `reported` value that belongs on this view's axis, if any: the same
    name, the name without `val_`, or for an SDR view their `sdr_db`."""
    bare = view.removeprefix("val_")
    for key in (view, bare, *(("sdr_db", "sdr") if "sdr" in view else ())):
        value = reported.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return key, float(value)
    return None
