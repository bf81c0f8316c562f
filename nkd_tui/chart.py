"""Loss curves for plotext: long series are cut to min and max per screen column first."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def decimate(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, columns: int
) -> tuple[np.ndarray, np.ndarray]:
    """At most 2 points per column: each bucket's min and max, so spikes stay visible."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    keep = np.isfinite(ys)
    if not keep.all():
        xs, ys = xs[keep], ys[keep]
    n = len(ys)
    columns = max(int(columns), 1)
    if n <= 2 * columns:
        return xs, ys
    edges = np.linspace(0, n, columns + 1).astype(int)
    lo = np.minimum.reduceat(ys, edges[:-1])
    hi = np.maximum.reduceat(ys, edges[:-1])
    mid = xs[(edges[:-1] + edges[1:]) // 2]
    return np.repeat(mid, 2), np.column_stack([lo, hi]).ravel()
