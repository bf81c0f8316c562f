"""BSS Eval v4 in its images mode (the MUSDB18 / SiSEC 2018 standard, as museval computes it), in
torch, batched over sources, channels and frames, on the GPU when there is one.

For references s and estimates ŝ, shaped [sources, samples, channels]:

* distortion filters of 512 taps are fitted once over the whole track (v4), by least squares of
  each estimate on the delayed copies of all references (for SIR) and of its own reference (for
  ISR); the correlations come from block FFTs, and the block Toeplitz normal equations are
  solved by a block Levinson recursion for every estimate and channel at the same time;
* every frame (1 s windows and hops by default; a trailing partial window is dropped, as museval
  does) is decomposed into s_true, e_spat, e_interf and e_artif, with both channels pooled:
  SDR = 10·log10(Σ s² / Σ (ŝ − s)²), ISR = Σ s² / Σ e_spat², SIR = Σ (s + e_spat)² / Σ e_interf²,
  SAR = Σ (s + e_spat + e_interf)² / Σ e_artif²;
* a frame in which any reference is all zeros is undefined (NaN) for every source, as in museval;
* a silent (all-zero) estimate of a non-silent reference has SDR 0 dB in that frame, by the
  framewise definition (Σ s² / Σ (0 − s)² = 1); its ISR, SIR, SAR and SI-SDR are undefined (NaN),
  and the other sources' values are unaffected. museval refuses such input outright (a threshold
  easily produces one), which would make every stem of the track NaN, the good ones included;
* a track's score is the median over its defined frames, and a set's the median over tracks.

This is *not* the "sources" variant that fast_bss_eval, torchmetrics and mir_eval compute (there
the reference is filtered toward the estimate); `DEFINITION` names what these values are.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from core.separation.distortion import fit_all, fit_own, one_blas_thread

DEFINITION = "bsseval_v4_images"  # museval.evaluate(..., mode="v4"): SDR, ISR, SIR, SAR
SI_SDR_DEFINITION = "si_sdr"  # scale-invariant SDR, channels pooled, same framing
FILTERS = 512
T = TypeVar("T")


@dataclass
class Scores:
    """Per-frame values [sources, frames]; NaN where a frame is undefined."""

    sdr: torch.Tensor
    isr: torch.Tensor
    sir: torch.Tensor
    sar: torch.Tensor
    si_sdr: torch.Tensor
    loading: float = 0.0  # the references' diagonal loading (LOADING); 0 when none was needed

    @property
    def caveat(self) -> str:
        """What a loading means for these values, or "" when none was needed."""
        if not self.loading:
            return ""
        return (f"rank-deficient references (identical channels, a pure tone or silence): "
                f"distortion filters regularised at {self.loading:g} of a reference's energy")

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


# block FFT size of the correlations (grown for longer filters): blocks this small stay in
# cache, which outweighs transforming each sample 4/3 times (nfft / (nfft - taps) at 512 taps);
# about a fifth faster than 4096 on the 2-core machine (bench/bsseval_content_bench.py)
CORR_NFFT = 2048
CORR_GROUP = 8  # blocks transformed together, in buffers reused from group to group
FRAME_CHUNK_BYTES = 128 << 20  # frames decomposed together, likewise
# the last evaluation's frame buffers (about FRAME_CHUNK_BYTES), kept for the next of the same
# frame shape: a track's evaluation otherwise spends a fifth of its time having the system
# supply fresh pages (bench/bsseval_content_bench.py); a concurrent evaluation makes its own
_SPARE: dict[tuple[Any, ...], tuple[torch.Tensor, ...]] = {}
_SPARE_LOCK = threading.Lock()


def _correlations(
    ref: torch.Tensor, est: torch.Tensor, taps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlations of the references with themselves and of the estimates with the
    references, for lags 0 <= k < taps, from tracks [sources, n, channels]; rows and columns
    are signals ordered (source, channel):

        p[i, j, k] = Σ_t x_i(t + k) · x_j(t)        q[c, j, k] = Σ_t e_c(t + k) · x_j(t)

    The track is cut into blocks of `step` samples. Each block of x is zero padded to nfft,
    and the `a` side (x and e) reads nfft samples from the block's start, so every pair
    (t, t + k) with t in the block is inside one circular correlation of length nfft. The
    cross-spectra are summed over blocks (one small matrix product per frequency) before the
    inverse FFT. Blocks go through in small groups whose buffers are reused: fresh memory
    costs more here than the FFTs.
    """
    nsrc, n, nchan = ref.shape
    m = nsrc * nchan
    nfft = max(CORR_NFFT, 4 << (taps - 1).bit_length())
    step = nfft - taps
    blocks = math.ceil(n / step)
    if ref.device.type != "cpu" or blocks < 2 * CORR_GROUP:
        inner = _cross_spectra(ref, est, nfft, step, 0, blocks)
    else:  # the track's two halves on two cores
        half = blocks // 2
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(_on_one_thread, _cross_spectra, ref, est, nfft, step, half, blocks)
            inner = _on_one_thread(_cross_spectra, ref, est, nfft, step, 0, half)
            inner += second.result()
    r = torch.fft.irfft(inner, n=nfft, dim=0)[:taps]  # [taps, a signal, b signal]
    return r[:, :m].permute(1, 2, 0), r[:, m:].permute(1, 2, 0)


