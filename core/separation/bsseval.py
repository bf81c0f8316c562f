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

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from core.separation.correlations import correlations
from core.separation.distortion import fit_all, fit_own, one_blas_thread
from core.separation.framewise import FrameWork
from core.separation.kernels import on_one_thread

DEFINITION = "bsseval_v4_images"  # museval.evaluate(..., mode="v4"): SDR, ISR, SIR, SAR
SI_SDR_DEFINITION = "si_sdr"  # scale-invariant SDR, channels pooled, same framing
FILTERS = 512


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
    spans = frames(ref.shape[1], window, hop)
    # numpy's BLAS on one thread for both threads of this evaluation (a process-wide setting,
    # restored after)
    with one_blas_thread():
        # filters fitted on the whole track (v4): the references' correlations (the Gram
        # matrix) and q[c, k, a] = Σ_t e_c(t + a) x_k(t) = <x_k delayed a, e_c>; solved on
        # the CPU, where a sequence of small steps is fastest
        p, q = correlations(ref, est, taps)
        work = FrameWork(ref, est, taps, spans[0][1] - spans[0][0], hop)
        try:
            return _evaluate(work, spans, p, q)
        finally:
            work.release()


def _evaluate(work: FrameWork, spans: list[tuple[int, int]], p: torch.Tensor, q: torch.Tensor
              ) -> Scores:
    """bss_eval's decomposition of every frame, given the track's correlations."""
    nsrc, _, nchan = work.ref.shape
    device = work.ref.device
    chunks = [(t, min(t + work.chunk, len(spans))) for t in range(0, len(spans), work.chunk)]
    # the recursions are long sequences of small steps, each on one core: the all-references
    # filters' here, and beside it, on one thread of torch's (a setting of that thread alone),
    # the first frames' own transforms (which need no filter), then the own-reference filters
    p_np, q_np = p.cpu().numpy(), q.cpu().numpy()
    with ThreadPoolExecutor(1) as pool:
        beside = pool.submit(on_one_thread, _direct_then_own, work, chunks[0], p_np, q_np)
        c_all, loading = fit_all(p_np, q_np, nsrc, nchan)
        c_all = torch.from_numpy(c_all).to(device)
        half = len(c_all) // 2  # their spectra: half here, half on the helper once it is free
        second = pool.submit(on_one_thread, work.filters_all, c_all, half)
        work.filters_all(c_all, 0, half)
        direct, own_loading = beside.result()
        second.result()
    loading = max(loading, own_loading)
    parts = [work.projected(*chunks[0], direct)]
    parts += [work.projected(a, b, work.direct(a, b)) for a, b in chunks[1:]]
    *values, silent_ref, silent_est = (torch.cat(k) for k in zip(*parts, strict=True))
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=device)
    undefined = silent_ref[:, None] | silent_est  # [T, S]: SDR alone is defined for the latter
    sdr = torch.where(silent_ref[:, None], nan, values[0])
    rest = (torch.where(undefined, nan, v) for v in values[1:])
    return Scores(*(v.T.contiguous() for v in (sdr, *rest)), loading=loading)


def _direct_then_own(work: FrameWork, chunk: tuple[int, int], p: np.ndarray, q: np.ndarray
                     ) -> tuple[tuple[torch.Tensor, ...], float]:
    """The first frames' direct part, then the own-reference filters (into work) and the
    loading they needed."""
    nsrc, _, nchan = work.ref.shape
    direct = work.direct(*chunk)
    c_own, loading = fit_own(p, q, nsrc, nchan)
    work.filters_own(torch.from_numpy(c_own).to(work.ref.device))
    return direct, loading
