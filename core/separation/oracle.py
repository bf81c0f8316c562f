"""The ideal ratio mask (IRM) oracle: the true stems' magnitudes, |S_j|^p / sum_k |S_k|^p, as masks
of the mixture's STFT (its phase kept), per channel, through the same STFT front and back end as
the separators. What a mask-based separator could reach at best on the same tracks; p = 1 is the
usual IRM (SiSEC 2018's IRM1), p = 2 the Wiener-gain variant (IRM2)."""

from __future__ import annotations

import numpy as np
import torch

from core.data.tracks import Track
from core.separation.spectral import Stft


@torch.no_grad()
def irm(track: Track, stft: Stft, power: float = 1.0) -> np.ndarray:
    """Estimates [stems, channels, n] of one track from its oracle masks."""
    mixture = torch.as_tensor(track.mixture, dtype=torch.float32)  # [C, n]
    stems = torch.as_tensor(track.stems, dtype=torch.float32)  # [S, C, n]
    spec = stft.spec(mixture)  # [C, 512, T]
    mags = stft.spec(stems).abs() ** power  # [S, C, 512, T]
    masks = mags / mags.sum(dim=0, keepdim=True).clamp_min(1e-12)
    return stft.wave(masks * spec[None], mixture.shape[-1]).numpy()
