"""The noise teacher recipes: `noise.index` (the clip index of a data source) and `noise.teacher`
(ViLD-text: cosine to class-prompt text embeddings over a temperature), with its zero-shot check
on noise types it never saw."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from core.data import noise_index as dataset
from core.data.features import MelSettings
from core.errors import RunError
from core.noise import text
from core.noise.clips import Norm
from core.noise.models import (
    TEACHER_CHANNELS,
    AudioEncoder,
    TextHead,
)
from core.noise.parts import (
    Feed,
    Inputs,
    augment_for,
    class_map,
    clips,
    device_of,
    embed_and_classify,
    eval_rows,
    evaluate,
    fit_best,
    labeled_splits,
    log,
    mel_meta,
    rows_of,
)
from core.runs.context import RunContext
from core.training.loop import Batcher


def _seconds(p: dict[str, Any]) -> float:
    return float(p["segment_seconds"])


def index(ctx: RunContext) -> None:
    """Index every data source the experiment names; record segment counts per split."""
    p = ctx.params
    rate, seconds = int(p["sample_rate"]), _seconds(p)
    for key in ("data", "val_data", "eval_data"):
        if key not in p:
            continue
        src, rows = rows_of(ctx, key, rate, seconds)
        for split in sorted({r.split for r in rows}):
            ctx.reporter.metric(
                "segments", sum(r.split == split for r in rows), split=split, track=src.name
            )
        skipped = src.index / dataset.SKIPPED_NAME
        ctx.reporter.metric(
            "skipped_files",
            len(skipped.read_text().splitlines()) - 1 if skipped.is_file() else 0,
            track=src.name,
        )


def teacher(ctx: RunContext) -> None:
    p = ctx.params
    device = device_of(ctx)
    d = labeled_splits(ctx, device)
    settings, seconds, names, norm = d.settings, d.seconds, d.names, d.norm
    dim = int(p["embed_dim"])
    emb = text.embed(
        names,
        p["prompt"],
        p["text_model"],
        dim,
        warn=log,
    )
    encoder = AudioEncoder(dim, TEACHER_CHANNELS)
    head = TextHead(
        emb.vectors, float(p["temperature"]), bool(p["background_embedding"])
    )
    inputs = Inputs(settings, norm, augment_for(p, "teacher"), float(p["noise_snr_db"]))
    feed = Feed(
        Batcher(
            {"x": d.train.mels, "w": d.train.waves, "y": d.y_train},
            int(p["batch_size"]),
            device,
        )
    )
    val = Batcher({"x": d.val.mels, "y": d.y_val}, 256, device)

    def step(batch: dict[str, torch.Tensor], is_train: bool):
        x = inputs(batch, feed.generator if is_train else None, is_train)
        logits = head(encoder(x))
        loss = F.cross_entropy(logits.float(), batch["y"])
        correct = (logits[:, : len(names)].argmax(1) == batch["y"]).sum()
        return loss, batch["y"].numel(), {"accuracy": correct}

    meta = {
        "recipe": "noise.teacher",
        "experiment": ctx.config.get("experiment"),
        "architecture": "AudioEncoder+TextHead",
        "embed_dim": dim,
        "channels": list(TEACHER_CHANNELS),
        "classes": names,
        "class_map": class_map(p["classes"]),
        "prompt": p.get("prompt"),
        "prompts": emb.prompts,
        "text_model": emb.model,
        "text_hash": emb.digest,
        "temperature": float(p["temperature"]),
        "seed": int(p["seed"]),
        **mel_meta(settings, seconds, norm),
    }
    fit_best(
        ctx, "teacher", {"encoder": encoder, "classifier": head}, step, feed, val, meta, device
    )
    test_rows, yte, split = eval_rows(d.rows, p["classes"], d.source.name, ctx,
                                      settings.sample_rate, seconds)
    te = clips(ctx, test_rows, settings, seconds, device)
    _, probs = embed_and_classify(encoder, head, te.mels, norm, device)
    evaluate(ctx, probs.numpy(), np.array(yte), names, test_rows, split)
    _zero_shot(ctx, encoder, head, emb, norm, settings, seconds, device)


def _zero_shot(
    ctx: RunContext,
    encoder,
    head,
    emb: text.TextEmbeddings,
    norm: Norm,
    settings: MelSettings,
    seconds: float,
    device: torch.device,
) -> None:
    p = ctx.params
    new = list(p["zero_shot_classes"])
    if not new or "eval_data" not in p:
        return
    if not emb.zero_shot:
        log("zero-shot evaluation skipped: fixed class embeddings cannot name unseen classes")
        return
    src, rows = rows_of(ctx, "eval_data", settings.sample_rate, seconds)
    chosen = [r for r in rows if r.label in new]
    if not chosen:
        raise RunError(f"data source '{src.name}': no clips of zero-shot classes {new}")
    names = emb.classes + new
    vectors = text.embed(
        names, p["prompt"], emb.model, emb.vectors.shape[1]
    ).vectors
    ev = clips(ctx, chosen, settings, seconds, device)
    _, probs = embed_and_classify(encoder, head, ev.mels, norm, device, text=vectors)
    y = np.array([names.index(r.label) for r in chosen])
    pred = probs.numpy().argmax(1)
    accuracy = float((pred == y).mean())
    ctx.reporter.metric("zero_shot_accuracy", accuracy, split="zero_shot")
    for c in new:
        mask = y == names.index(c)
        ctx.reporter.metric(
            "zero_shot_accuracy", float((pred[mask] == y[mask]).mean()), split="zero_shot", stem=c
        )
    log(
        f"zero-shot on {src.name} ({', '.join(new)} among {len(names)} classes): "
        f"accuracy {accuracy:.4f} over {len(y)} clips (chance {1 / len(names):.3f})"
    )
    from core.noise.parts import write_details

    write_details(ctx.run_dir / "zero_shot_predictions.csv", chosen, y, probs.numpy(), names)
