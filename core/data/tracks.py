"""MUSDB18-style track folders: `<root>/<track>/{mixture,bass,drums,other,vocals}.wav`.

Tracks are prepared once in the workspace's audio cache (`core.data.cache`) and read from there:
training streams segments from it, evaluation loads one whole track at a time.

The stem list is explicit and checked: a missing stem file, an unexpected one, or stems of
different lengths are reported by track and file name before anything trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data import audio
from core.data.cache import AudioCache, Prepared
from core.errors import RunError

STEMS = ("bass", "drums", "other", "vocals")
MIXTURE = "mixture"


@dataclass
class Track:
    name: str
    mixture: np.ndarray  # [channels, n]
    stems: np.ndarray  # [stems, channels, n]


def track_dirs(root: Path, source: str) -> list[Path]:
    if not root.is_dir():
        raise RunError(
            f"data source '{source}': folder {root} does not exist "
            f"(`nkd data synth separation` writes a demo set)"
        )
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise RunError(f"data source '{source}': no track folders in {root}")
    return dirs


def check(folder: Path, stems: tuple[str, ...], source: str) -> None:
    """Every stem and the mixture present, nothing else that looks like a stem."""
    files = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in audio.EXTENSIONS}
    expected = {MIXTURE, *stems}
    missing = sorted(expected - set(files))
    if missing:
        raise RunError(
            f"data source '{source}': track '{folder.name}' is missing "
            f"{', '.join(f + '.wav' for f in missing)} (stems are {', '.join(stems)})"
        )
    extra = sorted(set(files) - expected)
    if extra:
        raise RunError(
            f"data source '{source}': track '{folder.name}' has unexpected stem file(s) "
            f"{', '.join(files[e].name for e in extra)} (stems are {', '.join(stems)}; "
            f"set `stems` in the registry if these belong)"
        )


@dataclass(frozen=True)
class TrackFiles:
    """A track's prepared files: read a segment or the whole track without decoding again."""

    name: str
    mixture: Prepared
    stems: tuple[Prepared, ...]
    frames: int
    channels: int

    def load(self) -> Track:
        """The whole track in memory (for evaluation, one track at a time)."""
        return Track(
            self.name,
            _channels(self.mixture.read(), self.channels),
            np.stack([_channels(s.read(), self.channels) for s in self.stems]),
        )

    def mono_stems(self, start: int, length: int) -> np.ndarray:
        """[stems, length] mono segment of every stem from frame `start`."""
        return np.stack([s.segment(start, length).mean(axis=0) for s in self.stems])

    def mono_stem(self, stem: int, start: int, length: int) -> np.ndarray:
        return self.stems[stem].segment(start, length).mean(axis=0)


def prepare(
    root: Path,
    source: str,
    stems: tuple[str, ...],
    sample_rate: int,
    cache: AudioCache,
    log: Callable[[str], None] | None = None,
) -> list[TrackFiles]:
    """Every track of the folder checked and prepared in the cache (decoded once, reused by
    every run; a changed file is prepared again)."""
    folders = track_dirs(root, source)
    for folder in folders:
        check(folder, stems, source)
    files = []
    for folder in folders:
        found = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in audio.EXTENSIONS}
        files.append((folder.name, [found[MIXTURE], *(found[s] for s in stems)]))
    # one look at the cache per file; only what is missing is decoded (with a progress line)
    found = {f: cache.find(f, sample_rate) for _, group in files for f in group}
    missing = [f for f, entry in found.items() if entry is None]
    if missing:
        made = cache.prepare_all(missing, sample_rate,
                                 label=f"preparing {source} at {sample_rate} Hz", log=log)
        found.update(zip(missing, made, strict=True))
    tracks = []
    for name, group in files:
        mix, *parts = (found[f] for f in group)
        lengths = {s: p.frames for s, p in zip(stems, parts, strict=True)}
        if len({*lengths.values(), mix.frames}) != 1:
            raise RunError(
                f"data source '{source}': track '{name}': stems differ in length "
                f"(mixture {mix.frames}, "
                + ", ".join(f"{k} {v}" for k, v in lengths.items())
                + " samples)"
            )
        channels = max(p.channels for p in [mix, *parts])
        tracks.append(TrackFiles(name, mix, tuple(parts), mix.frames, channels))
    return tracks


def load(
    root: Path, source: str, stems: tuple[str, ...], sample_rate: int, cache: AudioCache
) -> list[Track]:
    """Every track in memory (small sets and tests; runs stream from `prepare`)."""
    return [t.load() for t in prepare(root, source, stems, sample_rate, cache)]


def _channels(x: np.ndarray, channels: int) -> np.ndarray:
    return np.repeat(x, channels, axis=0) if x.shape[0] == 1 and channels > 1 else x
