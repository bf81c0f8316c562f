"""The noise recipes: index, teacher (ViLD-text), soft_labels, student (ViLD-image), ensemble,
hybrid_kd (mark2.5-2.9). Each is `run(ctx)`; all training goes through core.training.loop.Trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from core.data import noise_index as dataset
from core.data.features import MelSettings
from core.errors import RunError
from core.noise import text
from core.noise.clips import Norm, model_input
from core.noise.kd import ensemble as combine
from core.noise.kd import group_logits, hybrid_kd_loss
from core.noise.models import (
    STUDENT_CHANNELS,
    TEACHER_CHANNELS,
    AudioEncoder,
    FlatStudent,
    TextHead,
)
from core.noise.parts import (
    Feed,
    Inputs,
    Teacher,
    check_classes,
    clips,
    device_of,
    embed_and_classify,
    encoder_and_head,
    eval_rows,
    evaluate,
    fit_best,
    labeled_splits,
    load_teacher,
    log,
    logits_of,
    mel_meta,
    rows_of,
)
from core.runs.context import RunContext
from core.store import Store
from core.training.loop import Batcher
from core.util.checksum import sha256_file

SOFT_LABELS = "soft_labels.npz"


def _seconds(p: dict[str, Any]) -> float:
    return float(p.get("segment_seconds", 1.0))


def _augment_for(p: dict[str, Any], who: str) -> str:
    kind = p.get("augment", "none")
    return kind if p.get("augment_target", "student") in (who, "both") else "none"


def _labels(y: list[int]) -> torch.Tensor:
    return torch.tensor(y, dtype=torch.long)


# ── noise.index ──────────────────────────────────────────────────────────────────────────────


def index(ctx: RunContext) -> None:
    """Index every data source the experiment names; record segment counts per split."""
    p = ctx.params
    rate, seconds = int(p.get("sample_rate", 16000)), _seconds(p)
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


# ── noise.teacher (mark1, mark2, mark3) ─────────────────────────────────────────────────────


def teacher(ctx: RunContext) -> None:
    p = ctx.params
    device = device_of(ctx)
    d = labeled_splits(ctx, device)
    settings, seconds, names, norm = d.settings, d.seconds, d.names, d.norm
    dim = int(p.get("embed_dim", 384))
    emb = text.embed(
        names,
        p.get("prompt", "a sound of {class} in the room"),
        p.get("text_model", "all-MiniLM-L6-v2"),
        dim,
        warn=log,
    )
    encoder = AudioEncoder(dim, TEACHER_CHANNELS)
    head = TextHead(
        emb.vectors, float(p.get("temperature", 0.07)), bool(p.get("background_embedding"))
    )
    inputs = Inputs(settings, norm, _augment_for(p, "teacher"), float(p.get("noise_snr_db", 20.0)))
    feed = Feed(
        Batcher(
            {"x": d.train.mels, "w": d.train.waves, "y": d.y_train},
            int(p.get("batch_size", 16)),
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
        "class_map": _class_map(p["classes"]),
        "prompt": p.get("prompt"),
        "prompts": emb.prompts,
        "text_model": emb.model,
        "text_hash": emb.digest,
        "temperature": float(p.get("temperature", 0.07)),
        "seed": int(p.get("seed", 0)),
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


def _class_map(classes: Any) -> dict[str, list[str]]:
    return (
        {k: list(v) for k, v in classes.items()}
        if isinstance(classes, dict)
        else {c: [c] for c in classes}
    )


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
    new = list(p.get("zero_shot_classes", []))
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
        names, p.get("prompt", "a sound of {class} in the room"), emb.model, emb.vectors.shape[1]
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


# ── noise.soft_labels ───────────────────────────────────────────────────────────────────────


def soft_labels(ctx: RunContext) -> None:
    """Teacher embeddings and probabilities for a clip pool, saved as npz (never pickle)."""
    p = ctx.params
    device = device_of(ctx)
    t = load_teacher(ctx, p.get("teacher_checkpoint", "best")).to(device)
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


def _finished_files(ctx: RunContext, recipe: str, name: str) -> list[tuple[str, Path]]:
    """(run id, file) of a recipe's finished runs that wrote checkpoints/<run>/<name>, newest
    first."""
    store = Store(ctx.db_path)
    try:
        candidates = store.runs_of_recipe(recipe)
    finally:
        store.close()
    base = ctx.checkpoints_dir.parent
    return [(r, base / r / name) for r in candidates if (base / r / name).is_file()]


def _find_soft_labels(ctx: RunContext, t: Teacher) -> tuple[str, dict[str, np.ndarray]] | None:
    """The newest finished soft-labels run made from exactly this teacher checkpoint."""
    for run_id, path in _finished_files(ctx, "noise.soft_labels", SOFT_LABELS):
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


# ── noise.student (ViLD-image) ──────────────────────────────────────────────────────────────


def _teacher_and_classes(ctx: RunContext) -> tuple[torch.device, Teacher, list[str]]:
    """The device, the teacher (on it) and the class names, which must be the teacher's own."""
    p = ctx.params
    device = device_of(ctx)
    t = load_teacher(ctx, p.get("teacher_checkpoint", "best")).to(device)
    names = dataset.class_map(p["classes"])[0] if "classes" in p else t.classes
    check_classes(t, names, None, f"experiment '{ctx.config.get('experiment')}'")
    return device, t, names


