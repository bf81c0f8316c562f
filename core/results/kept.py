"""The results an evaluation keeps, on disk: `runs/<id>/results/<split>/results.json` and, per
kept track or clip, FLAC excerpts and quantised spectrograms (`.npy`, uint8, loaded without
pickle) in a folder of their own. Written atomically; read back by the TUI, `nkd results`,
`nkd listen` and `nkd report`."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import RunError
from core.util.files import atomic_write, atomic_write_json
from core.util.names import inside

FOLDER = "results"
MANIFEST = "results.json"
EXCERPT_S = 10.0  # seconds of audio kept per track (separation)
CLIP_S = 4.0  # seconds kept per misclassified clip (noise)


def slug(name: str, taken: set[str] | None = None) -> str:
    """A folder name for a track or clip: ASCII letters, digits, `.`, `_`, `-`; unique in
    `taken`."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:60] or "item"
    out, n = base, 2
    while taken is not None and out in taken:
        out, n = f"{base}_{n}", n + 1
    if taken is not None:
        taken.add(out)
    return out


def split_dir(run_dir: Path, split: str) -> Path:
    """Where a split's kept results go; RunError when a link would take them out of the run's
    folder (nothing is written through one)."""
    folder = run_dir / FOLDER / slug(split)
    if any(p.is_symlink() for p in (run_dir / FOLDER, folder)) or not inside(folder, run_dir):
        raise RunError(f"{folder}: a symbolic link; kept results are written only inside the "
                       f"run's folder")
    return folder


def write_flac(path: Path, samples: np.ndarray, rate: int) -> None:
    """[n] or [channels, n] float audio as 16-bit FLAC (its fastest compression level), written
    beside and renamed into place: a reader never sees half of it. Not fsynced: an excerpt is
    made again by evaluating the run again, and 27 fsyncs would cost an evaluation more than
    its excerpts do."""
    import soundfile

    data = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    buf = io.BytesIO()
    soundfile.write(buf, data.T if data.ndim == 2 else data, rate, format="FLAC",
                    subtype="PCM_16", compression_level=0.0)
    _write(path, buf.getvalue(), ".flac")


def _write(path: Path, body: bytes, suffix: str) -> None:
    atomic_write(path, lambda fh: fh.write(body), suffix=suffix, sync=False)


def write_spectrogram(path: Path, spec: np.ndarray) -> None:
    """A quantised spectrogram as .npy (uint8; read back without pickle), like write_flac."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(spec, dtype=np.uint8), allow_pickle=False)
    _write(path, buf.getvalue(), ".npy")


def read_spectrogram(path: Path) -> np.ndarray:
    """A kept spectrogram (uint8 [bands, columns]); RunError naming the file when it is gone or
    not one."""
    try:
        spec = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: spectrogram not readable ({exc}); the run's results are "
                       f"incomplete") from None
    if spec.dtype != np.uint8 or spec.ndim != 2:
        raise RunError(f"{path}: not a kept spectrogram (uint8, two dimensions)")
    return spec


def write_manifest(folder: Path, doc: dict[str, Any]) -> None:
    atomic_write_json(folder / MANIFEST, doc)


@dataclass
class Results:
    """One split's kept results of a run."""

    folder: Path
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind"))

    @property
    def split(self) -> str:
        return str(self.doc.get("split"))

    def path(self, relative: str) -> Path:
        """A kept file, by its name in the manifest; never outside this folder."""
        path = (self.folder / relative).resolve()
        if self.folder.resolve() not in path.parents:
            raise RunError(f"{self.folder / MANIFEST}: names {relative!r} outside its folder")
        return path

    def missing(self) -> list[str]:
        """The kept files the manifest names that are not there."""
        return [rel for rel in kept_files(self.doc) if not self.path(rel).is_file()]


def kept_files(doc: dict[str, Any]) -> list[str]:
    """Every audio and spectrogram file a manifest names."""
    out: list[str] = []
    for item in [*doc.get("tracks", []), *doc.get("misclassified", [])]:
        kept = item.get("kept") or {}
        for entry in (kept.get("signals") or {}).values():
            out += [entry["audio"], entry["spectrogram"]]
    return out


def load(run_dir: Path) -> list[Results]:
    """Every split's kept results of a run (test first, then val, then others); empty when it
    kept none. A manifest that cannot be read is RunError naming it."""
    folder = run_dir / FOLDER
    out = []
    if not folder.is_dir():
        return out
    for manifest in sorted(folder.glob(f"*/{MANIFEST}")):
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunError(f"{manifest}: not readable ({exc})") from None
        if not isinstance(doc, dict) or doc.get("kind") not in ("separation", "noise"):
            raise RunError(f"{manifest}: not a results file of nkd")
        out.append(Results(manifest.parent, doc))
    order = {"test": 0, "val": 1}
    return sorted(out, key=lambda r: (order.get(r.split, 2), r.split))
