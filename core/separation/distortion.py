"""The distortion filters of BSS Eval v4: least-squares filters of every estimate on the
delayed copies of all references (for SIR) and of its own reference (for ISR), fitted once over
the whole track from the tracks' correlations.

The normal equations are block Toeplitz; they are solved by a block Levinson recursion, in
numpy, where a long sequence of small steps is fastest. References that are numerically
rank-deficient (identical channels, pure tones, silence) get a stated diagonal loading.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np

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


CHECK_EVERY = 8  # blocks between positive-definiteness checks of the prediction error
# The recursion's cost is mostly numpy's per-call overhead, paid once per block: lags are
# grouped so that a block is about this many signals wide (fewer, larger steps)
BLOCK_WIDTH = 8


def block_levinson(r: np.ndarray, d: np.ndarray, floor: float = 0.0) -> np.ndarray | None:
    """Solve T x = d for a symmetric positive definite block Toeplitz T, T[i, j] = R(j − i),
    R(−k) = R(k)ᵀ (Whittle's multichannel Levinson recursion): O(N² M³) instead of Cholesky's
    O(N³ M³) on the assembled matrix.

    r: [..., N, M, M] the blocks R(0) .. R(N−1); d: [..., N, M, K]. Returns x like d, or None
    when the backward prediction-error matrix stops being positive definite, or has an
    eigenvalue below `floor` times the mean of R(0)'s diagonal (the system is then
    ill-conditioned).

    g consecutive lags are solved as one block: T is also block Toeplitz in blocks of g·M,
    R'(k)[p, q] = R(g·k + q − p), so the recursion takes N / g steps of g·M signals.
    """
    *batch, n_blocks, m, _ = r.shape
    group = 1
    while group * 2 * m <= BLOCK_WIDTH and n_blocks % (group * 2) == 0:
        group *= 2
    if group == 1:
        return _levinson(r, d, floor)
    lags = np.concatenate([np.swapaxes(r[..., group - 1 : 0 : -1, :, :], -1, -2), r], axis=-3)
    k, p, q = np.ogrid[: n_blocks // group, :group, :group]
    blocks = lags[..., group * k + q - p + group - 1, :, :]  # [..., N/g, p, q, M, M]
    blocks = np.swapaxes(blocks, -3, -2).reshape(*batch, n_blocks // group, group * m, group * m)
    x = _levinson(blocks, d.reshape(*batch, n_blocks // group, group * m, d.shape[-1]), floor)
    return None if x is None else x.reshape(d.shape)


def _levinson(r: np.ndarray, d: np.ndarray, floor: float) -> np.ndarray | None:
    """block_levinson's recursion, on the blocks as given. The backward prediction error
    only shrinks as the recursion grows (in exact arithmetic), so it is checked every
    CHECK_EVERY blocks and at the last; a breakdown in between shows there too, or as a
    non-finite solution.

    The predictors and the solution are kept transposed, [..., M, N·M], so that every update
    is a row-contiguous add, and each step costs a few calls: one matrix product for the sums
    over past blocks of F and x, one for B's, and one each for the three updates
        B' = [F·β; 0] + [0; B],   F' = F + [0; B·α],   x' = x + B'·γ.
    In numpy: its small matrix products and solves cost a fraction of torch's on the CPU.
    """
    *batch, n_blocks, m, _ = r.shape
    k = d.shape[-1]
    width = n_blocks * m
    # rows[..., a, (j, b)] = R(n − j)ᵀ[a, b] for the last n blocks; cols: R(j + 1)[a, b]
    rows_all = np.swapaxes(np.swapaxes(r, -1, -2)[..., ::-1, :, :], -3, -2)
    rows_all = np.ascontiguousarray(rows_all).reshape(*batch, m, width)
    cols_all = np.ascontiguousarray(np.swapaxes(r, -3, -2)).reshape(*batch, m, width)
    fx = np.zeros((*batch, m + k, width))  # [Fᵀ; xᵀ]: one product gives both sums
    bwd = np.zeros((*batch, m, width))  # Bᵀ, and its next value in spare
    spare = np.zeros_like(bwd)
    fx[..., :m, :m] = np.eye(m)
    bwd[..., :m, :m] = np.eye(m)
    e_f = r[..., 0, :, :].copy()
    e_b = e_f.copy()
    shift = (floor * np.trace(e_b, axis1=-2, axis2=-1) / m)[..., None, None] * np.eye(m)
    coef = np.empty((*batch, m + k, m))  # [β | βγ]ᵀ, then [α | γ]ᵀ (negated)
    coef_t = np.swapaxes(coef, -1, -2)
    rhs = np.empty((*batch, m, k))
    try:
        np.linalg.cholesky(e_b - shift)
        fx[..., m:, :m] = np.swapaxes(np.linalg.solve(e_b, d[..., 0, :, :]), -1, -2)
        for n in range(1, n_blocks):
            past = n * m
            head = fx[..., :past]
            sums = rows_all[..., (n_blocks - 1 - n) * m : (n_blocks - 1) * m] @ np.swapaxes(
                head, -1, -2
            )
            delta_f = sums[..., :m]
            delta_b = cols_all[..., m : past + m] @ np.swapaxes(bwd[..., :past], -1, -2)
            minus_alpha = np.linalg.solve(e_b, delta_f)
            minus_beta = np.linalg.solve(e_f, delta_b)
            e_f -= delta_b @ minus_alpha
            e_b -= delta_f @ minus_beta
            if n % CHECK_EVERY == 0 or n == n_blocks - 1:
                np.linalg.cholesky(e_b - shift)  # raises when no longer (well) positive definite
            gamma = np.linalg.solve(e_b, np.subtract(d[..., n, :, :], sums[..., m:], out=rhs))
            coef_t[..., :m] = minus_beta
            np.matmul(minus_beta, gamma, out=coef_t[..., m:])
            f_beta = coef @ head[..., :m, :]  # −[β | βγ]ᵀ Fᵀ, from the old F
            coef_t[..., :m] = minus_alpha
            np.negative(gamma, out=coef_t[..., m:])
            fx[..., m:, :past] -= f_beta[..., m:, :]
            fx[..., m : past + m] -= coef @ bwd[..., :past]
            np.negative(f_beta[..., :m, :], out=spare[..., :past])
            spare[..., past : past + m] = 0
            spare[..., m : past + m] += bwd[..., :past]
            bwd, spare = spare, bwd
    except np.linalg.LinAlgError:
        return None
    x = fx[..., m:, :].reshape(*batch, k, n_blocks, m)  # xᵀ: [..., K, (block, M)]
    out = np.ascontiguousarray(np.swapaxes(np.swapaxes(x, -3, -2), -1, -2))
    return out if np.isfinite(out).all() else None


def fit_filters(p: np.ndarray, q: np.ndarray, nsrc: int, nchan: int
             ) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares distortion filters of every estimate on all references (c_all:
    [ref signal, tap, est source, chan]) and on its own reference (c_own: [source, ref chan,
    tap, est chan]), from p = reference correlations [M, M, taps] and q = estimate-reference
    correlations [M, M, taps]; and the diagonal loading the references needed (0: none)."""
    m, taps = nsrc * nchan, p.shape[-1]
    r = p.transpose(2, 0, 1).copy()  # R(k)[i, j] = r_ij(k): [taps, M, M]
    r[0] += EPS * np.eye(m)  # museval's eps on the diagonal of the Gram
    d = np.ascontiguousarray(q.transpose(2, 1, 0))  # d[a, i, c] = <x_i delayed a, e_c>
    c_all, loaded = _loaded_levinson(r, d)
    if c_all is None:  # not even with the loading: a dense solve
        c_all = _dense_filters(p, q)
    # each estimate on its own reference only: the diagonal blocks, one system per source
    own_sl = [slice(j * nchan, (j + 1) * nchan) for j in range(nsrc)]
    c_own, own_loaded = _loaded_levinson(
        np.stack([r[:, sl, sl] for sl in own_sl]), np.stack([d[:, sl, sl] for sl in own_sl])
    )
    if c_own is None:
        c_own = np.stack([_dense_filters(p[sl, sl], q[sl, sl]) for sl in own_sl])
    all_out = c_all.transpose(1, 0, 2).reshape(m, taps, nsrc, nchan)
    # [source, ref chan, tap, est chan]
    return all_out, c_own.transpose(0, 2, 1, 3), max(loaded, own_loaded)


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
    """numpy's BLAS held to one thread, for the recursion: its products are small, and on 2
    cores a second BLAS thread costs more in hand-offs than it gives (the recursion takes about
    a third longer with it)."""
    return _blas_controller().limit(limits=1, user_api="blas")


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, made once (it scans them)."""
    from threadpoolctl import ThreadpoolController  # declared in pyproject.toml

    return ThreadpoolController()
