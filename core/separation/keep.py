"""What a separation evaluation keeps beside its BSS Eval values: every track's per-second SDR
per stem and its global SDR (the MDX / SDX challenges' figure), and for a few tracks (the worst,
the median and the best by mean SDR; `results_tracks` of them) a 10 s excerpt centred on the
track's worst second of the mixture and of each stem's reference and estimate, as FLAC, with a
spectrogram of each (core/results).

Tracks are scored one at a time, so each track's excerpt waits (float16, a few MB: in memory,
or in a pending folder when a test set's excerpts would pass PENDING_IN_MEMORY) until every
track is scored and the kept ones are known; then the kept ones are encoded.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from core.data.tracks import Track
from core.results.kept import (
    EXCERPT_S,
    slug,
    split_dir,
    write_flac,
    write_manifest,
    write_spectrogram,
)
from core.results.spectrogram import spectrograms

PENDING_IN_MEMORY = 256 << 20  # bytes of waiting excerpts kept in memory, else on disk
GLOBAL_DEFINITION = "global_sdr_mdx"  # as a metric's definition: a short name, said in full below
GLOBAL_TEXT = ("global SDR (MDX/SDX challenges): 10·log10(Σ reference² / Σ (reference − "
               "estimate)²) over the whole track and its channels, per stem")
FRAMES_TEXT = "BSS Eval v4 SDR of each 1 s frame (the per-track SDR is their median)"


def global_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10·log10 of the reference's energy over the error's, whole track; NaN for a silent
    reference (the challenges' definition adds a tiny epsilon to both: a silent reference
    scores about 0 there)."""
    num = float(np.sum(np.square(reference, dtype=np.float64)))
    den = float(np.sum(np.square(reference - estimate, dtype=np.float64)))
    if num == 0.0:
        return float("nan")
    return float(10 * np.log10(num / max(den, 1e-20)))


