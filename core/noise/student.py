"""The student recipes: `noise.student` (ViLD-image, trained on the teacher's soft labels) and
`noise.ensemble` (teacher and student combined)."""

from __future__ import annotations

import numpy as np
import torch

from core.data import noise_index as dataset
from core.errors import RunError
from core.noise.kd import embedding_kd_loss
from core.noise.kd import ensemble as combine
from core.noise.models import (
    STUDENT_CHANNELS,
    AudioEncoder,
    TextHead,
)
from core.noise.parts import (
    Feed,
    Inputs,
    Teacher,
    augment_for,
    clips,
    embed_and_classify,
    encoder_and_head,
    eval_rows,
    evaluate,
    fit_best,
    labels_tensor,
    log,
    mel_meta,
    rows_of,
)
from core.noise.soft_labels import (
    find_soft_labels,
    finished_files,
    teacher_and_classes,
)
from core.runs.context import RunContext
from core.training.loop import Batcher


def student(ctx: RunContext) -> None:
    p = ctx.params
    device, t, names = teacher_and_classes(ctx)
    settings, seconds, norm = t.settings, float(t.meta["segment_seconds"]), t.norm
    src, rows = rows_of(ctx, "data", settings.sample_rate, seconds)
    pool = clips(ctx, rows, settings, seconds, device)
    found = find_soft_labels(ctx, t)
    targets = None
    if found:
        run_id, data = found
        where = {
            (f, round(float(o), 6)): i
            for i, (f, o) in enumerate(zip(data["source_file"], data["offset"], strict=True))
        }
        index = [where.get((r.source_file, round(r.offset, 6))) for r in rows]
        if all(i is not None for i in index):
            targets = torch.from_numpy(data["embeddings"][index])
            log(f"soft labels: run {run_id} ({len(rows)} clips, teacher sha256 {t.sha256[:12]})")
        else:
            log(
                f"soft labels of run {run_id} cover {sum(i is not None for i in index)} of "
                f"{len(rows)} clips; computing them from the teacher"
            )
    if targets is None:
        if not found:
            log(
                "no soft-labels run of this teacher checkpoint; "
                "computing soft labels from the teacher"
            )
        targets, _ = embed_and_classify(t.encoder, t.head, pool.mels, norm, device)
    vsrc, vrows = rows_of(
        ctx, "val_data" if "val_data" in p else "data", settings.sample_rate, seconds
    )
    val_rows, yva = dataset.select(vrows, p.get("classes", t.classes), vsrc.name, ("val",))
    va = clips(ctx, val_rows, settings, seconds, device)
    vtargets, _ = embed_and_classify(t.encoder, t.head, va.mels, norm, device)

    dim = int(t.meta["embed_dim"])
    encoder = AudioEncoder(dim, STUDENT_CHANNELS)
    head = TextHead(t.head.text.cpu(), t.head.temperature, t.head.background is not None)
    head.load_state_dict(t.head.state_dict())
    for q in head.parameters():
        q.requires_grad_(False)
    cosine_weight = float(p["cosine_weight"])
    inputs = Inputs(settings, norm, augment_for(p, "student"), float(p["noise_snr_db"]))
    feed = Feed(
        Batcher(
            {"x": pool.mels, "w": pool.waves, "e": targets}, int(p["batch_size"]), device
        )
    )
    val = Batcher({"x": va.mels, "e": vtargets, "y": labels_tensor(yva)}, 256, device)

    def step(batch: dict[str, torch.Tensor], is_train: bool):
        e = encoder(inputs(batch, feed.generator if is_train else None, is_train)).float()
        loss = embedding_kd_loss(e, batch["e"], cosine_weight)
        extra = {}
        if "y" in batch:
            extra["accuracy"] = (head.class_logits(e).argmax(1) == batch["y"]).sum()
        return loss, e.shape[0], extra

    meta = {
        **{
            k: t.meta[k]
            for k in (
                "classes",
                "class_map",
                "prompt",
                "prompts",
                "text_model",
                "text_hash",
                "temperature",
                "embed_dim",
            )
        },
        "recipe": "noise.student",
        "experiment": ctx.config.get("experiment"),
        "architecture": "AudioEncoder+TextHead",
        "channels": list(STUDENT_CHANNELS),
        "teacher_sha256": t.sha256,
        "teacher_checkpoint": str(t.encoder_path),
        "seed": int(p["seed"]),
        **mel_meta(settings, seconds, norm),
    }
    fit_best(
        ctx,
        "student",
        {"encoder": encoder, "head": head},
        step,
        feed,
        val,
        meta,
        device,
        parents=[t.parent()],
        trainable=list(encoder.parameters()),
    )
    test_rows, yte, split = eval_rows(vrows, p.get("classes", t.classes), vsrc.name, ctx,
                                      settings.sample_rate, seconds)
    te = clips(ctx, test_rows, settings, seconds, device)
    _, probs = embed_and_classify(encoder, head, te.mels, norm, device)
    evaluate(ctx, probs.numpy(), np.array(yte), names, test_rows, split)


