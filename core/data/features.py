"""Log-mel features, batched in torch: one implementation for the CPU and the GPU.

torch.stft (or torchaudio's spectrogram when torchaudio imports) and librosa's Slaney mel filter
bank, so the numbers agree with `librosa.power_to_db(librosa.feature.melspectrogram(...))`.
A 1 s clip at 16 kHz with hop 160 gives [1, n_mels, 101].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from core.registry.settings import with_defaults

AMIN = 1e-10  # librosa.power_to_db's floor
TOP_DB = 80.0  # and its dynamic range: nothing more than 80 dB below the clip's peak
CPU_CHUNK = 64  # clips per STFT on the CPU: the spectra of a chunk stay in cache
SEGMENT_FRAMES = 101  # frames of one model input (1 s at hop 160)
SEGMENT_HOP = 50  # hop between the inputs cut from a longer clip
MAX_SEGMENTS = 5


def _torchaudio_spectrogram():  # pragma: no cover - depends on the machine
    try:
        import torchaudio.functional as F  # noqa: N812

        return F.spectrogram
    except Exception:  # not installed, or its wheel links a CUDA this machine lacks
        return None


@dataclass(frozen=True)
class MelSettings:
    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int

    @classmethod
    def from_params(cls, params: dict) -> MelSettings:
        """From a run's settings; keys it lacks take the schema's noise defaults."""
        p = with_defaults("noise", params)
        return cls(int(p["sample_rate"]), int(p["n_fft"]), int(p["hop_length"]), int(p["n_mels"]))

    def frames(self, samples: int) -> int:
        return samples // self.hop_length + 1


class LogMel:
    """Batched log-mel in dB: waves [B, n] -> [B, 1, n_mels, frames], on the waves' device."""

    def __init__(self, settings: MelSettings, use_torchaudio: bool = True) -> None:
        import librosa

        self.settings = settings
        fb = librosa.filters.mel(
            sr=settings.sample_rate, n_fft=settings.n_fft, n_mels=settings.n_mels
        )
        self._fb = torch.from_numpy(fb)  # [n_mels, n_fft // 2 + 1], float32 as librosa's
        self._windows: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._spectrogram = _torchaudio_spectrogram() if use_torchaudio else None
        self.backend = "torchaudio" if self._spectrogram else "torch.stft"

    def power(self, waves: torch.Tensor) -> torch.Tensor:
        s = self.settings
        key = (waves.device, waves.dtype)
        if key not in self._windows:  # made in the waves' precision, not cast from float32
            self._windows[key] = torch.hann_window(
                s.n_fft, periodic=True, dtype=waves.dtype, device=waves.device
            )
        window = self._windows[key]
        if self._spectrogram is not None:
            return self._spectrogram(
                waves,
                pad=0,
                window=window,
                n_fft=s.n_fft,
                hop_length=s.hop_length,
                win_length=s.n_fft,
                power=2.0,
                normalized=False,
                center=True,
                pad_mode="constant",
                onesided=True,
            )
        spec = torch.stft(
            waves,
            s.n_fft,
            s.hop_length,
            window=window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        return spec.real.square() + spec.imag.square()

    @torch.no_grad()
    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        """As `librosa.power_to_db(librosa.feature.melspectrogram(y, ...))` with its defaults
        (power 2, centred frames padded with zeros, ref 1.0, amin 1e-10, top_db 80), per clip."""
        squeeze = waves.dim() == 1
        waves = waves.reshape(1, -1) if squeeze else waves
        fb = self._fb.to(waves.device, waves.dtype)
        step = CPU_CHUNK if waves.device.type == "cpu" else max(1, waves.shape[0])
        parts = []
        for i in range(0, waves.shape[0], step):
            db = 10.0 * torch.log10(
                torch.matmul(fb, self.power(waves[i : i + step])).clamp_min(AMIN)
            )
            parts.append(torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - TOP_DB))
        out = torch.cat(parts).unsqueeze(1)
        return out[0] if squeeze else out


def segment_count(frames: int) -> int:
    """How many model inputs a clip of `frames` frames gives (windows of 101, hop 50, at most 5)."""
    if frames <= SEGMENT_FRAMES:
        return 1
    return min(MAX_SEGMENTS, 1 + math.ceil((frames - SEGMENT_FRAMES) / SEGMENT_HOP))


def segments(mel: torch.Tensor) -> torch.Tensor:
    """[B, 1, M, T] -> [B, S, 1, M, 101]: a longer clip as several 101-frame inputs.

    Short clips are padded with their minimum value (silence in dB); the last window of a long
    clip is aligned to the clip's end so no frame is dropped before the fifth window.
    """
    frames = mel.shape[-1]
    if frames < SEGMENT_FRAMES:
        fill = mel.amin(dim=(-1, -2), keepdim=True).expand(*mel.shape[:-1], SEGMENT_FRAMES - frames)
        return torch.cat([mel, fill], dim=-1).unsqueeze(1)
    count = segment_count(frames)
    starts = [min(i * SEGMENT_HOP, frames - SEGMENT_FRAMES) for i in range(count)]
    return torch.stack([mel[..., s : s + SEGMENT_FRAMES] for s in starts], dim=1)
