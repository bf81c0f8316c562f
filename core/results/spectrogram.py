"""Small spectrograms a terminal can draw: magnitude in dB on log-spaced frequency bands,
quantised to 0..255 over a fixed range below a reference level (the mixture's peak, so an
estimate and its reference are drawn on the same scale and a near-silent estimate is dark)."""

from __future__ import annotations

import numpy as np

BANDS = 48  # rows: log-spaced bands from LOW_HZ to the Nyquist frequency
COLUMNS = 200  # time columns
RANGE_DB = 80.0  # what 0..255 spans, below the reference level
LOW_HZ = 40.0
N_FFT = 2048


def power(audio: np.ndarray, rate: int, columns: int = COLUMNS) -> np.ndarray:
    """Band power [BANDS, columns] of mono or [channels, n] audio (channels averaged)."""
    mono = audio.mean(axis=0) if audio.ndim == 2 else audio
    mono = np.asarray(mono, dtype=np.float32)
    n = len(mono)
    hop = max(1, (n - N_FFT) // max(1, columns - 1)) if n > N_FFT else 1
    starts = np.minimum(np.arange(columns) * hop, max(0, n - N_FFT))
    padded = np.pad(mono, (0, max(0, N_FFT - n)))
    frames = np.stack([padded[s:s + N_FFT] for s in starts]) * np.hanning(N_FFT)
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # [columns, N_FFT/2+1]
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / rate)
    edges = np.geomspace(LOW_HZ, rate / 2, BANDS + 1)
    band = np.clip(np.searchsorted(edges, freqs) - 1, 0, BANDS - 1)
    keep = freqs >= LOW_HZ
    out = np.zeros((BANDS, columns), dtype=np.float64)
    np.add.at(out, band[keep], spec[:, keep].T)
    counts = np.bincount(band[keep], minlength=BANDS).clip(min=1)
    return out / counts[:, None]


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
