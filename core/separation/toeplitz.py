"""Symmetric positive definite block Toeplitz systems T x = d, T[i, j] = R(j − i) with
R(−k) = R(k)ᵀ: the normal equations of BSS Eval's distortion filters.

Whittle's multichannel Levinson recursion finds the forward and backward predictors F and B in
O(N² M³). They give the first and last block columns of T⁻¹, X = F e_f⁻¹ and Y = B e_b⁻¹, and
with them the whole inverse (Gohberg and Heinig):

    T⁻¹ = L(X) X₀⁻¹ L(X)ᵀ − L(ZY) Y_{N−1}⁻¹ L(ZY)ᵀ,    X₀⁻¹ = e_f,  Y_{N−1}⁻¹ = e_b,

where L(v) is the lower block triangular Toeplitz matrix whose first block column is v and Z
shifts by one block. Each factor is a block convolution, applied by FFT in O(N log N) per right
hand side. The recursion so carries the predictors alone, not the K solutions beside them,
which is most of its memory traffic. The formula's error grows with the square of T's condition
number, so the solution is refined on its residual d − T x (T also applied by FFT) until a
correction no longer changes it: it then agrees with a dense solve as closely as the solutions
carried through the recursion did (tests/test_bsseval.py).
"""

from __future__ import annotations

import numpy as np

CHECK_EVERY = 8  # blocks between positive-definiteness checks of the prediction error
# The recursion's cost is partly numpy's per-call overhead, paid once per block: lags are
# grouped so that a block is about this many signals wide (fewer, larger steps)
BLOCK_WIDTH = 8
# refinements of the solution on its residual: at most REFINE, and none once a correction moves
# no value by more than SETTLED of the largest
REFINE = 3
SETTLED = 1e-12


def block_levinson(r: np.ndarray, d: np.ndarray, floor: float = 0.0) -> np.ndarray | None:
    """Solve T x = d for a symmetric positive definite block Toeplitz T, T[i, j] = R(j − i).

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
        return _solve(r, d, floor)
    lags = np.concatenate([np.swapaxes(r[..., group - 1 : 0 : -1, :, :], -1, -2), r], axis=-3)
    k, p, q = np.ogrid[: n_blocks // group, :group, :group]
    blocks = lags[..., group * k + q - p + group - 1, :, :]  # [..., N/g, p, q, M, M]
    blocks = np.swapaxes(blocks, -3, -2).reshape(*batch, n_blocks // group, group * m, group * m)
    x = _solve(blocks, d.reshape(*batch, n_blocks // group, group * m, d.shape[-1]), floor)
    return None if x is None else x.reshape(d.shape)


def _solve(r: np.ndarray, d: np.ndarray, floor: float) -> np.ndarray | None:
    """block_levinson on the blocks as given."""
    try:
        predictors = _predictors(r, floor)
    except np.linalg.LinAlgError:
        return None
    inverse = _Inverse(r, *predictors)
    x = inverse @ d
    for _ in range(REFINE):
        correction = inverse @ (d - inverse.toeplitz(x))
        x += correction
        if not np.abs(correction).max() > SETTLED * np.abs(x).max():  # NaN stops too
            break
    return x if np.isfinite(x).all() else None


def _predictors(
    r: np.ndarray, floor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The recursion: Fᵀ and Bᵀ as [..., M, N·M] (block j in columns j·M .. (j+1)·M) and the
    final forward and backward prediction errors e_f, e_b. Each step is

        F' = F + [0; B·α],    B' = [F·β; 0] + [0; B],

    with Bᵀ kept at the right end of its buffer, moving left one block a step, so that
    neither is copied. The backward partial correlation is the forward's transpose, so one
    product gives both. Raises LinAlgError when the backward error stops being (well) positive
    definite; it only shrinks as the recursion grows (in exact arithmetic), so it is checked
    every CHECK_EVERY blocks and at the last, and a breakdown in between shows there, or as a
    non-finite solution.
    """
    *batch, n_blocks, m, _ = r.shape
    width = n_blocks * m
    # rows[..., a, (j, b)] = R(n − j)ᵀ[a, b] for the last n blocks
    rows_all = np.swapaxes(np.swapaxes(r, -1, -2)[..., ::-1, :, :], -3, -2)
    rows_all = np.ascontiguousarray(rows_all).reshape(*batch, m, width)
    fwd = np.zeros((*batch, m, width))
    bwd = np.zeros_like(fwd)
    from_b = np.empty_like(fwd)  # the updates, from the old F and B before either moves
    from_f = np.empty_like(bwd)
    fwd[..., :m] = np.eye(m)
    start = width - m  # Bᵀ's first column
    bwd[..., start:] = np.eye(m)
    errors = np.empty((*batch, 2, m, m))  # [e_b, e_f]
    errors[:] = r[..., None, 0, :, :]
    deltas = np.empty_like(errors)  # [Δ, Δᵀ]: the forward and backward partial correlations
    e_b, e_f = errors[..., 0, :, :], errors[..., 1, :, :]
    shift = (floor * np.trace(e_b, axis1=-2, axis2=-1) / m)[..., None, None] * np.eye(m)
    np.linalg.cholesky(e_b - shift)
    for n in range(1, n_blocks):
        past = n * m
        f_old, b_old = fwd[..., :past], bwd[..., start : start + past]
        delta = deltas[..., 0, :, :]
        np.matmul(rows_all[..., width - m - past : width - m], np.swapaxes(f_old, -1, -2),
                  out=delta)
        deltas[..., 1, :, :] = np.swapaxes(delta, -1, -2)
        coef = np.linalg.solve(errors, deltas)  # [−α, −β] = [e_b⁻¹ Δ, e_f⁻¹ Δᵀ]
        errors -= deltas @ coef[..., ::-1, :, :]  # e_b −= Δ e_f⁻¹ Δᵀ, e_f −= Δᵀ e_b⁻¹ Δ
        if n % CHECK_EVERY == 0 or n == n_blocks - 1:
            np.linalg.cholesky(e_b - shift)  # raises when no longer (well) positive definite
        coef_t = np.swapaxes(coef, -1, -2)
        np.matmul(coef_t[..., 0, :, :], b_old, out=from_b[..., :past])
        np.matmul(coef_t[..., 1, :, :], f_old, out=from_f[..., :past])
        fwd[..., m : past + m] -= from_b[..., :past]
        start -= m
        bwd[..., start : start + past] -= from_f[..., :past]
    return fwd, bwd, e_f.copy(), e_b.copy()