def student(ctx: RunContext) -> None:
    p = ctx.params
    device, t, names = _teacher_and_classes(ctx)
    settings, seconds, norm = t.settings, float(t.meta["segment_seconds"]), t.norm
    src, rows = rows_of(ctx, "data", settings.sample_rate, seconds)
    pool = clips(ctx, rows, settings, seconds, device)
    found = _find_soft_labels(ctx, t)
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
    cosine_weight = float(p.get("cosine_weight", 0.0))
    inputs = Inputs(settings, norm, _augment_for(p, "student"), float(p.get("noise_snr_db", 20.0)))
    feed = Feed(
        Batcher(
            {"x": pool.mels, "w": pool.waves, "e": targets}, int(p.get("batch_size", 16)), device
        )
    )
    val = Batcher({"x": va.mels, "e": vtargets, "y": _labels(yva)}, 256, device)

    def step(batch: dict[str, torch.Tensor], is_train: bool):
        e = encoder(inputs(batch, feed.generator if is_train else None, is_train)).float()
        loss = F.l1_loss(e, batch["e"])
        if cosine_weight:
            loss = loss + cosine_weight * (1 - F.cosine_similarity(e, batch["e"], dim=1)).mean()
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
        "seed": int(p.get("seed", 0)),
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


# ── noise.ensemble (ViLD-ensemble) ──────────────────────────────────────────────────────────


def _find_student(ctx: RunContext, t: Teacher) -> tuple[str, AudioEncoder, TextHead, dict]:
    from core.training import checkpoint

    for run_id, enc_path in _finished_files(ctx, "noise.student", "best_student_encoder.pth"):
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
    device, t, names = _teacher_and_classes(ctx)
    run_id, s_enc, s_head, _ = _find_student(ctx, t)
    log(f"student: run {run_id}")
    seconds = float(t.meta["segment_seconds"])
    src, rows = rows_of(ctx, "data", t.settings.sample_rate, seconds)
    test_rows, y, split = eval_rows(rows, p.get("classes", t.classes), src.name, ctx,
                                    t.settings.sample_rate, seconds)
    te = clips(ctx, test_rows, t.settings, seconds, device)
    _, pt = embed_and_classify(t.encoder, t.head, te.mels, t.norm, device)
    _, ps = embed_and_classify(s_enc, s_head, te.mels, t.norm, device)
    weight, how = float(p.get("ensemble_weight", 2 / 3)), p.get("ensemble", "mean")
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


# ── noise.hybrid_kd (mark2.5-2.9) ───────────────────────────────────────────────────────────


def _teacher_logits_fn(t: Teacher, classes: Any, where: str):
    """Teacher logits over the experiment's classes, from its text head.

    The same classes in the same order: the head as is. Otherwise each class is a group of fine
    labels, and a group's logit is the log of its labels' summed probability: the labels are the
    teacher's own classes when it was trained on them, or else their prompts are embedded with
    the teacher's text model (zero-shot scoring, weaker).
    """
    names, _ = dataset.class_map(classes)
    if names == t.classes:
        return lambda e: t.head.class_logits(e)
    groups_map = _class_map(classes)
    fine = [label for group in groups_map.values() for label in group]
    if all(label in t.classes for label in fine):
        own = [[t.classes.index(label) for label in group] for group in groups_map.values()]
        log(f"teacher scores {names} by grouping its classes {t.classes}")
        return lambda e: group_logits(t.head.class_logits(e), own)
    if t.meta.get("text_model") == text.FIXED:
        raise RunError(
            f"{where}: teacher {t.encoder_path.parent.name} knows only {t.classes} (fixed class "
            f"embeddings, no text model), so it cannot score {fine}; train the teacher with a "
            f"text model or on these classes"
        )
    emb = text.embed(
        fine,
        t.meta.get("prompt") or "a sound of {class} in the room",
        t.meta["text_model"],
        int(t.meta["embed_dim"]),
    )
    vectors = emb.vectors
    groups, at = [], 0
    for group in groups_map.values():
        groups.append(list(range(at, at + len(group))))
        at += len(group)
    log(f"teacher scores {names} through the prompts of {fine}")
    return lambda e: group_logits(t.head.class_logits(e, vectors.to(e.device)), groups)


