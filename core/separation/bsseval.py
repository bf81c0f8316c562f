"""BSS Eval v4 in its images mode (the MUSDB18 / SiSEC 2018 standard, as museval computes it), in
torch, batched over sources, channels and frames, on the GPU when there is one.

For references s and estimates ŝ, shaped [sources, samples, channels]:

* distortion filters of 512 taps are fitted once over the whole track (v4), by least squares of
  each estimate on the delayed copies of all references (for SIR) and of its own reference (for
  ISR); the Gram matrix of delayed references is built from block-FFT correlations and solved
  once with a Cholesky factorisation for every estimate and channel at the same time;
* every frame (1 s windows and hops by default; a trailing partial window is dropped, as museval
  does) is decomposed into s_true, e_spat, e_interf and e_artif, with both channels pooled:
  SDR = 10·log10(Σ s² / Σ (ŝ − s)²), ISR = Σ s² / Σ e_spat², SIR = Σ (s + e_spat)² / Σ e_interf²,
  SAR = Σ (s + e_spat + e_interf)² / Σ e_artif²;
* a frame in which any reference or any estimate is all zeros is undefined (NaN) for every source;
* a track's score is the median over its defined frames, and a set's the median over tracks.

This is *not* the "sources" variant that fast_bss_eval, torchmetrics and mir_eval compute (there
the reference is filtered toward the estimate); `DEFINITION` names what these values are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

DEFINITION = "bsseval_v4_images"  # museval.evaluate(..., mode="v4"): SDR, ISR, SIR, SAR
SI_SDR_DEFINITION = "si_sdr"  # scale-invariant SDR, channels pooled, same framing
FILTERS = 512
EPS = float(np.finfo(float).eps)


@dataclass
class Scores:
    """Per-frame values [sources, frames]; NaN where a frame is undefined."""

    sdr: torch.Tensor
    isr: torch.Tensor
    sir: torch.Tensor
    sar: torch.Tensor
    si_sdr: torch.Tensor

    def medians(self) -> dict[str, np.ndarray]:
        """Median over defined frames, per source (NaN when no frame is defined)."""
        return {k: _nanmedian(getattr(self, k)) for k in ("sdr", "isr", "sir", "sar", "si_sdr")}


def _nanmedian(x: torch.Tensor) -> np.ndarray:
    """Median of each row over its defined (non-NaN) values; NaN for a row without any."""
    rows = x.double().cpu().numpy()
    return np.array([np.nanmedian(r) if (~np.isnan(r)).any() else np.nan for r in rows])


def frames(length: int, window: int, hop: int) -> list[tuple[int, int]]:
    """museval's framing: floor((n - window + hop) / hop) windows, or one window of everything."""
    if window >= length:
        return [(0, length)]
    count = (length - window + hop) // hop
    return [(t * hop, min(t * hop + window, length)) for t in range(count)]


