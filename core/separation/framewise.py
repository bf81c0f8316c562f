"""The framewise half of BSS Eval v4: each frame's SDR and SI-SDR, and with the distortion
filters its ISR, SIR and SAR, computed frequency-major in buffers kept between evaluations."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from core.separation.kernels import matmul, on_one_thread, rfft, sum_squares

FRAME_CHUNK_BYTES = 128 << 20  # frames decomposed together, likewise
# the last evaluation's frame buffers (about FRAME_CHUNK_BYTES), kept for the next of the same
# frame shape: a track's evaluation otherwise spends a fifth of its time having the system
# supply fresh pages (bench/bsseval_content_bench.py); a concurrent evaluation makes its own
_SPARE: dict[tuple[Any, ...], tuple[torch.Tensor, ...]] = {}
_SPARE_LOCK = threading.Lock()


def db(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    out = 10 * torch.log10(num / den)
    return torch.where(den == 0, torch.full_like(out, math.inf), out)


class FrameWork:
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
                     torch.empty(5 * self.block, dtype=torch.complex128, device=dev),
                     torch.zeros(bins, m, 2, nsrc, nchan, dtype=torch.complex128, device=dev))
            spare[0][..., w:].zero_()  # each frame zero padded; its samples are copied in
        # the samples of x and ŝ, a difference of them; for a chunk of t frames,
        # frequency-major: the spectra of x and ŝ [bins, t, M], their projections on all and
        # on own references [bins, t, 2·M], and a difference [bins, t, M]; and the filters'
        # spectra [bins, M, 2, S, C], all references' then own references' (zero elsewhere)
        self.samples, self.diff, self.store, self.filters = spare

    def release(self) -> None:
        """Keep the buffers for the next evaluation of this shape (the last one only)."""
        with _SPARE_LOCK:
            _SPARE.clear()
            _SPARE[self.key] = (self.samples, self.diff, self.store, self.filters)

    def _frequency_major(self, first: int, t: int, width: int = 1) -> torch.Tensor:
        """[bins, t, width·M] from block `first` of the store, for a chunk of t frames."""
        m = self.samples.shape[2]
        size = self.block // self.chunk * t * width
        return self.store[first * self.block : first * self.block + size].view(-1, t, width * m)

    def filters_all(self, c_all: torch.Tensor, first: int = 0, last: int | None = None) -> None:
        """The spectra of the filters on all references, c_all [M, taps, S, C]: those of
        reference signals first..last."""
        out = self.filters[:, first:last, 0].permute(1, 2, 3, 0)  # [M, S, C, bins]
        rfft(c_all[first:last].permute(0, 2, 3, 1), n=self.nfft, out=out)

    def filters_own(self, c_own: torch.Tensor) -> None:
        """The spectra of the filters on own references, c_own [S, r, taps, C], into the
        diagonal blocks: signal j·C + r of source j."""
        bins, m, _, nsrc, nchan = self.filters.shape
        step = self.filters.stride()
        out = self.filters.as_strided(  # [S, r, C, bins]
            (nsrc, nchan, nchan, bins),
            (nchan * step[1] + step[3], step[1], step[4], step[0]),
            self.filters.storage_offset() + step[2],
        )
        rfft(c_own.permute(0, 1, 3, 2), n=self.nfft, out=out)

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
            rfft(self.samples[row, :t], out=self._frequency_major(row, t).permute(1, 2, 0))
        x_t, e_t = (b[:t].view(t, nsrc, nchan * nfft) for b in self.samples)
        # Σ x², Σ ŝ·x and Σ ŝ² of each frame and source in one pass: pairs (x, ŝ) [t·S, 2, L]
        pairs = self.samples[:, :t].view(2, t * nsrc, nchan * nfft).transpose(0, 1)
        gram = torch.bmm(pairs, pairs.mT).view(t, nsrc, 2, 2)
        e_true, cross, e_est = gram[..., 0, 0], gram[..., 1, 0], gram[..., 1, 1]
        # SDR and SI-SDR's errors are summed on the samples, so that a perfect estimate is
        # exactly +inf (a difference of sums would leave rounding)
        diff = self.diff[:t].view(t, nsrc, nchan * nfft)
        sdr = db(e_true, torch.linalg.vector_norm(torch.sub(e_t, x_t, out=diff), dim=-1).square())
        alpha = cross / e_true  # the scale that best fits the reference
        torch.mul(x_t, alpha[..., None], out=diff).sub_(e_t)
        si = db(alpha.square() * e_true, torch.linalg.vector_norm(diff, dim=-1).square())
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
        bins = self.filters.shape[0]
        # the bins' two halves on the two cores, then DC and Nyquist again (Parseval: the bins
        # between them count twice)
        half = bins // 2
        with ThreadPoolExecutor(1) as pool:
            upper = pool.submit(on_one_thread, self._bin_sums, t, half, bins, True)
            sums = on_one_thread(self._bin_sums, t, 0, half, True) + upper.result()
        edges = [(0, 1)] if self.nfft % 2 else [(0, 1), (bins - 1, bins)]
        sums = 2 * sums - sum(self._bin_sums(t, lo, hi, False) for lo, hi in edges)
        energies = (sums / self.nfft).view(5, t, nsrc, nchan).sum(-1)
        isr_err, own, sir_err, every, sar_err = energies
        sdr, si, e_true, silent_ref, silent_est = direct
        return (sdr, db(e_true, isr_err), db(own, sir_err), db(every, sar_err), si, silent_ref,
                silent_est)

    def _bin_sums(self, t: int, lo: int, hi: int, project: bool) -> torch.Tensor:
        """Over bins lo..hi: the projections (when `project`), and Σ |v|² [5, t, M] of
        p_own − x, p_own, p_all − p_own, p_all and ŝ − p_all."""
        m = self.samples.shape[2]
        xspec, espec, tmp = (self._frequency_major(i, t)[lo:hi] for i in (0, 1, 4))
        projections = self._frequency_major(2, t, 2)[lo:hi]
        if project:
            matmul(xspec, self.filters[lo:hi].view(hi - lo, m, 2 * m), out=projections)
        p_all, p_own = projections[..., :m], projections[..., m:]
        return torch.stack([
            sum_squares(torch.sub(p_own, xspec, out=tmp)), sum_squares(p_own),
            sum_squares(torch.sub(p_all, p_own, out=tmp)), sum_squares(p_all),
            sum_squares(torch.sub(espec, p_all, out=tmp)),
        ])


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
