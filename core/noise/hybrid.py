"""`noise.hybrid_kd` (mark2.5-2.9): a student trained on `alpha·T²·KL + (1−alpha)·CE` against a
teacher whose classes may be regrouped (binary mark2 / mark3)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.data import noise_index as dataset
from core.errors import RunError
from core.noise import augment, text
from core.noise.clips import model_input
from core.noise.kd import group_logits, hybrid_kd_loss
from core.noise.models import (
    STUDENT_CHANNELS,
    FlatStudent,
)
from core.noise.parts import (
    Feed,
    Inputs,
    Teacher,
    augment_for,
    class_map,
    clips,
    device_of,
    eval_rows,
    evaluate,
    fit_best,
    labeled_splits,
    load_teacher,
    log,
    logits_of,
    mel_meta,
)
from core.runs.context import RunContext
from core.training.loop import Batcher


def teacher_logits_fn(t: Teacher, classes: Any, where: str):
    """Teacher logits over the experiment's classes, from its text head.

    The same classes in the same order: the head as is. Otherwise each class is a group of fine
    labels, and a group's logit is the log of its labels' summed probability: the labels are the
    teacher's own classes when it was trained on them, or else their prompts are embedded with
    the teacher's text model (zero-shot scoring, weaker).
    """
    names, _ = dataset.class_map(classes)
    if names == t.classes:
        return lambda e: t.head.class_logits(e)
    groups_map = class_map(classes)
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


def kd_views(
    student_kind: str, teacher_kind: str, waves: torch.Tensor, g: torch.Generator,
    snr_db: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clip the student and the teacher each see in one training step. Both augmented
    (augment_target "both"): one augmented draw for both, so the soft label the student is
    pulled toward belongs to the clip it hears. One side only ("student", ESKD's choice, or
    "teacher"): the other sees the clean clip."""
    if student_kind == "none" and teacher_kind == "none":
        return waves, waves
    augmented = augment.apply(student_kind if student_kind != "none" else teacher_kind, waves, g,
                              snr_db)
    if student_kind != "none" and teacher_kind != "none":
        return augmented, augmented
    return (augmented, waves) if student_kind != "none" else (waves, augmented)


def hybrid_kd(ctx: RunContext) -> None:
    p = ctx.params
    device = device_of(ctx)
    which = p["teacher_checkpoint"]
    t = load_teacher(ctx, which).to(device)
    log(
        "ESKD: using the teacher's "
        f"{'early-stopped best' if which == 'best' else 'last'} checkpoint"
    )
    where = f"experiment '{ctx.config.get('experiment')}'"
    teacher_logits = teacher_logits_fn(t, p["classes"], where)
    d = labeled_splits(ctx, device)
    settings, seconds, names, norm, tr, va = d.settings, d.seconds, d.names, d.norm, d.train, d.val
    t_inputs = Inputs(
        t.settings, t.norm, augment_for(p, "teacher"), float(p["noise_snr_db"])
    )

    @torch.no_grad()
    def teacher_on(waves: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, waves.shape[0], 256):
            x = t_inputs.from_waves(waves[i : i + 256].to(device))
            out.append(teacher_logits(t.encoder(x).float()).float())
        return torch.cat(out)

    tl_train, tl_val = teacher_on(tr.waves).cpu(), teacher_on(va.waves).cpu()
    model = FlatStudent(len(names), settings.n_mels, model_input(tr.mels[:1]).shape[-1])
    inputs = Inputs(settings, norm, augment_for(p, "student"), float(p["noise_snr_db"]))
    alpha, temp = float(p["alpha"]), float(p["kd_temperature"])
    feed = Feed(
        Batcher(
            {"x": tr.mels, "w": tr.waves, "y": d.y_train, "t": tl_train},
            int(p["batch_size"]),
            device,
        )
    )
    val = Batcher({"x": va.mels, "y": d.y_val, "t": tl_val}, 256, device)
    augmented = inputs.kind != "none" or t_inputs.kind != "none"

    def step(batch: dict[str, torch.Tensor], is_train: bool):
        if is_train and augmented:
            heard, taught = kd_views(inputs.kind, t_inputs.kind, batch["w"], feed.generator,
                                     inputs.snr_db)
            logits = model(inputs.from_waves(heard)).float()
            target = teacher_on(taught) if t_inputs.kind != "none" else batch["t"]
        else:
            logits = model(inputs(batch, None, False)).float()
            target = batch["t"]
        loss = hybrid_kd_loss(logits, target, batch["y"], alpha, temp)
        return loss, batch["y"].numel(), {"accuracy": (logits.argmax(1) == batch["y"]).sum()}

    meta = {
        "recipe": "noise.hybrid_kd",
        "experiment": ctx.config.get("experiment"),
        "architecture": "FlatStudent",
        "channels": list(STUDENT_CHANNELS[:3]),
        "classes": names,
        "class_map": class_map(p["classes"]),
        "alpha": alpha,
        "kd_temperature": temp,
        "teacher_sha256": t.sha256,
        "teacher_checkpoint": str(t.encoder_path),
        "teacher_which": which,
        "augment": p["augment"],
        "augment_target": p["augment_target"],
        "seed": int(p["seed"]),
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