def _cross_spectra(ref: torch.Tensor, est: torch.Tensor, nfft: int, step: int, first: int,
                   last: int) -> torch.Tensor:
    """_correlations' cross-spectra [bins, 2·M, M], summed over blocks first..last."""
    nsrc, _, nchan = ref.shape
    m = nsrc * nchan
    rows = 3 * m  # x and e read as `a`, then x zero padded as `b`
    group = max(1, min(last - first, CORR_GROUP))
    pad = torch.zeros(rows, group, nfft, dtype=torch.float64, device=ref.device)
    # spectra frequency-major (written so by the transform), one product per frequency
    spec = torch.empty(nfft // 2 + 1, rows, group, dtype=torch.complex128, device=ref.device)
    inner = torch.zeros(nfft // 2 + 1, 2 * m, m, dtype=spec.dtype, device=ref.device)
    views = [v.view(nsrc, nchan, group, nfft) for v in pad.split(m)]  # x, e, padded x
    for start in range(first, last, group):
        count = min(group, last - start)
        if count < group:
            pad.zero_()
        for view, track, length in (
            (views[0], ref, nfft),
            (views[1], est, nfft),
            (views[2], ref, step),
        ):
            _blocks_into(view[:, :, :count, :length], track, start * step, step)
        _rfft(pad, out=spec.permute(1, 2, 0))
        _add_products(inner, spec[:, : 2 * m], spec[:, 2 * m :])
    return inner


def _blocks_into(dst: torch.Tensor, track: torch.Tensor, start: int, step: int) -> None:
    """dst [sources, chans, count, length] <- the track's samples from start + i·step, zero
    past its end; track [sources, n, chans], contiguous."""
    nsrc, n, nchan = track.shape
    count, length = dst.shape[-2:]
    whole = min(count, max(0, (n - length - start) // step + 1))  # blocks inside the track
    if whole:
        src = track.as_strided(
            (nsrc, nchan, whole, length),
            (n * nchan, 1, step * nchan, nchan),
            track.storage_offset() + start * nchan,
        )
        dst[:, :, :whole].copy_(src)
    for i in range(whole, count):  # the last blocks run past the end
        begin = start + i * step
        have = max(0, min(length, n - begin))
        dst[:, :, i, :have].copy_(track[:, begin : begin + have].transpose(1, 2))
        dst[:, :, i, have:].zero_()


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
    ref, est = ref.contiguous(), est.contiguous()
    nsrc, n, nchan = ref.shape

    spans = frames(n, window, hop)
    # numpy's BLAS on one thread for both threads of this evaluation (a process-wide setting,
    # restored after)
    with one_blas_thread():
        # filters fitted on the whole track (v4): the references' correlations (the Gram
        # matrix) and q[c, k, a] = Σ_t e_c(t + a) x_k(t) = <x_k delayed a, e_c>; solved on
        # the CPU, where a sequence of small steps is fastest
        p, q = _correlations(ref, est, taps)
        work = _FrameWork(ref, est, taps, spans[0][1] - spans[0][0], hop)
        try:
            return _evaluate(work, spans, p, q, device)
        finally:
            work.release()


def _evaluate(work: _FrameWork, spans: list[tuple[int, int]], p: torch.Tensor, q: torch.Tensor,
              device: torch.device) -> Scores:
    """bss_eval's decomposition of every frame, given the track's correlations."""
    nsrc, _, nchan = work.ref.shape
    chunks = [(t, min(t + work.chunk, len(spans))) for t in range(0, len(spans), work.chunk)]
    # the recursions are long sequences of small steps, each on one core: the all-references
    # filters' here, and beside it, on one thread of torch's (a setting of that thread alone),
    # the first frames' own transforms (which need no filter), then the own-reference filters
    p_np, q_np = p.cpu().numpy(), q.cpu().numpy()
    with ThreadPoolExecutor(1) as pool:
        beside = pool.submit(_on_one_thread, _direct_then_own, work, chunks[0], p_np, q_np)
        c_all, loading = fit_all(p_np, q_np, nsrc, nchan)
        direct, (c_own, own_loading) = beside.result()
    loading = max(loading, own_loading)
    work.filters(*(torch.from_numpy(c).to(device) for c in (c_all, c_own)))
    parts = [work.projected(*chunks[0], direct)]
    parts += [work.projected(a, b, work.direct(a, b)) for a, b in chunks[1:]]
    *values, silent_ref, silent_est = (torch.cat(k) for k in zip(*parts, strict=True))
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=device)
    undefined = silent_ref[:, None] | silent_est  # [T, S]: SDR alone is defined for the latter
    sdr = torch.where(silent_ref[:, None], nan, values[0])
    rest = (torch.where(undefined, nan, v) for v in values[1:])
    return Scores(*(v.T.contiguous() for v in (sdr, *rest)), loading=loading)


class _FrameWork:
    """Buffers for decomposing a few frames at a time, reused from chunk to chunk. A chunk's
    `direct` part (its transforms, SDR and SI-SDR) needs no filter; its `projected` part does.

    Spectra are kept frequency-major, [bins, frames, signals], so that the projection on all
    references is one small matrix product per bin (a batched product, several times faster
    than a sum of broadcast products on the CPU)."""

    def __init__(self, ref: torch.Tensor, est: torch.Tensor, taps: int, w: int, hop: int) -> None:
        nsrc, _, nchan = ref.shape
        nfft = _fast_len(w + taps - 1)  # linear convolutions of a frame and a filter
        frame_bytes = 7 * nsrc * nchan * nfft * 8  # samples, spectra and projections of a frame
        chunk = max(1, FRAME_CHUNK_BYTES // frame_bytes)
        self.ref, self.est, self.w, self.hop, self.nfft, self.chunk = ref, est, w, hop, nfft, chunk
        m, bins, dev = nsrc * nchan, nfft // 2 + 1, ref.device
        self.block = bins * chunk * m
        self.key = (m, nfft, w, chunk, dev)
        with _SPARE_LOCK:
            spare = _SPARE.pop(self.key, None)
        if spare is None:
            spare = (torch.empty(2, chunk, m, nfft, dtype=torch.float64, device=dev),
                     torch.empty(chunk, m, nfft, dtype=torch.float64, device=dev),
                     torch.empty(5 * self.block, dtype=torch.complex128, device=dev))
            spare[0][..., w:].zero_()  # each frame zero padded; its samples are copied in
        # the samples of x and ŝ, a difference of them, and for a chunk of t frames,
        # frequency-major: the spectra of x and ŝ [bins, t, M], their projections on all and
        # on own references [bins, t, 2·M], and a difference [bins, t, M]
        self.samples, self.diff, self.store = spare

    def release(self) -> None:
        """Keep the buffers for the next evaluation of this shape (the last one only)."""
        with _SPARE_LOCK:
            _SPARE.clear()
            _SPARE[self.key] = (self.samples, self.diff, self.store)

    def _frequency_major(self, first: int, t: int, width: int = 1) -> torch.Tensor:
        """[bins, t, width·M] from block `first` of the store, for a chunk of t frames."""
        m = self.samples.shape[2]
        size = self.block // self.chunk * t * width
        return self.store[first * self.block : first * self.block + size].view(-1, t, width * m)

    def filters(self, c_all: torch.Tensor, c_own: torch.Tensor) -> None:
        """The distortion filters' spectra, from c_all [M, taps, S, C], c_own [S, r, taps, C]:
        [bins, M, 2·S·C], all references' filters then own references' (zero elsewhere)."""
        m, _, nsrc, nchan = c_all.shape
        all_spec = _rfft(c_all.permute(0, 2, 3, 1), n=self.nfft)  # [M, S, C, F]
        own_spec = _rfft(c_own.permute(0, 1, 3, 2), n=self.nfft)  # [S, r, C, F]
        project = torch.zeros(all_spec.shape[-1], m, 2, nsrc, nchan, dtype=all_spec.dtype,
                              device=all_spec.device)
        project[:, :, 0] = all_spec.permute(3, 0, 1, 2)
        for j in range(nsrc):
            project[:, j * nchan : (j + 1) * nchan, 1, j] = own_spec[j].permute(2, 0, 1)
        self.project = project.view(-1, m, 2 * m)

    def direct(self, first: int, last: int) -> tuple[torch.Tensor, ...]:
        """Frames first..last into the buffers and their spectra; their SDR, SI-SDR and
        reference energy [frames, sources], "a reference is silent" [frames] and "this estimate
        is silent" [frames, sources]."""
        t, w, hop, nfft = last - first, self.w, self.hop, self.nfft
        nsrc, n, nchan = self.ref.shape
        for buf, track in zip(self.samples, (self.ref, self.est), strict=True):
            src = track.as_strided(
                (t, nsrc, nchan, w),
                (hop * nchan, n * nchan, 1, nchan),
                track.storage_offset() + first * hop * nchan,
            )
            buf[:t].view(t, nsrc, nchan, nfft)[..., :w].copy_(src)
        for row in range(2):
            _rfft(self.samples[row, :t], out=self._frequency_major(row, t).permute(1, 2, 0))
        x_t, e_t = (b[:t].view(t, nsrc, nchan * nfft) for b in self.samples)
        # Σ x², Σ ŝ·x and Σ ŝ² of each frame and source in one pass: pairs (x, ŝ) [t·S, 2, L]
        pairs = self.samples[:, :t].view(2, t * nsrc, nchan * nfft).transpose(0, 1)
        gram = torch.bmm(pairs, pairs.mT).view(t, nsrc, 2, 2)
        e_true, cross, e_est = gram[..., 0, 0], gram[..., 1, 0], gram[..., 1, 1]
        # SDR and SI-SDR's errors are summed on the samples, so that a perfect estimate is
        # exactly +inf (a difference of sums would leave rounding)
        diff = self.diff[:t].view(t, nsrc, nchan * nfft)
        sdr = _db(e_true, torch.linalg.vector_norm(torch.sub(e_t, x_t, out=diff), dim=-1).square())
        alpha = cross / e_true  # the scale that best fits the reference
        torch.mul(x_t, alpha[..., None], out=diff).sub_(e_t)
        si = _db(alpha.square() * e_true, torch.linalg.vector_norm(diff, dim=-1).square())
        # silent: all zeros (or samples too faint to square, below 1e-154)
        silent_ref, silent_est = e_true == 0, e_est == 0
        return sdr, si, e_true, silent_ref.any(-1), silent_est

    def projected(
        self, first: int, last: int, direct: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, ...]:
        """SDR, ISR, SIR, SAR, SI-SDR [frames, sources] and the silences, for the frames whose
        `direct` part is in the buffers."""
        t = last - first
        nsrc, _, nchan = self.ref.shape
        m = nsrc * nchan
        xspec, espec, tmp = (self._frequency_major(i, t) for i in (0, 1, 4))
        projections = _matmul(xspec, self.project, out=self._frequency_major(2, t, 2))
        p_all, p_own = projections[..., :m], projections[..., m:]

        def energy(v: torch.Tensor) -> torch.Tensor:
            """Σ over a frame's samples of the squared signal whose rfft is v [bins, t, M],
            per frame and source."""
            return _bin_energies(v, self.nfft).view(t, nsrc, nchan).sum(-1)

        def energy_of_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return energy(torch.sub(a, b, out=tmp))

        sdr, si, e_true, silent_ref, silent_est = direct
        isr = _db(e_true, energy_of_difference(p_own, xspec))
        sir = _db(energy(p_own), energy_of_difference(p_all, p_own))
        sar = _db(energy(p_all), energy_of_difference(espec, p_all))
        return sdr, isr, sir, sar, si, silent_ref, silent_est


def _matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Batched a @ b into out; numpy's on the CPU, twice as fast as torch's there on many
    small complex products."""
    if a.device.type != "cpu":
        return torch.matmul(a, b, out=out)
    np.matmul(a.numpy(), b.numpy(), out=out.numpy())
    return out


def _add_products(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """out += a @ bᴴ, batched; numpy's on the CPU, as _matmul."""
    if a.device.type != "cpu":
        out.baddbmm_(a, b.mH)
        return
    b_h = np.conj(b.numpy()).swapaxes(-1, -2)
    out.numpy().__iadd__(np.matmul(a.numpy(), b_h))


def _bin_energies(v: torch.Tensor, nfft: int) -> torch.Tensor:
    """Σ over bins of |v|² [..., M] for rfft spectra v [bins, ..., M] of length nfft: the
    energies of the signals (Parseval: the bins between DC and Nyquist count twice). numpy's
    einsum on the CPU, several times faster than torch's reductions there."""
    edges = [0] if nfft % 2 else [0, -1]  # DC and Nyquist
    if v.device.type != "cpu":
        parts = torch.view_as_real(v)
        full = torch.einsum("f...,f...->...", parts, parts)
        edge = sum(parts[i].square() for i in edges)
        return (2 * full - edge).sum(-1) / nfft
    parts = v.numpy().view(np.float64)  # [bins, ..., 2·M]: real and imaginary parts
    full = np.einsum("f...,f...->...", parts, parts)
    full = 2 * full - sum(np.square(parts[i]) for i in edges)
    return torch.from_numpy(full.reshape(*full.shape[:-1], -1, 2).sum(-1) / nfft)


def _rfft(x: torch.Tensor, n: int | None = None, out: torch.Tensor | None = None
          ) -> torch.Tensor:
    """torch.fft.rfft over the last dimension, into `out` (which may be a strided view), by
    numpy's pocketfft on the CPU: two to three times faster than torch's there, on these
    lengths (23040 and 2048 samples), and it lets other threads run meanwhile, as torch's
    does."""
    if x.device.type != "cpu":
        spectrum = torch.fft.rfft(x, n=n)
        return spectrum if out is None else out.copy_(spectrum)
    spectrum = np.fft.rfft(x.numpy(), n=n, out=None if out is None else out.numpy())
    return out if out is not None else torch.from_numpy(spectrum)


def _direct_then_own(work: _FrameWork, chunk: tuple[int, int], p: np.ndarray, q: np.ndarray
                     ) -> tuple[tuple[torch.Tensor, ...], tuple[np.ndarray, float]]:
    nsrc, _, nchan = work.ref.shape
    return work.direct(*chunk), fit_own(p, q, nsrc, nchan)


def _on_one_thread(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) on one of torch's threads: a setting of the calling thread alone (other
    threads keep their count), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ a·b over the last dimension, without a temporary of a's size."""
    return (a.unsqueeze(-2) @ b.unsqueeze(-1))[..., 0, 0]


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
