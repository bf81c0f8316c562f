"""The noise data index: audio files -> 1 s segments with label, split and content hash.

`dataset_index.csv` lives in the data folder. Splits are decided per source file by a hash of its
path inside the folder, with the same thresholds for every class (stratified in expectation), so
adding files never moves an existing file to another split and segments of one recording never
straddle train and test.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.data import audio
from core.data.cache import AudioCache
from core.errors import RunError

INDEX_NAME = "dataset_index.csv"
SKIPPED_NAME = "dataset_index_skipped.csv"
SETTINGS_NAME = "dataset_index.json"
FIELDS = ["path", "label", "split", "source_file", "offset", "duration", "content_hash"]
SPLITS = (("train", 0.70), ("val", 0.85), ("test", 1.0))
SILENCE_PEAK = 1e-4  # a file whose loudest sample is below this is silent
MIN_SECONDS = 0.25  # a tail shorter than this is dropped; a longer one is padded to a segment


@dataclass(frozen=True)
class Source:
    """One named data source of the registry, as recipes need it."""

    name: str
    root: Path
    label_from: str = "folder"
    unlabeled: bool = False
    index_dir: Path | None = None  # where its index lives: the workspace, never the data folder

    @classmethod
    def from_config(cls, name: str, table: dict[str, Any]) -> Source:
        return cls(
            name,
            Path(table["root"]),
            str(table.get("label_from", "folder")),
            bool(table.get("unlabeled", False)),
            Path(table["index_dir"]) if table.get("index_dir") else None,
        )

    @property
    def index(self) -> Path:
        """The folder holding this source's dataset_index.csv and its companions."""
        return self.index_dir if self.index_dir is not None else self.root


@dataclass(frozen=True)
class Row:
    path: str  # the file, relative to the data folder
    label: str  # "" when unlabeled
    split: str  # train | val | test | unlabeled
    source_file: str  # absolute path
    offset: float  # seconds
    duration: float  # seconds
    content_hash: str  # sha256 of the file, first 16 hex digits


def split_of(rel_path: str) -> str:
    u = int.from_bytes(hashlib.sha1(rel_path.encode()).digest()[:8], "big") / 2**64
    return next(name for name, edge in SPLITS if u < edge)


def label_of(rel: Path, label_from: str) -> str:
    if label_from == "folder":
        return rel.parts[0] if len(rel.parts) > 1 else ""
    stem = rel.stem
    head, _, tail = stem.rpartition("_")
    return head if head and tail.isdigit() else stem


def audio_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [
            Path(dirpath) / f
            for f in sorted(filenames)
            if Path(f).suffix.lower() in audio.EXTENSIONS
        ]
    return files


def build(
    source: Source, sample_rate: int, segment_seconds: float, cache: AudioCache | None = None
) -> tuple[list[Row], list[tuple[str, str]]]:
    """Scan the folder: rows for every usable segment, and (file, reason) for every skipped file.
    With a cache, each file is decoded once into it (and later runs read it from there)."""
    if not source.root.is_dir():
        raise RunError(
            f"data source '{source.name}': folder {source.root} does not exist "
            f"(`nkd data synth noise` writes a demo set)"
        )
    rows: list[Row] = []
    skipped: list[tuple[str, str]] = []
    for path in audio_files(source.root):
        rel = path.relative_to(source.root)
        label = "" if source.unlabeled else label_of(rel, source.label_from)
        if not source.unlabeled and not label:
            skipped.append((str(rel), f"no label: not inside a class folder ({source.label_from})"))
            continue
        try:
            samples = (cache.prepared(path, sample_rate, mono=True).read()[0] if cache
                       else audio.read(path, sample_rate))
        except audio.AudioError as exc:
            skipped.append((str(rel), str(exc).split(": ", 1)[-1]))
            continue
        if np.abs(samples).max() < SILENCE_PEAK:
            skipped.append((str(rel), "silent (peak below -80 dBFS)"))
            continue
        digest = (cache.content_hash(path) if cache
                  else hashlib.sha256(path.read_bytes()).hexdigest())[:16]
        split = "unlabeled" if source.unlabeled else split_of(rel.as_posix())
        seconds = samples.size / sample_rate
        if seconds < min(MIN_SECONDS, segment_seconds) - 1e-9:
            skipped.append(
                (str(rel), f"too short: {seconds:.2f} s (a segment needs at least "
                           f"{min(MIN_SECONDS, segment_seconds):.2f} s)")
            )
            continue
        offset = 0.0
        while seconds - offset >= min(MIN_SECONDS, segment_seconds) - 1e-9:
            duration = min(segment_seconds, seconds - offset)
            rows.append(
                Row(
                    rel.as_posix(),
                    label,
                    split,
                    str(path),
                    round(offset, 6),
                    round(duration, 6),
                    digest,
                )
            )
            offset += segment_seconds
            if seconds - offset < MIN_SECONDS:
                break
    _check_trainable(source, rows, skipped)
    return rows, skipped


