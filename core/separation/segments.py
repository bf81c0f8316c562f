"""Training and validation segments streamed from prepared tracks.

An example is named by `(epoch, index)` and drawn from its own generator seeded by
(seed, epoch, index): which track, where in it, remixing, gains. So the data order and the
augmentations are the same for a seed whatever the number of DataLoader workers, an epoch can be
started at any step (a mid-epoch resume reads exactly the batches it had not trained on), and
memory stays at a few batches whatever the size of the data set.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from core.data.batches import Prefetched
from core.data.tracks import TrackFiles
from core.errors import RunError
from core.separation.spectral import MagNorm, Stft

NORM_SEGMENTS = 64  # mixture segments sampled to fit the magnitude normalisation


def _too_short(tracks: list[TrackFiles], seg: int) -> None:
    short = [t for t in tracks if t.frames < seg]
    if short:
        t = short[0]
        raise RunError(
            f"track '{t.name}' is {t.frames} samples long but segment_seconds asks for {seg}"
            f"{f' ({len(short)} tracks are too short)' if len(short) > 1 else ''}; "
            f"use longer tracks or a shorter segment_seconds"
        )


class SegmentSet(Dataset):
    """Random training segments: remixing, random gains, target-stem-only, as the registry says."""

    def __init__(
        self,
        tracks: list[TrackFiles],
        seg: int,
        p: dict[str, Any],
        names: tuple[str, ...],
        seed: int,
    ) -> None:
        _too_short(tracks, seg)
        self.tracks, self.seg, self.seed = tracks, seg, seed
        self.remix_prob = float(p["remix_prob"])
        self.random_gain = bool(p["random_gain"])
        target = p.get("target_stem")
        if target and target not in names:
            raise RunError(f"key 'target_stem': '{target}' is not one of the stems {list(names)}")
        self.keep = None if not target else np.array([s == target for s in names], np.float32)
        self.n_stems = len(names)
        # a start position is drawn uniformly over every valid start of every track
        self.cum = np.cumsum([t.frames - seg + 1 for t in tracks])
        self.per_epoch = max(1, sum(t.frames // seg for t in tracks))

    def __len__(self) -> int:
        return self.per_epoch

    def _place(self, rng: np.random.Generator) -> tuple[TrackFiles, int]:
        u = int(rng.integers(int(self.cum[-1])))
        t = int(np.searchsorted(self.cum, u, side="right"))
        return self.tracks[t], u - (int(self.cum[t - 1]) if t else 0)

    def plain(self, index: int) -> np.ndarray:
        """An unaugmented mono mixture segment [seg] for statistics (its own seed stream)."""
        track, start = self._place(np.random.default_rng([self.seed, index, 0, 1]))
        return track.mono_stems(start, self.seg).sum(axis=0)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        if rng.random() < self.remix_prob:  # every stem from its own track and position
            stems = np.stack([
                track.mono_stem(s, start, self.seg)
                for s, (track, start) in ((s, self._place(rng)) for s in range(self.n_stems))
            ])
        else:
            track, start = self._place(rng)
            stems = track.mono_stems(start, self.seg)
        if self.random_gain:
            stems = stems * rng.uniform(0.5, 1.5, size=(self.n_stems, 1)).astype(np.float32)
        mixture = stems.sum(axis=0)
        if self.keep is not None:  # the other stems are silent targets
            stems = stems * self.keep[:, None]
        return {"mix": torch.from_numpy(np.ascontiguousarray(mixture, np.float32)),
                "stems": torch.from_numpy(np.ascontiguousarray(stems, np.float32))}

    def norm(self, stft: Stft, count: int = NORM_SEGMENTS) -> MagNorm:
        """Magnitude statistics from a fixed-size, seeded sample of mixture segments: the same
        cost for 4 minutes of audio as for 100 hours."""
        mixes = torch.from_numpy(np.stack([self.plain(i) for i in range(count)]))
        return MagNorm.fit(stft.spec(mixes).abs())


class ValSet(Dataset):
    """Fixed validation segments: `per_track` evenly spaced segments of every track."""

    def __init__(self, tracks: list[TrackFiles], seg: int, per_track: int) -> None:
        _too_short(tracks, seg)
        self.seg = seg
        self.items: list[tuple[TrackFiles, int]] = []
        for track in tracks:
            hop = max(1, (track.frames - seg) // max(1, per_track - 1))
            starts = list(range(0, track.frames - seg + 1, hop))[:per_track]
            self.items += [(track, s) for s in starts]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        track, start = self.items[index]
        stems = track.mono_stems(start, self.seg)
        return {"mix": torch.from_numpy(stems.sum(axis=0)), "stems": torch.from_numpy(stems)}


class StepBatches(Sampler):
    """The batches of one epoch from step `start` on: lists of (epoch, index) keys."""

    def __init__(self, epoch: int, per_epoch: int, batch_size: int, start: int = 0) -> None:
        self.epoch, self.per_epoch, self.batch_size = epoch, per_epoch, batch_size
        self.steps = math.ceil(per_epoch / batch_size)
        self.start = min(start, self.steps)

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.steps):
            first = step * self.batch_size
            last = min(first + self.batch_size, self.per_epoch)
            yield [(self.epoch, i) for i in range(first, last)]


def loader(
    dataset: Dataset,
    workers: int,
    device: torch.device,
    batch_sampler: Sampler | None = None,
    batch_size: int = 1,
) -> DataLoader | Prefetched:
    """A DataLoader over worker processes (when asked; else its batches made a step ahead in a
    thread), pinning batches for a CUDA device."""
    common: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": device.type == "cuda",
        "prefetch_factor": 4 if workers else None,
        # its own generator: starting a loader must not draw from the global RNG (dropout's),
        # or an epoch resumed at a step would continue with a different random state
        "generator": torch.Generator().manual_seed(0),
    }
    if batch_sampler is not None:
        made = DataLoader(dataset, batch_sampler=batch_sampler, **common)
    else:
        made = DataLoader(dataset, batch_size=batch_size, shuffle=False, **common)
    # without worker processes, a thread reads the next batch while the model trains
    return made if workers else Prefetched(made)