def _find_student(ctx: RunContext, t: Teacher) -> tuple[str, AudioEncoder, TextHead, dict]:
    from core.training import checkpoint

    for run_id, enc_path in finished_files(ctx, "noise.student", "best_student_encoder.pth"):
        enc = checkpoint.load(enc_path, kind="student_encoder")
        if enc["meta"].get("teacher_sha256") != t.sha256:
            continue
        head_ck = checkpoint.load(enc_path.with_name("best_student_head.pth"), kind="student_head")
        meta = enc["meta"]
        if meta["classes"] != t.classes or head_ck["meta"]["text_hash"] != t.meta["text_hash"]:
            raise RunError(
                f"student {run_id}: class order / text embeddings differ from teacher "
                f"{t.encoder_path.parent.name}; retrain the student from this teacher"
            )
        encoder, head = encoder_and_head(enc, head_ck)
        return run_id, encoder, head, meta
    raise RunError(
        f"no finished student of teacher {t.encoder_path.parent.name} "
        f"(sha256 {t.sha256[:12]}); run its student experiment first"
    )


def ensemble(ctx: RunContext) -> None:
    p = ctx.params
    device, t, names = teacher_and_classes(ctx)
    run_id, s_enc, s_head, _ = _find_student(ctx, t)
    log(f"student: run {run_id}")
    seconds = float(t.meta["segment_seconds"])
    src, rows = rows_of(ctx, "data", t.settings.sample_rate, seconds)
    test_rows, y, split = eval_rows(rows, p.get("classes", t.classes), src.name, ctx,
                                    t.settings.sample_rate, seconds)
    te = clips(ctx, test_rows, t.settings, seconds, device)
    _, pt = embed_and_classify(t.encoder, t.head, te.mels, t.norm, device)
    _, ps = embed_and_classify(s_enc, s_head, te.mels, t.norm, device)
    weight, how = float(p["ensemble_weight"]), p["ensemble"]
    pe = combine(pt, ps, weight, how)
    y = np.array(y)
    table = [["model", "accuracy", "macro_f1", "roc_auc"]]
    for prefix, probs in (("teacher_", pt), ("student_", ps), ("", pe)):
        values = evaluate(ctx, probs.numpy(), y, names, test_rows, split, prefix, files=not prefix)
        table.append(
            [
                prefix.rstrip("_") or f"ensemble ({how}, w={weight:g})",
                *[f"{values[k]:.4f}" for k in ("accuracy", "macro_f1", "roc_auc")],
            ]
        )
    from core.util.files import atomic_write_text, csv_text

    atomic_write_text(ctx.run_dir / "ensemble_comparison.csv", csv_text(table))
    for row in table:
        log("  ".join(f"{c:<28}" if i == 0 else f"{c:>9}" for i, c in enumerate(row)))
