"""Loss curves for plotext: long series are cut to min and max per screen column first."""

from __future__ import annotations

import math
from collections.abc import Sequence

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
