"""`noise.evaluate`: score a trained teacher or student on any labelled clips, training nothing.

The clips come from `test_data` (scored as split=test) or `val_data` (split=val): a named source
or a folder. Every labelled clip of that source whose class the experiment knows is scored
(`classes`, or the teacher's own); classes the teacher was not trained on are scored through its
text head, as the ensemble does. A student (mark1.student's ViLD-image, mark2.5-2.9's hybrid-KD)
scores the classes it was trained on, a regrouping as its groups. The run is a lineage node of
its own under the checkpoint it scored, so the same model on two folders is two runs beside each
other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.data import noise_index as dataset
from core.data.features import MelSettings
from core.errors import RunError
from core.noise.clips import SEGMENT_FRAMES, Norm
from core.noise.models import FlatStudent
from core.noise.parts import (
    clips,
    device_of,
    embed_and_classify,
    encoder_and_head,
    load_teacher,
    log,
    logits_of,
    rows_of,
    student_pair,
)
from core.noise.parts import evaluate as record_scores
from core.runs import refs
from core.runs.context import RunContext
from core.runs.refs import checkpoint_id
from core.util.checksum import sha256_file


@dataclass
class Scored:
    """The model an evaluation scores: a teacher (ViLD-text), a ViLD-image student or a hybrid-KD
    student, as class probabilities of cached mels."""

    meta: dict[str, Any]
    path: Path
    classes: Any  # what it scores: names, or groups of the data's labels (binary regroupings)
    probs: Callable[[torch.Tensor], torch.Tensor]  # mels [N, ...] -> probabilities [N, C]

    @property
    def settings(self) -> MelSettings:
        return MelSettings(**self.meta["mel"])


def _scored(ctx: RunContext, which: str, classes: Any, device: torch.device) -> Scored:
    try:
        t = load_teacher(ctx, which).to(device)
    except RunError as not_teacher:
        try:  # a student (noise.student or noise.hybrid_kd) has no teacher_* files
            path = refs.checkpoint_path(ctx, "teacher", "student", "encoder", which)
        except RunError:
            raise not_teacher from None
        return _student(path, device)
    from core.noise.hybrid import teacher_logits_fn  # the ensemble's grouping, shared

    classes = classes or t.classes  # others than its own are scored through its text head
    logits_of_embs = teacher_logits_fn(t, classes, f"run '{ctx.run_id}'")

    def teacher_probs(mels: torch.Tensor) -> torch.Tensor:
        embs, _ = embed_and_classify(t.encoder, t.head, mels, t.norm, device)
        with torch.no_grad():
            return logits_of_embs(embs.to(device)).softmax(dim=1).cpu()

    return Scored(t.meta, t.encoder_path, classes, teacher_probs)


def _student(path: Path, device: torch.device) -> Scored:
    enc, head = student_pair(path)
    meta = enc["meta"]
    norm = Norm.from_meta(meta)
    classes = meta.get("class_map") or meta["classes"]  # a student knows only its own classes
    log(f"student: {path} (epoch {meta.get('epoch')}, classes {meta['classes']})")
    if meta.get("architecture") == "FlatStudent":  # mark2.5-2.9: its own linear head
        mel = MelSettings(**meta["mel"])
        model = FlatStudent(len(meta["classes"]), mel.n_mels, SEGMENT_FRAMES,
                            tuple(meta["channels"]))
        model.encoder.load_state_dict(enc["state_dict"])
        model.head.load_state_dict(head["state_dict"])
        return Scored(meta, path, classes,
                      lambda mels: logits_of(model, mels, norm, device).softmax(1))
    encoder, text_head = encoder_and_head(enc, head)  # ViLD-image: the teacher's text head
    return Scored(meta, path, classes,
                  lambda mels: embed_and_classify(encoder, text_head, mels, norm, device)[1])


def evaluate(ctx: RunContext) -> None:
    p = ctx.params
    key = "test_data" if p.get("test_data") else "val_data" if p.get("val_data") else None
    if key is None:
        raise RunError("nothing to score: set test_data or val_data (a source or a folder)")
    split = "test" if key == "test_data" else "val"
    device = device_of(ctx)
    model = _scored(ctx, str(p["teacher_checkpoint"]), p.get("classes"), device)
    ctx.reporter.checkpoint(
        str(model.path), "evaluation", id=f"{ctx.run_id}/evaluation",
        sha256=sha256_file(model.path),
        parents=[{"checkpoint": checkpoint_id(model.path), "relation": "evaluated"}],
    )
    settings, seconds = model.settings, float(model.meta["segment_seconds"])
    src, rows = rows_of(ctx, key, settings.sample_rate, seconds)
    classes = model.classes
    names, _ = dataset.class_map(classes)
    chosen, y = dataset.select(rows, classes, src.name, ("train", "val", "test"))
    if not chosen:
        raise RunError(f"data '{src.name}': no clip of the classes {names} to score")
    log(f"scoring {len(chosen)} clips of {src.name} as split={split}")
    te = clips(ctx, chosen, settings, seconds, device)
    probs = model.probs(te.mels)
    record_scores(ctx, probs.numpy(), np.array(y), names, chosen, split)
