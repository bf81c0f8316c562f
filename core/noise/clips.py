"""Indexed segments as tensors: waves and log-mels, cached on disk per (data, feature settings)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from core.data import audio
from core.data.cache import AudioCache
from core.data.features import SEGMENT_FRAMES, LogMel, MelSettings, segments
from core.data.noise_index import Row
from core.training import checkpoint
from core.util import cache_use

CACHE_FORMAT = "nkd.features/1"
CHUNK = 256  # clips per feature batch


@dataclass
class Clips:
    rows: list[Row]
    waves: torch.Tensor  # [N, samples]
    mels: torch.Tensor  # [N, 1, n_mels, frames], dB


def _key(rows: list[Row], settings: MelSettings, samples: int) -> str:
    digest = hashlib.sha256(json.dumps([asdict(settings), samples]).encode())
    for r in rows:
        digest.update(f"{r.path}|{r.offset}|{r.duration}|{r.content_hash}\n".encode())
    return digest.hexdigest()[:20]


def load(
    rows: list[Row],
    settings: MelSettings,
    segment_seconds: float,
    cache_dir: Path,
    device: torch.device | None = None,
) -> Clips:
    """The rows' waves and log-mels from `cache/features` (made once per rows and settings,
    the audio itself read from the prepared-audio cache)."""
    samples = int(round(segment_seconds * settings.sample_rate))
    path = cache_dir / "features" / f"{_key(rows, settings, samples)}.pt"
    if path.is_file():
        cached = checkpoint.load(path, kind="features")
        cache_use.note(path, path.stat().st_size)
        return Clips(rows, cached["state_dict"]["waves"], cached["state_dict"]["mels"])
    waves = read_waves(rows, settings.sample_rate, samples, AudioCache(cache_dir))
    mels = compute(waves, settings, device)
    checkpoint.save(
        path,
        "features",
        {"waves": waves, "mels": mels},
        {"settings": asdict(settings), "segment_seconds": segment_seconds, "clips": len(rows)},
    )
    cache_use.note(path, path.stat().st_size)
    return Clips(rows, waves, mels)


def read_waves(
    rows: list[Row], sample_rate: int, samples: int, cache: AudioCache | None = None
) -> torch.Tensor:
    """Each row's segment, padded with silence to `samples`: read from the prepared-audio cache
    (decoded there once), or decoded here, each file once, without a cache."""
    out = np.zeros((len(rows), samples), dtype=np.float32)
    current: dict[str, np.ndarray] = {}
    for i, r in enumerate(rows):
        start = int(round(r.offset * sample_rate))
        if cache is not None:
            prepared = cache.prepared(Path(r.source_file), sample_rate, mono=True)
            piece = prepared.segment(start, min(samples, max(0, prepared.frames - start)))[0]
        else:
            if r.source_file not in current:
                current = {r.source_file: audio.read(Path(r.source_file), sample_rate)}
            piece = current[r.source_file][start : start + samples]
        out[i, : piece.size] = piece
    return torch.from_numpy(out)


def compute(
    waves: torch.Tensor, settings: MelSettings, device: torch.device | None = None
) -> torch.Tensor:
    mel = LogMel(settings)
    device = device or torch.device("cpu")
    parts = [mel(waves[i : i + CHUNK].to(device)).cpu() for i in range(0, waves.shape[0], CHUNK)]
    return (
        torch.cat(parts)
        if parts
        else torch.zeros(0, 1, settings.n_mels, settings.frames(waves.shape[1]))
    )


@dataclass
class Norm:
    """Per-mel-bin mean and standard deviation of the training features; kept in checkpoints."""

    mean: torch.Tensor  # [n_mels]
    std: torch.Tensor  # [n_mels]

    @classmethod
    def fit(cls, mels: torch.Tensor) -> Norm:
        return cls(mels.mean(dim=(0, 1, 3)), mels.std(dim=(0, 1, 3)).clamp_min(1e-3))

    def __call__(self, mels: torch.Tensor) -> torch.Tensor:
        return (mels - self.mean.to(mels)[:, None]) / self.std.to(mels)[:, None]

    def to_meta(self) -> dict[str, torch.Tensor]:
        return {"norm_mean": self.mean.float(), "norm_std": self.std.float()}

    @classmethod
    def from_meta(cls, meta: dict) -> Norm:
        return cls(meta["norm_mean"], meta["norm_std"])


def model_input(mels: torch.Tensor) -> torch.Tensor:
    """[B, 1, M, T] for 1 s clips; [B, S, 1, M, 101] windows for longer ones."""
    return mels if mels.shape[-1] == SEGMENT_FRAMES else segments(mels)
