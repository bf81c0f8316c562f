"""The correlations BSS Eval's distortion filters are fitted from: of the references with
themselves and of the estimates with the references, over the whole track, by block FFTs."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import torch

from core.separation.kernels import add_products, on_one_thread, rfft

# block FFT size of the correlations (grown for longer filters): blocks this small stay in
# cache, which outweighs transforming each sample 4/3 times (nfft / (nfft - taps) at 512 taps);
# about a fifth faster than 4096 on the 2-core machine (bench/bsseval_content_bench.py)
CORR_NFFT = 2048
CORR_GROUP = 8  # blocks transformed together, in buffers reused from group to group


def correlations(
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
            second = pool.submit(on_one_thread, _cross_spectra, ref, est, nfft, step, half, blocks)
            inner = on_one_thread(_cross_spectra, ref, est, nfft, step, 0, half)
            inner += second.result()
    r = torch.fft.irfft(inner, n=nfft, dim=0)[:taps]  # [taps, a signal, b signal]
    return r[:, :m].permute(1, 2, 0), r[:, m:].permute(1, 2, 0)


def _cross_spectra(ref: torch.Tensor, est: torch.Tensor, nfft: int, step: int, first: int,
                   last: int) -> torch.Tensor:
    """correlations' cross-spectra [bins, 2·M, M], summed over blocks first..last."""
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
        rfft(pad, out=spec.permute(1, 2, 0))
        add_products(inner, spec[:, : 2 * m], spec[:, 2 * m :])
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