def _db(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    out = 10 * torch.log10(num / den)
    return torch.where(den == 0, torch.full_like(out, math.inf), out)


CORR_NFFT = 16384  # block FFT size of the correlations


def _correlations(
    signals: list[torch.Tensor], b: torch.Tensor, taps: int, nfft: int = CORR_NFFT
) -> list[torch.Tensor]:
    """For each a in `signals`: r[i, j, k] = Σ_t a_i(t + k) · b_j(t), lags 0 <= k < taps.

    The track is cut into blocks of nfft − taps samples. Pairs (t, t + k) inside one block come
    from the blocks' zero-padded spectra (the same spectra serve a signal as `a` and as `b`);
    pairs that straddle a block boundary come from short spectra of the `taps` samples either
    side of each boundary. The cross-spectra are summed over blocks (one small matrix product
    per frequency, on contiguous operands) before the inverse FFTs.
    """
    step = nfft - taps
    n = b.shape[-1]
    blocks = math.ceil(n / step)

    def spectra(x: torch.Tensor) -> torch.Tensor:  # [rows, blocks, F]
        return torch.fft.rfft(_padded(x, blocks * step).reshape(x.shape[0], blocks, step), n=nfft)

    def heads(x: torch.Tensor) -> torch.Tensor:  # the `taps` samples after each boundary
        x = _padded(x, blocks * step)
        return x[:, step:].unfold(-1, taps, step)[:, : blocks - 1]

    def tails(x: torch.Tensor) -> torch.Tensor:  # the `taps` samples before each boundary
        x = _padded(x, blocks * step)
        return x[:, step - taps :].unfold(-1, taps, step)[:, : blocks - 1]

    spectra_b = {id(b): spectra(b)}
    fb = spectra_b[id(b)].conj().resolve_conj().permute(2, 1, 0).contiguous()  # [F, blocks, B]
    if blocks > 1:
        tb = torch.fft.rfft(tails(b), n=2 * taps).conj().resolve_conj()
        tb = tb.permute(2, 1, 0).contiguous()  # [F2, boundaries, B]
    out = []
    for a in signals:
        fa = spectra_b.get(id(a))
        fa = spectra(a) if fa is None else fa
        inner = torch.bmm(fa.permute(2, 0, 1).contiguous(), fb)  # [F, A, B]
        r = torch.fft.irfft(inner.permute(1, 2, 0), n=nfft)[..., :taps]
        if blocks > 1:
            # a's head placed after b's tail: lag k pairs b's last samples with a's first
            ha = torch.fft.rfft(torch.nn.functional.pad(heads(a), (taps, 0)), n=2 * taps)
            cross = torch.bmm(ha.permute(2, 0, 1).contiguous(), tb)
            r = r + torch.fft.irfft(cross.permute(1, 2, 0), n=2 * taps)[..., :taps]
        out.append(r)
    return out


def _padded(x: torch.Tensor, length: int) -> torch.Tensor:
    """x [rows, n] zero padded to `length`: a view when x is the start of the rows of a longer
    zeroed buffer (as bss_eval's signals are), a copy otherwise."""
    offset, (row, col) = x.storage_offset(), x.stride()
    end = offset + (x.shape[0] - 1) * row + length
    if (
        x.dim() == 2
        and col == 1
        and row >= length
        and x.untyped_storage().nbytes() >= end * x.element_size()
    ):
        return x.as_strided((x.shape[0], length), (row, 1), offset)
    return torch.nn.functional.pad(x, (0, length - x.shape[-1]))


def _gram(p: torch.Tensor, taps: int) -> torch.Tensor:
    """Gram matrix of delayed signals, rows and columns ordered (signal, delay).

    G[(m, a), (n, b)] = Σ_t x_m(t − a) x_n(t − b) = r_mn(b − a), with r_mn(−d) = r_nm(d).
    """
    m = p.shape[0]
    full = torch.cat([p.transpose(0, 1).flip(-1)[..., :-1], p], dim=-1)  # lags −(L−1) .. L−1
    d = torch.arange(taps, device=p.device)
    idx = d[None, :] - d[:, None] + taps - 1  # [a, b] -> b − a
    return full[:, :, idx].permute(0, 2, 1, 3).reshape(m * taps, m * taps)


def block_levinson(r: torch.Tensor, d: torch.Tensor) -> torch.Tensor | None:
    """Solve T x = d for a symmetric positive definite block Toeplitz T, T[i, j] = R(j − i),
    R(−k) = R(k)ᵀ (Whittle's multichannel Levinson recursion): O(N² M³) instead of Cholesky's
    O(N³ M³) on the assembled matrix.

    r: [..., N, M, M] the blocks R(0) .. R(N−1); d: [..., N, M, K]. Returns x like d, or None
    when a prediction-error matrix stops being positive definite (then solve densely).
    Every sum over past blocks is one matrix product: the blocks are laid out [..., M, N·M].
    """
    *batch, n_blocks, m, _ = r.shape
    k = d.shape[-1]
    flat = (*batch, n_blocks * m)
    # rows[..., a, (j, b)] = R(n − j)ᵀ[a, b] for the last n blocks; cols: R(j + 1)[a, b]
    rows_all = r.transpose(-1, -2).flip(-3).transpose(-3, -2).reshape(*batch, m, n_blocks * m)
    cols_all = r.transpose(-3, -2).reshape(*batch, m, n_blocks * m)
    # the forward predictor F and the solution x side by side: one product gives both sums
    fx = torch.zeros(*flat, m + k, dtype=r.dtype, device=r.device)
    fwd, x = fx[..., :m], fx[..., m:]
    bwd = torch.zeros(*flat, m, dtype=r.dtype, device=r.device)
    eye = torch.eye(m, dtype=r.dtype, device=r.device)
    fwd[..., :m, :] = eye
    bwd[..., :m, :] = eye
    e_f = r[..., 0, :, :].clone()
    e_b = e_f.clone()
    chol, info = torch.linalg.cholesky_ex(e_b)
    if bool(info.any()):
        return None
    x[..., :m, :] = torch.cholesky_solve(d[..., 0, :, :], chol)
    for n in range(1, n_blocks):
        past = slice(0, n * m)
        rows = rows_all[..., (n_blocks - 1 - n) * m : (n_blocks - 1) * m]
        sums = rows @ fx[..., past, :]
        delta_f, eps_x = sums[..., :m], sums[..., m:]
        delta_b = cols_all[..., m : (n + 1) * m] @ bwd[..., past, :]
        alpha = -torch.linalg.solve(e_b, delta_f)
        beta = -torch.linalg.solve(e_f, delta_b)
        from_b = bwd[..., past, :] @ alpha
        from_f = fwd[..., past, :] @ beta
        shifted = bwd[..., past, :].clone()
        fwd[..., m : (n + 1) * m, :] += from_b
        bwd[..., past, :] = from_f
        bwd[..., m : (n + 1) * m, :] += shifted
        e_f = e_f + delta_b @ alpha
        e_b = e_b + delta_f @ beta
        chol, info = torch.linalg.cholesky_ex(0.5 * (e_b + e_b.transpose(-1, -2)))
        if bool(info.any()):
            return None
        gamma = torch.cholesky_solve(d[..., n, :, :] - eps_x, chol)
        x[..., : (n + 1) * m, :] += bwd[..., : (n + 1) * m, :] @ gamma
    out = x.contiguous().reshape(*batch, n_blocks, m, k)
    return out if bool(torch.isfinite(out).all()) else None


def _filters(
    p: torch.Tensor, q: torch.Tensor, nsrc: int, nchan: int, taps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares distortion filters of every estimate on all references (c_all:
    [ref signal, tap, est source, chan]) and on its own reference (c_own: [source, ref chan,
    tap, est chan]), from p = reference correlations [M, M, taps] and q = estimate-reference
    correlations [M, M, taps]."""
    m = nsrc * nchan
    r = p.permute(2, 0, 1).clone()  # R(k)[i, j] = r_ij(k): [taps, M, M]
    r[0] += EPS * torch.eye(m, dtype=r.dtype, device=r.device)  # museval's eps on the diagonal
    d = q.permute(2, 1, 0)  # d[a, i, c] = <x_i delayed a, e_c>: [taps, M, M]
    c_all = block_levinson(r, d)
    if c_all is None:  # not positive definite in floating point: a dense solve
        rhs = q.permute(1, 2, 0).reshape(m * taps, m)
        c_all = _solve(_gram(p, taps), rhs).reshape(m, taps, m).permute(1, 0, 2)
    own = []  # each estimate on its own reference only: small systems, solved densely
    for j in range(nsrc):
        sl = slice(j * nchan, (j + 1) * nchan)
        rhs = q[sl, sl].permute(1, 2, 0).reshape(nchan * taps, nchan)
        own.append(_solve(_gram(p[sl, sl], taps), rhs).reshape(nchan, taps, nchan))
    return c_all.permute(1, 0, 2).reshape(m, taps, nsrc, nchan), torch.stack(own)


def _solve(g: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    g = g + EPS * torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
    chol, info = torch.linalg.cholesky_ex(g)
    if int(info) == 0:
        return torch.cholesky_solve(d, chol)
    return torch.linalg.lstsq(g, d).solution  # singular: a silent reference, as museval falls back


def bss_eval(
    references: np.ndarray | torch.Tensor,
    estimates: np.ndarray | torch.Tensor,
    window: int = 44100,
    hop: int = 44100,
    taps: int = FILTERS,
    device: torch.device | str | None = None,
) -> Scores:
    """BSS Eval v4 (images) per source and frame; inputs [sources, samples, channels]."""
    device = torch.device(device) if device else torch.device("cpu")
    ref = torch.as_tensor(references, dtype=torch.float64, device=device)
    est = torch.as_tensor(estimates, dtype=torch.float64, device=device)
    if ref.dim() == 2:
        ref, est = ref[..., None], est[..., None]
    if ref.shape != est.shape:
        raise ValueError(f"references {tuple(ref.shape)} and estimates {tuple(est.shape)} differ")
    nsrc, n, nchan = ref.shape
    m = nsrc * nchan
    # signals [M, n] (index = source * nchan + channel), each row followed by zeros so that the
    # block correlations read their padding without copying the tracks again
    spare = 2 * CORR_NFFT
    buffer = torch.zeros(2, m, n + spare, dtype=torch.float64, device=device)
    buffer[0, :, :n] = ref.permute(0, 2, 1).reshape(m, n)
    buffer[1, :, :n] = est.permute(0, 2, 1).reshape(m, n)
    x, e = buffer[0, :, :n], buffer[1, :, :n]

    # filters fitted on the whole track (v4): one pass gives the references' correlations
    # (the Gram matrix) and q[c, k, a] = Σ_t e_c(t + a) x_k(t) = <x_k delayed a, e_c>
    p, q = _correlations([x, e], x, taps)
    c_all, c_own = _filters(p, q, nsrc, nchan, taps)

    # framewise decomposition in the frequency domain: every component is a linear convolution
    # shorter than nfft, so its energy follows from its spectrum (Parseval)
    spans = frames(n, window, hop)
    w = spans[0][1] - spans[0][0]
    xf = x.unfold(-1, w, hop if len(spans) > 1 else w)[:, : len(spans)].transpose(0, 1)
    ef = e.unfold(-1, w, hop if len(spans) > 1 else w)[:, : len(spans)].transpose(0, 1)
    nfft = _fast_len(w + taps - 1)
    all_spec = torch.fft.rfft(c_all, n=nfft, dim=1).permute(0, 2, 3, 1)  # [M, S, C, F]
    own_spec = torch.fft.rfft(c_own, n=nfft, dim=2).permute(0, 1, 3, 2)
    # Parseval for a real signal's rfft: the bins between DC and Nyquist count twice
    root = torch.full((nfft // 2 + 1,), (2.0 / nfft) ** 0.5, dtype=torch.float64, device=device)
    root[0] = nfft**-0.5
    if nfft % 2 == 0:
        root[-1] = nfft**-0.5
    step = max(1, FRAME_CHUNK_BYTES // (16 * m * (nfft // 2 + 1) * 4))
    parts = [
        _frame_scores(xf[t : t + step], ef[t : t + step], all_spec, own_spec, root, nfft, nsrc)
        for t in range(0, len(spans), step)
    ]
    scores = [torch.cat(k) for k in zip(*parts, strict=True)]  # each [T, S]
    silent = _any_silent(xf.reshape(len(spans), nsrc, nchan, w)) | _any_silent(
        ef.reshape(len(spans), nsrc, nchan, w)
    )
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=device)
    return Scores(*(torch.where(silent[:, None], nan, v).T.contiguous() for v in scores))


FRAME_CHUNK_BYTES = 48 << 20  # frames decomposed together: their spectra stay in cache


def _frame_scores(
    xf: torch.Tensor,
    ef: torch.Tensor,
    all_spec: torch.Tensor,
    own_spec: torch.Tensor,
    root: torch.Tensor,
    nfft: int,
    nsrc: int,
) -> tuple[torch.Tensor, ...]:
    """SDR, ISR, SIR, SAR and SI-SDR [frames, sources] of a few frames [T, M, w]."""
    t, nchan = xf.shape[0], xf.shape[1] // nsrc
    xspec = torch.fft.rfft(xf, n=nfft).mul_(root)  # [T, M, F], scaled for Parseval
    xs = xspec.view(t, nsrc, nchan, -1)
    espec = torch.fft.rfft(ef, n=nfft).mul_(root).view(t, nsrc, nchan, -1)
    p_all = xspec[:, 0, None, None, :] * all_spec[0]
    for k in range(1, xspec.shape[1]):
        p_all.addcmul_(xspec[:, k, None, None, :], all_spec[k])
    p_own = xs[:, :, 0, None, :] * own_spec[:, 0]
    for r in range(1, nchan):
        p_own.addcmul_(xs[:, :, r, None, :], own_spec[:, r])

    def energy(v: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(torch.view_as_real(v), dim=(-1, -2, -3)).square()

    # SDR and SI-SDR need no projection: computed on the samples, so that a perfect estimate
    # is exactly +inf
    x_t = xf.reshape(t, nsrc, nchan, -1)
    e_t = ef.reshape(t, nsrc, nchan, -1)
    e_true = x_t.square().sum(dim=(-1, -2))
    sdr = _db(e_true, (e_t - x_t).square().sum(dim=(-1, -2)))
    alpha = (e_t * x_t).sum(dim=(-1, -2)) / e_true  # the scale that best fits the reference
    si = _db(alpha.square() * e_true, (e_t - alpha[..., None, None] * x_t).square().sum((-1, -2)))
    isr = _db(e_true, energy(p_own - xs))
    sir = _db(energy(p_own), energy(p_all - p_own))
    sar = _db(energy(p_all), energy(espec - p_all))
    return sdr, isr, sir, sar, si


def _fast_len(n: int) -> int:
    """The smallest length >= n whose only prime factors are 2, 3 and 5 (fast FFTs)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


def _any_silent(frames_: torch.Tensor) -> torch.Tensor:
    """[frames, sources, chans, w] -> [frames]: some source is exactly zero throughout."""
    return (frames_.sum(dim=2) == 0).all(dim=-1).any(dim=-1)
