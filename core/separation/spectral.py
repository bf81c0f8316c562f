"""STFT front and back end of the separators: 512 magnitude bins in, waveforms out.

The 513th (Nyquist) bin is dropped on the way in and restored as zero on the way out, so the
model sees 512 bins without a hard-coded reshape, and the inverse STFT gets a full spectrum.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from core.registry.settings import with_defaults
from core.separation.models import BINS


@dataclass(frozen=True)
class Stft:
    sample_rate: int
    n_fft: int
    hop_length: int

    @classmethod
    def from_params(cls, params: dict) -> Stft:
        """From a run's settings; keys it lacks take the schema's separation defaults."""
        p = with_defaults("separation", params)
        return cls(int(p["sample_rate"]), int(p["n_fft"]), int(p["hop_length"]))

    def as_meta(self) -> dict:
        return asdict(self)

    def _window(self, x: torch.Tensor) -> torch.Tensor:
        return torch.hann_window(self.n_fft, device=x.device, dtype=x.dtype)

    def spec(self, waves: torch.Tensor) -> torch.Tensor:
        """[..., n] -> complex [..., 512, frames] (Nyquist dropped)."""
        if self.n_fft // 2 != BINS:
            raise ValueError(
                f"n_fft {self.n_fft} gives {self.n_fft // 2 + 1} bins; models use "
                f"{BINS} + Nyquist (n_fft 1024)"
            )
        shape = waves.shape
        s = torch.stft(
            waves.reshape(-1, shape[-1]),
            self.n_fft,
            self.hop_length,
            window=self._window(waves),
            return_complex=True,
        )
        return s[:, :BINS].reshape(*shape[:-1], BINS, s.shape[-1])

    def wave(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """complex [..., 512, frames] -> [..., length], the Nyquist bin restored as zero."""
        shape = spec.shape
        flat = spec.reshape(-1, BINS, shape[-1])
        full = torch.cat([flat, torch.zeros_like(flat[:, :1])], dim=1)
        window = torch.hann_window(self.n_fft, device=spec.device, dtype=spec.real.dtype)
        out = torch.istft(full, self.n_fft, self.hop_length, window=window, length=length)
        return out.reshape(*shape[:-2], length)


@dataclass
class MagNorm:
    """log1p magnitude, standardised per bin with training statistics (kept in checkpoints)."""

    mean: torch.Tensor  # [512]
    std: torch.Tensor  # [512]

    @classmethod
    def fit(cls, mags: torch.Tensor) -> MagNorm:
        logm = torch.log1p(mags)  # [..., 512, T]
        dims = tuple(i for i in range(logm.dim()) if i != logm.dim() - 2)
        return cls(logm.mean(dim=dims), logm.std(dim=dims).clamp_min(1e-4))

    def __call__(self, mags: torch.Tensor) -> torch.Tensor:
        return (torch.log1p(mags) - self.mean.to(mags)[:, None]) / self.std.to(mags)[:, None]

    def to_meta(self) -> dict:
        return {"norm_mean": self.mean.float().cpu(), "norm_std": self.std.float().cpu()}

    @classmethod
    def from_meta(cls, meta: dict) -> MagNorm:
        return cls(meta["norm_mean"], meta["norm_std"])