def _check_trainable(source: Source, rows: list[Row], skipped: list[tuple[str, str]]) -> None:
    """A set nothing can be trained on is an error, named, with why its files were skipped."""
    if not rows:
        why = ""
        if skipped:
            reasons = Counter(reason.split(":")[0] for _, reason in skipped)
            why = " (" + ", ".join(f"{n} {r}" for r, n in reasons.most_common(3)) + ")"
        found = f"{len(skipped)} audio files, all skipped{why}" if skipped else "no audio files"
        raise RunError(f"data source '{source.name}': {source.root} holds {found}")



def one_class_warning(source: Source, rows: list[Row]) -> str | None:
    """A labelled set with one class can only be evaluated, not trained on: said once."""
    labels = sorted({r.label for r in rows if r.label})
    if source.unlabeled or len(labels) != 1:
        return None
    return (f"note: data source '{source.name}' holds one class only ('{labels[0]}'); training "
            f"a classifier on it needs at least two")


def write(source: Source, rows: list[Row], skipped: list[tuple[str, str]]) -> Path:
    from core.util.files import atomic_write_text, csv_text

    source.index.mkdir(parents=True, exist_ok=True)
    out = source.index / INDEX_NAME
    atomic_write_text(out, csv_text([FIELDS] + [[getattr(r, f) for f in FIELDS] for r in rows]))
    skipped_path = source.index / SKIPPED_NAME
    if skipped:
        atomic_write_text(skipped_path, csv_text([["path", "reason"], *skipped]))
    else:
        skipped_path.unlink(missing_ok=True)
    return out


def read(source: Source) -> list[Row]:
    with open(source.index / INDEX_NAME, newline="", encoding="utf-8") as fh:
        return [
            Row(
                r["path"],
                r["label"],
                r["split"],
                r["source_file"],
                float(r["offset"]),
                float(r["duration"]),
                r["content_hash"],
            )
            for r in csv.DictReader(fh)
        ]


def ensure(
    source: Source,
    sample_rate: int,
    segment_seconds: float,
    log=print,
    force: bool = False,
    cache: AudioCache | None = None,
) -> list[Row]:
    """The folder's index, rebuilt when its files or segment settings changed since written
    (or always, with `force`)."""
    from core.util.files import atomic_write_json, read_json

    index, settings_path = source.index / INDEX_NAME, source.index / SETTINGS_NAME
    settings = {"sample_rate": sample_rate, "segment_seconds": segment_seconds}
    fresh = not force and index.is_file() and settings_path.is_file()
    if fresh and read_json(settings_path) == settings:
        rows = read(source)
        built = index.stat().st_mtime
        files = audio_files(source.root)
        known = {r.source_file for r in rows} | _skipped(source)
        if {str(p) for p in files} == known and all(p.stat().st_mtime <= built for p in files):
            return rows
    rows, skipped = build(source, sample_rate, segment_seconds, cache)
    write(source, rows, skipped)
    atomic_write_json(settings_path, settings)
    counts = Counter(r.label or "unlabeled" for r in rows)
    log(
        f"indexed {source.name}: {len(rows)} segments from {len({r.source_file for r in rows})} "
        f"files ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
        f"{len(skipped)} skipped"
    )
    for rel, reason in skipped:
        log(f"  skipped {rel}: {reason}")
    warning = one_class_warning(source, rows)
    if warning:
        log(warning)
    return rows


def _skipped(source: Source) -> set[str]:
    path = source.index / SKIPPED_NAME
    if not path.is_file():
        return set()
    with open(path, newline="", encoding="utf-8") as fh:
        return {str(source.root / r["path"]) for r in csv.DictReader(fh)}


def class_map(classes: list[str] | dict[str, list[str]]) -> tuple[list[str], dict[str, int]]:
    """Class names in order, and original label -> class index (a mapping regroups labels)."""
    if isinstance(classes, dict):
        names = list(classes)
        return names, {orig: i for i, name in enumerate(names) for orig in classes[name]}
    return list(classes), {name: i for i, name in enumerate(classes)}


def select(
    rows: list[Row], classes: list[str] | dict[str, list[str]], source: str, splits: tuple[str, ...]
) -> tuple[list[Row], list[int]]:
    """Rows of `splits` whose label belongs to the experiment's classes, with their class index.

    A class with no examples in the data is an error that names the class and the source.
    """
    names, mapping = class_map(classes)
    present = Counter(mapping[r.label] for r in rows if r.label in mapping)
    missing = [names[i] for i in range(len(names)) if present[i] == 0]
    if missing:
        labels = sorted({r.label for r in rows if r.label})
        raise RunError(
            f"data source '{source}': no examples of class {', '.join(map(repr, missing))} "
            f"(labels found: {', '.join(labels) or 'none'})"
        )
    chosen = [r for r in rows if r.split in splits and r.label in mapping]
    return chosen, [mapping[r.label] for r in chosen]
