"""Small spectrograms a terminal can draw: magnitude in dB on log-spaced frequency bands,
quantised to 0..255 over a fixed range below a reference level (the mixture's peak, so an
estimate and its reference are drawn on the same scale and a near-silent estimate is dark)."""

from __future__ import annotations

import functools

import numpy as np

BANDS = 48  # rows: log-spaced bands from LOW_HZ to the Nyquist frequency
COLUMNS = 200  # time columns
RANGE_DB = 80.0  # what 0..255 spans, below the reference level
LOW_HZ = 40.0
N_FFT = 1024


def power(audio: np.ndarray, rate: int, columns: int = COLUMNS) -> np.ndarray:
    """Band power [BANDS, columns] of mono or [channels, n] audio (channels averaged)."""
    mono = np.asarray(audio.mean(axis=0) if audio.ndim == 2 else audio, dtype=np.float32)
    if len(mono) < N_FFT:
        mono = np.pad(mono, (0, N_FFT - len(mono)))
    n = len(mono)
    hop = max(1, (n - N_FFT) // max(1, columns - 1))
    starts = np.minimum(np.arange(columns) * hop, n - N_FFT)
    frames = mono[starts[:, None] + np.arange(N_FFT)[None, :]] * _window()
    spec = np.fft.rfft(frames, axis=1)  # float32 in, complex64 out
    return _bands(rate) @ (spec.real ** 2 + spec.imag ** 2).T  # [BANDS, columns]


@functools.cache
def _window() -> np.ndarray:
    return np.hanning(N_FFT).astype(np.float32)


@functools.cache
def _bands(rate: int) -> np.ndarray:
    """[BANDS, bins] weights: each FFT bin at or above LOW_HZ to its log-spaced band, averaged;
    a low band narrower than a bin takes the bin nearest its centre (no empty rows)."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / rate)
    edges = np.geomspace(LOW_HZ, rate / 2, BANDS + 1)
    band = np.clip(np.searchsorted(edges, freqs) - 1, 0, BANDS - 1)
    weights = np.zeros((BANDS, len(freqs)))
    keep = freqs >= LOW_HZ
    weights[band[keep], np.flatnonzero(keep)] = 1.0
    for b in np.flatnonzero(weights.sum(1) == 0):
        weights[b, np.argmin(np.abs(freqs - np.sqrt(edges[b] * edges[b + 1])))] = 1.0
    return (weights / weights.sum(1, keepdims=True)).astype(np.float32)


def quantise(band_power: np.ndarray, reference: float) -> np.ndarray:
    """dB below `reference` (a band power) mapped to 0..255 over RANGE_DB; uint8 [bands, cols]."""
    db = 10 * np.log10(np.maximum(band_power, 1e-20) / max(reference, 1e-20))
    return np.clip((db + RANGE_DB) / RANGE_DB * 255, 0, 255).astype(np.uint8)


def spectrograms(signals: dict[str, np.ndarray], rate: int, reference: str = "mixture"
                 ) -> dict[str, np.ndarray]:
    """Each signal's quantised spectrogram, all on the scale of `reference`'s loudest band."""
    powers = {name: power(audio, rate) for name, audio in signals.items()}
    level = float(powers[reference].max()) if reference in powers else \
        max(float(p.max()) for p in powers.values())
    return {name: quantise(p, level) for name, p in powers.items()}


def level_db(value: int) -> float:
    """The dB (below the reference) a quantised value stands for."""
    return value / 255 * RANGE_DB - RANGE_DB
