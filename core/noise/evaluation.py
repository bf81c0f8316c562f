"""`noise.evaluate`: score a trained teacher on any labelled clips, without training anything.

The clips come from `test_data` (scored as split=test) or `val_data` (split=val): a named source
or a folder. Every labelled clip of that source whose class the experiment knows is scored
(`classes`, or the teacher's own); classes the teacher was not trained on are scored through its
text head, as the ensemble does. The run is a lineage node of its own under the checkpoint it
scored, so the same model on two folders is two runs beside each other.
"""

from __future__ import annotations

import numpy as np
import torch

from core.data import noise_index as dataset
from core.errors import RunError
from core.noise.parts import clips, device_of, embed_and_classify, load_teacher, log, rows_of
from core.noise.parts import evaluate as record_scores
from core.runs.context import RunContext
from core.runs.refs import checkpoint_id
from core.util.checksum import sha256_file


def evaluate(ctx: RunContext) -> None:
    p = ctx.params
    key = "test_data" if p.get("test_data") else "val_data" if p.get("val_data") else None
    if key is None:
        raise RunError("nothing to score: set test_data or val_data (a source or a folder)")
    split = "test" if key == "test_data" else "val"
    device = device_of(ctx)
    t = load_teacher(ctx, str(p.get("teacher_checkpoint", "best"))).to(device)
    ctx.reporter.checkpoint(
        str(t.encoder_path), "evaluation", id=f"{ctx.run_id}/evaluation",
        sha256=sha256_file(t.encoder_path),
        parents=[{"checkpoint": checkpoint_id(t.encoder_path), "relation": "evaluated"}],
    )
    settings, seconds = t.settings, float(t.meta["segment_seconds"])
    src, rows = rows_of(ctx, key, settings.sample_rate, seconds)
    classes = p.get("classes") or t.classes
    names, _ = dataset.class_map(classes)
    chosen, y = dataset.select(rows, classes, src.name, ("train", "val", "test"))
    if not chosen:
        raise RunError(f"data '{src.name}': no clip of the classes {names} to score")
    log(f"scoring {len(chosen)} clips of {src.name} as split={split}")
    from core.noise.hybrid import teacher_logits_fn  # the ensemble's grouping, shared

    logits_of = teacher_logits_fn(t, classes, f"run '{ctx.run_id}'")
    te = clips(ctx, chosen, settings, seconds, device)
    embs, _ = embed_and_classify(t.encoder, t.head, te.mels, t.norm, device)
    with torch.no_grad():
        probs = logits_of(embs.to(device)).softmax(dim=1).cpu()
    record_scores(ctx, probs.numpy(), np.array(y), names, chosen, split)