def chosen(means: list[float], count: int) -> dict[int, str]:
    """Which tracks to keep, by index: the worst, the best and the median first, then those
    nearest the quartiles ...; `count` of them at most, each with why."""
    order = sorted(range(len(means)), key=lambda i: (np.nan_to_num(means[i], nan=-1e9), i))
    if count <= 0 or not order:
        return {}
    picks: dict[int, str] = {order[0]: "worst"}
    extra = [(order[-1], "best"), (order[len(order) // 2], "median")]
    for q in (0.25, 0.75, 0.125, 0.375, 0.625, 0.875):
        extra.append((order[int(q * (len(order) - 1))], f"{int(q * 100)}th percentile"))
    for i, why in extra:
        if len(picks) >= count:
            break
        picks.setdefault(i, why)
    return picks


class Keeper:
    """Collects what a split's scoring keeps; `finish` writes it under results/<split>/. The
    excerpts wait (in memory, or on disk past PENDING_IN_MEMORY) until the kept ones are known.
    (Encoding them in a thread beside the scoring was measured slower on two cores: both are
    CPU work.)"""

    def __init__(self, run_dir: Path, split: str, stems: list[str], rate: int, count: int,
                 definitions: dict[str, str], tracks: int = 1, channels: int = 2) -> None:
        self.folder = split_dir(run_dir, split)
        self.pending = self.folder / ".pending"
        shutil.rmtree(self.folder, ignore_errors=True)  # a split scored again replaces its own
        self.folder.mkdir(parents=True, exist_ok=True)
        excerpt = int(EXCERPT_S * rate) * channels * (1 + 2 * len(stems)) * 4  # float32
        self.waiting: dict[int, dict[str, np.ndarray]] | None = \
            {} if tracks * excerpt <= PENDING_IN_MEMORY else None
        self.split, self.stems, self.rate, self.count = split, stems, rate, count
        self.definitions = definitions
        self.tracks: list[dict[str, Any]] = []
        self.taken: set[str] = set()

    def add(self, track: Track, estimates: np.ndarray, frames_sdr: np.ndarray,
            sdr: dict[str, float]) -> dict[str, float]:
        """One scored track: estimates [S, C, n], per-frame SDR [S, frames] (1 s frames), its
        median SDR per stem. Returns its global SDR per stem."""
        glob = {stem: global_sdr(track.stems[i], estimates[i])
                for i, stem in enumerate(self.stems)}
        with np.errstate(all="ignore"):
            per_second = np.nanmean(np.where(np.isfinite(frames_sdr), frames_sdr, np.nan), 0) \
                if frames_sdr.size else np.zeros(0)
        finite = [v for v in sdr.values() if np.isfinite(v)]
        self.tracks.append({
            "name": track.name,
            "sdr": {k: _num(v) for k, v in sdr.items()},
            "sdr_global": {k: _num(v) for k, v in glob.items()},
            "mean_sdr": _num(float(np.mean(finite))) if finite else None,
            "frames": {stem: [_num(v, 2) for v in frames_sdr[i]]
                       for i, stem in enumerate(self.stems)},
        })
        if self.count > 0:
            self._excerpt(track, estimates, per_second)
        return glob

    def _excerpt(self, track: Track, estimates: np.ndarray, per_second: np.ndarray) -> None:
        """The track's 10 s around its worst second: written now (every track kept), or kept
        waiting for `finish`."""
        i = len(self.tracks) - 1
        worst = int(np.nanargmin(per_second)) if np.isfinite(per_second).any() else 0
        n = track.mixture.shape[-1]
        length = min(n, int(EXCERPT_S * self.rate))
        start = int(min(max(0, (worst + 0.5) * self.rate - length / 2), n - length))
        cut = slice(start, start + length)
        parts = {"mixture": track.mixture[:, cut], "references": track.stems[:, :, cut],
                 "estimates": estimates[:, :, cut]}
        name = slug(track.name, self.taken)
        self.tracks[i]["kept"] = {
            "start": start / self.rate, "end": (start + length) / self.rate,
            "signals": {key: {"audio": f"{name}/{key.replace('/', '.')}.flac",
                              "spectrogram": f"{name}/{key.replace('/', '.')}.npy"}
                        for key in self._keys()}}
        if self.waiting is not None:  # copies: the track's own arrays are let go
            self.waiting[i] = {k: np.array(v, dtype=np.float32) for k, v in parts.items()}
        else:
            self.pending.mkdir(exist_ok=True)
            np.savez(self.pending / f"{i}.npz",
                     **{k: v.astype(np.float16) for k, v in parts.items()})

    def _keys(self) -> list[str]:
        return ["mixture", *(f"{stem}/{role}" for stem in self.stems
                             for role in ("reference", "estimate"))]

    def _write(self, i: int, parts: dict[str, np.ndarray]) -> None:
        """Track i's kept excerpt: FLAC and a spectrogram of each signal."""
        signals = {"mixture": parts["mixture"]}
        for s, stem in enumerate(self.stems):
            signals[f"{stem}/reference"] = parts["references"][s]
            signals[f"{stem}/estimate"] = parts["estimates"][s]
        entries = self.tracks[i]["kept"]["signals"]
        specs = spectrograms(signals, self.rate)
        for key, audio in signals.items():
            write_flac(self.folder / entries[key]["audio"], audio, self.rate)
            write_spectrogram(self.folder / entries[key]["spectrogram"], specs[key])

    def _parts(self, i: int) -> dict[str, np.ndarray]:
        if self.waiting is not None:
            return self.waiting.pop(i)
        with np.load(self.pending / f"{i}.npz", allow_pickle=False) as parts:
            return {k: parts[k].astype(np.float32) for k in ("mixture", "references",
                                                                "estimates")}

    def finish(self) -> Path:
        """Write the kept tracks' FLAC and spectrograms and results.json; the folder."""
        picks = chosen([t["mean_sdr"] if t["mean_sdr"] is not None else float("nan")
                        for t in self.tracks], self.count)
        for i, track in enumerate(self.tracks):
            if i not in picks:
                track.pop("kept", None)
                continue
            self._write(i, self._parts(i))
            track["kept"]["why"] = picks[i]
        shutil.rmtree(self.pending, ignore_errors=True)
        write_manifest(self.folder, {
            "kind": "separation", "split": self.split, "rate": self.rate, "stems": self.stems,
            "definitions": {**self.definitions, "sdr_global": GLOBAL_TEXT,
                            "frames": FRAMES_TEXT},
            "tracks": sorted(self.tracks, key=lambda t: (t["mean_sdr"] is None,
                                                         t["mean_sdr"] or 0.0)),
        })
        return self.folder


def _num(value: float, digits: int = 4) -> float | None:
    """A finite value rounded for the manifest; None for NaN or an infinity."""
    return round(float(value), digits) if np.isfinite(value) else None