def hybrid_kd(ctx: RunContext) -> None:
    p = ctx.params
    device = device_of(ctx)
    which = p.get("teacher_checkpoint", "best")
    t = load_teacher(ctx, which).to(device)
    log(
        "ESKD: using the teacher's "
        f"{'early-stopped best' if which == 'best' else 'last'} checkpoint"
    )
    where = f"experiment '{ctx.config.get('experiment')}'"
    teacher_logits = _teacher_logits_fn(t, p["classes"], where)
    d = labeled_splits(ctx, device)
    settings, seconds, names, norm, tr, va = d.settings, d.seconds, d.names, d.norm, d.train, d.val
    t_inputs = Inputs(
        t.settings, t.norm, _augment_for(p, "teacher"), float(p.get("noise_snr_db", 20.0))
    )

    @torch.no_grad()
    def teacher_on(waves: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        out = []
        for i in range(0, waves.shape[0], 256):
            x = t_inputs.from_waves(waves[i : i + 256].to(device), g)
            out.append(teacher_logits(t.encoder(x).float()).float())
        return torch.cat(out)

    tl_train, tl_val = teacher_on(tr.waves).cpu(), teacher_on(va.waves).cpu()
    model = FlatStudent(len(names), settings.n_mels, model_input(tr.mels[:1]).shape[-1])
    inputs = Inputs(settings, norm, _augment_for(p, "student"), float(p.get("noise_snr_db", 20.0)))
    alpha, temp = float(p.get("alpha", 0.7)), float(p.get("kd_temperature", 4.0))
    feed = Feed(
        Batcher(
            {"x": tr.mels, "w": tr.waves, "y": d.y_train, "t": tl_train},
            int(p.get("batch_size", 16)),
            device,
        )
    )
    val = Batcher({"x": va.mels, "y": d.y_val, "t": tl_val}, 256, device)
    teacher_augmented = t_inputs.kind != "none"

    def step(batch: dict[str, torch.Tensor], is_train: bool):
        g = feed.generator if is_train else None
        logits = model(inputs(batch, g, is_train)).float()
        target = teacher_on(batch["w"], g) if (is_train and teacher_augmented) else batch["t"]
        loss = hybrid_kd_loss(logits, target, batch["y"], alpha, temp)
        return loss, batch["y"].numel(), {"accuracy": (logits.argmax(1) == batch["y"]).sum()}

    meta = {
        "recipe": "noise.hybrid_kd",
        "experiment": ctx.config.get("experiment"),
        "architecture": "FlatStudent",
        "channels": list(STUDENT_CHANNELS[:3]),
        "classes": names,
        "class_map": _class_map(p["classes"]),
        "alpha": alpha,
        "kd_temperature": temp,
        "teacher_sha256": t.sha256,
        "teacher_checkpoint": str(t.encoder_path),
        "teacher_which": which,
        "augment": p.get("augment", "none"),
        "augment_target": p.get("augment_target", "student"),
        "seed": int(p.get("seed", 0)),
        **mel_meta(settings, seconds, norm),
    }
    fit_best(
        ctx,
        "student",
        {"encoder": model.encoder, "head": model.head},
        step,
        feed,
        val,
        meta,
        device,
        parents=[t.parent()],
    )
    test_rows, yte, split = eval_rows(d.rows, p["classes"], d.source.name, ctx,
                                      settings.sample_rate, seconds)
    te = clips(ctx, test_rows, settings, seconds, device)
    y = np.array(yte)
    probs = logits_of(model, te.mels, norm, device).softmax(1).numpy()
    evaluate(ctx, probs, y, names, test_rows, split)
    tprobs = teacher_on(te.waves).softmax(1).cpu().numpy()
    evaluate(ctx, tprobs, y, names, test_rows, split, prefix="teacher_", files=False)


__all__ = ["ensemble", "hybrid_kd", "index", "soft_labels", "student", "teacher"]
