"""What a noise evaluation keeps beside its accuracy, macro-F1 and ROC AUC: the confusion matrix,
per-class precision and recall, and the most confidently misclassified clips (name, true and
predicted class, confidence), the first `results_tracks` of them as a short FLAC excerpt with a
spectrogram (core/results), under runs/<id>/results/<split>/."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from core.data import audio
from core.noise import metrics
from core.results.kept import (
    CLIP_S,
    slug,
    split_dir,
    write_flac,
    write_manifest,
    write_spectrogram,
)
from core.results.spectrogram import spectrograms

LISTED = 20  # misclassified clips named in results.json


def per_class(matrix: np.ndarray) -> tuple[list[float | None], list[float | None]]:
    """Precision and recall of each class from a confusion matrix (rows true, columns
    predicted); None where a class was never predicted (precision) or never present (recall)."""
    predicted, present = matrix.sum(0), matrix.sum(1)
    diag = np.diag(matrix)
    precision = [round(float(d / p), 4) if p else None for d, p in zip(diag, predicted,
                                                                       strict=True)]
    recall = [round(float(d / n), 4) if n else None for d, n in zip(diag, present, strict=True)]
    return precision, recall


def keep(run_dir: Path, split: str, names: list[str], y: np.ndarray, probs: np.ndarray,
         rows: list, count: int, sample_rate: int) -> Path:
    """Write results/<split>/: results.json and the kept clips; the folder."""
    folder = split_dir(run_dir, split)
    shutil.rmtree(folder, ignore_errors=True)  # a split scored again replaces its own
    folder.mkdir(parents=True, exist_ok=True)
    pred = probs.argmax(1)
    matrix = metrics.confusion_matrix(y, pred, len(names))
    precision, recall = per_class(matrix)
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:LISTED]
    listed: list[dict[str, Any]] = []
    taken: set[str] = set()
    for rank, i in enumerate(wrong):
        row = rows[int(i)]
        item: dict[str, Any] = {"clip": row.path, "offset": row.offset, "true": names[y[i]],
                                "predicted": names[pred[i]],
                                "confidence": round(float(probs[i, pred[i]]), 4)}
        if rank < count:
            item["kept"] = _excerpt(folder, row, sample_rate, taken)
        listed.append(item)
    write_manifest(folder, {
        "kind": "noise", "split": split, "rate": sample_rate, "classes": names,
        "clips": int(len(y)), "confusion": matrix.tolist(), "precision": precision,
        "recall": recall, "misclassified": listed,
    })
    return folder


def _excerpt(folder: Path, row: Any, rate: int, taken: set[str]) -> dict[str, Any]:
    """A misclassified clip's first CLIP_S seconds (from its offset) as FLAC and spectrogram;
    a clip that cannot be read is named as such instead."""
    try:
        samples = audio.read(Path(row.source_file), rate)
    except Exception as exc:  # the data folder changed since: the listing still stands
        return {"error": f"{row.source_file}: {str(exc).splitlines()[0][:200]}"}
    start = int(row.offset * rate)
    length = int(min(row.duration or CLIP_S, CLIP_S) * rate)
    clip = samples[start:start + length]
    name = slug(f"{Path(row.path).stem}_{row.offset:g}", taken)
    base = f"{name}/clip"
    write_flac(folder / f"{base}.flac", clip, rate)
    write_spectrogram(folder / f"{base}.npy", spectrograms({"clip": clip}, rate, "clip")["clip"])
    return {"start": row.offset, "end": row.offset + len(clip) / rate,
            "signals": {"clip": {"audio": f"{base}.flac", "spectrogram": f"{base}.npy"}}}
