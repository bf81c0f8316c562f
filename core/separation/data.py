"""MUSDB18-style track folders: `<root>/<track>/{mixture,bass,drums,other,vocals}.wav`.

The stem list is explicit and checked: a missing stem file, an unexpected one, or stems of
different lengths are reported by track and file name before anything trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import audio
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


def load(root: Path, source: str, stems: tuple[str, ...], sample_rate: int) -> list[Track]:
    tracks = []
    for folder in track_dirs(root, source):
        check(folder, stems, source)
        files = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in audio.EXTENSIONS}
        mix = audio.read(files[MIXTURE], sample_rate, mono=False)
        parts = [audio.read(files[s], sample_rate, mono=False) for s in stems]
        lengths = {s: p.shape[-1] for s, p in zip(stems, parts, strict=True)}
        if len({*lengths.values(), mix.shape[-1]}) != 1:
            raise RunError(
                f"data source '{source}': track '{folder.name}': stems differ in length "
                f"(mixture {mix.shape[-1]}, "
                + ", ".join(f"{k} {v}" for k, v in lengths.items())
                + " samples)"
            )
        channels = max(p.shape[0] for p in [mix, *parts])
        tracks.append(
            Track(
                folder.name,
                _channels(mix, channels),
                np.stack([_channels(p, channels) for p in parts]),
            )
        )
    return tracks


def _channels(x: np.ndarray, channels: int) -> np.ndarray:
    return np.repeat(x, channels, axis=0) if x.shape[0] == 1 and channels > 1 else x