class _Inverse:
    """T⁻¹ and T as block convolutions (circular, of length 2N, which no lag wraps around in),
    their kernels' spectra computed once: `inverse @ d` is T⁻¹ d, `inverse.toeplitz(x)` T x."""

    def __init__(self, r: np.ndarray, fwd: np.ndarray, bwd: np.ndarray, e_f: np.ndarray,
                 e_b: np.ndarray) -> None:
        *batch, n, m, _ = r.shape
        self.n, self.size = n, 2 * n

        def blocks(t: np.ndarray) -> np.ndarray:  # [..., M, N·M] transposed -> [..., N, M, M]
            return np.swapaxes(t.reshape(*batch, m, n, m), -3, -2)

        f_t, b_t = blocks(fwd), blocks(bwd)  # Fⱼᵀ, Bⱼᵀ
        x_t = np.linalg.solve(e_f[..., None, :, :], f_t)  # Xⱼᵀ = e_f⁻¹ Fⱼᵀ (e_f is symmetric)
        y_t = np.linalg.solve(e_b[..., None, :, :], b_t)
        zero = np.zeros((*batch, 1, m, m))
        zy_t = np.concatenate([zero, y_t[..., :-1, :, :]], axis=-3)  # (ZY)ⱼᵀ
        zb = np.concatenate([zero, np.swapaxes(b_t[..., :-1, :, :], -1, -2)], axis=-3)
        # L(X) X₀⁻¹ = L(F) and L(ZY) Y⁻¹ = L(ZB), kernels at lags 0 .. N−1; L(v)ᵀ is the
        # correlation with vᵀ: its kernel holds vₖᵀ at lag −k
        self.lower = self._spectrum(np.stack([np.swapaxes(f_t, -1, -2), zb]), 0)
        self.upper = self._spectrum(np.stack([x_t, zy_t]), 1)
        # T: R(k)ᵀ at lag k, R(k) at lag −k
        self.kernel = self._spectrum(np.swapaxes(r, -1, -2), 0, r[..., 1:, :, :])

    def _spectrum(self, ahead: np.ndarray, backward: int, behind: np.ndarray | None = None
                  ) -> np.ndarray:
        """The spectrum of a kernel holding ahead[k] at lag k (backward=0) or at lag −k
        (backward=1), and behind[k − 1] at lag −k."""
        kernel = np.zeros((*ahead.shape[:-3], self.size, *ahead.shape[-2:]))
        if backward:
            kernel[..., 0, :, :] = ahead[..., 0, :, :]
            kernel[..., : self.size - self.n : -1, :, :] = ahead[..., 1:, :, :]
        else:
            kernel[..., : self.n, :, :] = ahead
        if behind is not None:
            kernel[..., : self.size - self.n : -1, :, :] = behind
        return np.fft.rfft(kernel, axis=-3)

    def _apply(self, spectrum: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.fft.irfft(spectrum @ x, self.size, axis=-3)[..., : self.n, :, :]

    def __matmul__(self, d: np.ndarray) -> np.ndarray:
        both = self._apply(self.upper, np.fft.rfft(d, self.size, axis=-3))
        spectra = self.lower @ np.fft.rfft(both, self.size, axis=-3)
        return np.fft.irfft(spectra[0] - spectra[1], self.size, axis=-3)[..., : self.n, :, :]

    def toeplitz(self, x: np.ndarray) -> np.ndarray:
        return self._apply(self.kernel, np.fft.rfft(x, self.size, axis=-3))
