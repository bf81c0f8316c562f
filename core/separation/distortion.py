"""The distortion filters of BSS Eval v4: least-squares filters of every estimate on the
delayed copies of all references (for SIR) and of its own reference (for ISR), fitted once over
the whole track from the tracks' correlations.

The normal equations are block Toeplitz, solved in core.separation.toeplitz. References that
are numerically rank-deficient (identical channels, pure tones, silence) get a stated diagonal
loading.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np

from core.separation.toeplitz import block_levinson

EPS = float(np.finfo(float).eps)
# References are numerically rank-deficient (identical channels, pure tones, silence) when the
# recursion's prediction error falls below FLOOR of their mean energy: least-squares filters are
# then dominated by rounding and the framewise ISR, SIR and SAR swing by tens of dB (museval's
# too). Such filters are fitted with a diagonal loading, the first of LOADING (relative to that
# energy) that solves: a regularised projection, blind to directions holding less than that
# share of the energy. On a track of sine bass, mono-centre voice and kick, the values move by
# at most 0.7 dB for loadings from a third to three times 1e-4 (tests/test_bsseval.py).
FLOOR = 1e-9
LOADING = (1e-4, 1e-2)


def gram(p: np.ndarray, taps: int) -> np.ndarray:
    """Gram matrix of delayed signals, rows and columns ordered (signal, delay).

    G[(m, a), (n, b)] = Σ_t x_m(t − a) x_n(t − b) = r_mn(b − a), with r_mn(−d) = r_nm(d).
    """
    m = p.shape[0]
    full = np.concatenate([p.swapaxes(0, 1)[..., :0:-1], p], axis=-1)  # lags −(L−1) .. L−1
    d = np.arange(taps)
    idx = d[None, :] - d[:, None] + taps - 1  # [a, b] -> b − a
    return full[:, :, idx].transpose(0, 2, 1, 3).reshape(m * taps, m * taps)


def fit_all(p: np.ndarray, q: np.ndarray, nsrc: int, nchan: int) -> tuple[np.ndarray, float]:
    """Least-squares distortion filters of every estimate on all references, [ref signal, tap,
    est source, chan], from p = reference correlations [M, M, taps] and q = estimate-reference
    correlations [M, M, taps]; and the diagonal loading the references needed (0: none)."""
    m, taps = nsrc * nchan, p.shape[-1]
    c_all, loaded = _loaded_levinson(*_normal_equations(p, q))
    if c_all is None:  # not even with the loading: a dense solve
        c_all = _dense_filters(p, q)
    return c_all.transpose(1, 0, 2).reshape(m, taps, nsrc, nchan), loaded


def fit_own(p: np.ndarray, q: np.ndarray, nsrc: int, nchan: int) -> tuple[np.ndarray, float]:
    """Least-squares distortion filters of every estimate on its own reference only,
    [source, ref chan, tap, est chan], and the loading needed, as fit_all: the diagonal blocks
    of the same equations, one system per source."""
    own = [slice(j * nchan, (j + 1) * nchan) for j in range(nsrc)]
    r, d = _normal_equations(p, q)
    c_own, loaded = _loaded_levinson(np.stack([r[:, sl, sl] for sl in own]),
                                     np.stack([d[:, sl, sl] for sl in own]))
    if c_own is None:
        c_own = np.stack([_dense_filters(p[sl, sl], q[sl, sl]) for sl in own])
    return c_own.transpose(0, 2, 1, 3), loaded


def _normal_equations(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The blocks R(k)[i, j] = r_ij(k) [taps, M, M] of the references' Gram matrix, with
    museval's eps on its diagonal, and the right-hand sides d[a, i, c] = <x_i delayed a, e_c>
    [taps, M, M]."""
    r = p.transpose(2, 0, 1).copy()
    r[0] += EPS * np.eye(p.shape[0])
    return r, np.ascontiguousarray(q.transpose(2, 1, 0))


def _loaded_levinson(r: np.ndarray, d: np.ndarray) -> tuple[np.ndarray | None, float]:
    """block_levinson, and where the references are numerically rank-deficient (FLOOR), again
    with a diagonal loading of LOADING times the mean energy of a delayed signal, the smallest
    that works. Returns the solution (None if none worked) and the loading used."""
    x = block_levinson(r, d, FLOOR)
    if x is not None:
        return x, 0.0
    m = r.shape[-1]
    scale = np.trace(r[..., 0, :, :], axis1=-2, axis2=-1) / m  # per system
    scale = np.where(scale > 0, scale, 1.0)
    for rho in LOADING:
        loaded = r.copy()
        loaded[..., 0, :, :] += (rho * scale)[..., None, None] * np.eye(m)
        x = block_levinson(loaded, d)
        if x is not None:
            return x, rho
    return None, LOADING[-1]


def _dense_filters(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The same least-squares filters as block_levinson gives ([tap, ref signal, estimate]),
    from the assembled Gram matrix."""
    m, k, taps = p.shape[0], q.shape[0], p.shape[-1]
    rhs = q.transpose(1, 2, 0).reshape(m * taps, k)  # rows (ref signal, tap)
    return _solve(gram(p, taps), rhs).reshape(m, taps, k).transpose(1, 0, 2)


def _solve(g: np.ndarray, d: np.ndarray) -> np.ndarray:
    g = g + EPS * np.eye(g.shape[0])
    try:
        np.linalg.cholesky(g)
        return np.linalg.solve(g, d)
    except np.linalg.LinAlgError:  # singular: a silent reference, as museval falls back
        return np.linalg.lstsq(g, d, rcond=None)[0]


def one_blas_thread() -> contextlib.AbstractContextManager:
    """numpy's BLAS held to one thread, for BSS Eval: its products are small, and on 2 cores a
    second BLAS thread costs more in hand-offs than it gives (the recursion takes about a third
    longer with it)."""
    return _blas_controller().limit(limits=1, user_api="blas")


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, made once (it scans them)."""
    from threadpoolctl import ThreadpoolController  # declared in pyproject.toml

    return ThreadpoolController()
