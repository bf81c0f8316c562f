"""`noise.soft_labels`: a teacher's embeddings and probabilities over a data set, saved as npz
(never pickle), and how a student finds the newest ones that fit its teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.data import noise_index as dataset
from core.errors import RunError
from core.noise.parts import (
    Teacher,
    check_classes,
    clips,
    device_of,
    embed_and_classify,
    load_teacher,
    log,
    rows_of,
)
from core.runs.context import RunContext
from core.store import Store
from core.util.checksum import sha256_file

SOFT_LABELS = "soft_labels.npz"


def soft_labels(ctx: RunContext) -> None:
    """Teacher embeddings and probabilities for a clip pool, saved as npz (never pickle)."""
    p = ctx.params
    device = device_of(ctx)
    t = load_teacher(ctx, p["teacher_checkpoint"]).to(device)
    if "classes" in p:
        check_classes(
            t,
            dataset.class_map(p["classes"])[0],
            None,
            f"experiment '{ctx.config.get('experiment')}'",
        )
    seconds = float(t.meta["segment_seconds"])
    src, rows = rows_of(ctx, "data", t.settings.sample_rate, seconds)
    if not rows:
        raise RunError(f"data source '{src.name}': no usable clips to label")
    pool = clips(ctx, rows, t.settings, seconds, device)
    embs, probs = embed_and_classify(t.encoder, t.head, pool.mels, t.norm, device)
    path = ctx.checkpoints_dir / SOFT_LABELS
    save_soft_labels(path, rows, embs, probs, t)
    ctx.reporter.checkpoint(
        str(path), "soft_labels", sha256=sha256_file(path), parents=[t.parent()]
    )
    ctx.reporter.metric("clips", len(rows))
    ctx.reporter.metric("mean_confidence", float(probs.max(1).values.mean()))
    for i, name in enumerate(t.classes):
        ctx.reporter.metric("share", float((probs.argmax(1) == i).float().mean()), stem=name)
    log(f"soft labels for {len(rows)} clips of {src.name} -> {path}")


def save_soft_labels(path, rows, embs: torch.Tensor, probs: torch.Tensor, t: Teacher) -> None:
    from core.util.files import atomic_write

    arrays = {
        "embeddings": embs.numpy().astype(np.float32),
        "probabilities": probs.numpy().astype(np.float32),
        "source_file": np.array([r.source_file for r in rows]),
        "offset": np.array([r.offset for r in rows], dtype=np.float64),
        "classes": np.array(t.classes),
        "prompts": np.array(t.meta["prompts"]),
        "text_hash": np.array(t.meta["text_hash"]),
        "teacher_sha256": np.array(t.sha256),
        "teacher_checkpoint": np.array(str(t.encoder_path)),
    }
    atomic_write(path, lambda fh: np.savez(fh, **arrays), suffix=".npz")


def load_soft_labels(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def finished_files(ctx: RunContext, recipe: str, name: str) -> list[tuple[str, Path]]:
    """(run id, file) of a recipe's finished runs that wrote checkpoints/<run>/<name>, newest
    first."""
    store = Store(ctx.db_path)
    try:
        candidates = store.runs_of_recipe(recipe)
    finally:
        store.close()
    base = ctx.checkpoints_dir.parent
    return [(r, base / r / name) for r in candidates if (base / r / name).is_file()]


def find_soft_labels(ctx: RunContext, t: Teacher) -> tuple[str, dict[str, np.ndarray]] | None:
    """The newest finished soft-labels run made from exactly this teacher checkpoint."""
    for run_id, path in finished_files(ctx, "noise.soft_labels", SOFT_LABELS):
        data = load_soft_labels(path)
        if str(data["teacher_sha256"]) != t.sha256:
            continue
        if list(data["classes"]) != t.classes or str(data["text_hash"]) != t.meta["text_hash"]:
            raise RunError(
                f"soft labels {path}: class order {list(data['classes'])} / embedding hash "
                f"{data['text_hash']} do not match teacher {t.encoder_path.parent.name}"
            )
        return run_id, data
    return None


def teacher_and_classes(ctx: RunContext) -> tuple[torch.device, Teacher, list[str]]:
    """The device, the teacher (on it) and the class names, which must be the teacher's own."""
    p = ctx.params
    device = device_of(ctx)
    t = load_teacher(ctx, p["teacher_checkpoint"]).to(device)
    names = dataset.class_map(p["classes"])[0] if "classes" in p else t.classes
    check_classes(t, names, None, f"experiment '{ctx.config.get('experiment')}'")
    return device, t, names
