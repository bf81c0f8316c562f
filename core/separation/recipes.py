"""The separation recipes: train (CRNN / U-Net CRNN, fine-tune, freeze, remix), evaluate
(mask_scale, threshold, gain correction) and blend (weighted average of checkpoints)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import checkpoint, refs
from core.checksum import sha256_file
from core.errors import RunError
from core.recipes import RunContext
from core.separation import blend as blending
from core.separation.data import STEMS, Track, load
from core.separation.evaluate import score
from core.separation.models import build, focal_loss, load_weights, masks_of
from core.separation.spectral import MagNorm, Stft
from core.training import Trainer, run_device

PREFIX, PART = "separator", "model"
KIND, BEST = blending.KIND, blending.BEST
ONSET_WEIGHT = 0.1  # weight of the rhythm head's focal loss beside the mask loss
VAL_SEGMENTS_PER_TRACK = 4


def _tracks(ctx: RunContext, key: str, stems: tuple[str, ...], rate: int) -> list[Track]:
    name, table = ctx.data_source(key)
    return load(Path(table["root"]), name, stems, rate)


def _mono(tracks: list[Track]) -> torch.Tensor:
    """[tracks, stems, n] mono stems, cut to the shortest track."""
    n = min(t.stems.shape[-1] for t in tracks)
    return torch.from_numpy(np.stack([t.stems[..., :n].mean(axis=1) for t in tracks])).float()


def separator_path(ctx: RunContext, key: str) -> Path:
    return refs.checkpoint_path(ctx, key, PREFIX, PART, "best")


def _meta(p: dict[str, Any], stems: tuple[str, ...], stft: Stft) -> dict[str, Any]:
    return {
        "model": p.get("model", "crnn"),
        "stems": list(stems),
        "hidden_size": int(p.get("hidden_size", 256)),
        "num_layers": int(p.get("num_layers", 3)),
        "dropout": float(p.get("dropout", 0.0)),
        "rhythm_head": bool(p.get("rhythm_head", False)),
        "stft": stft.as_meta(),
    }


def _freeze(model: torch.nn.Module, prefixes: list[str]) -> list[torch.nn.Parameter]:
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in names):
            top = sorted({n.split(".")[0] for n in names})
            raise RunError(
                f"key 'freeze': no parameters start with '{prefix}' "
                f"(the model has: {', '.join(top)})"
            )
    trainable = []
    for name, param in model.named_parameters():
        frozen = any(name.startswith(prefix) for prefix in prefixes)
        param.requires_grad_(not frozen)
        if not frozen:
            trainable.append(param)
    return trainable


class Segments:
    """Training examples cut from the tracks: remixing, random gains, target-stem-only."""

    def __init__(self, stems: torch.Tensor, seg: int, p: dict[str, Any], names: tuple[str, ...]):
        self.stems, self.seg = stems, seg
        self.remix_prob = float(p.get("remix_prob", 0.0))
        self.random_gain = bool(p.get("random_gain", False))
        target = p.get("target_stem")
        if target and target not in names:
            raise RunError(f"key 'target_stem': '{target}' is not one of the stems {list(names)}")
        self.keep = None if not target else torch.tensor([s == target for s in names])
        n_tracks, _, n = stems.shape
        if n < seg:
            raise RunError(
                f"tracks are {n} samples long but segment_seconds asks for {seg}; "
                f"use longer tracks or a shorter segment_seconds"
            )
        self.per_epoch = max(1, n_tracks * (n // seg))

    def batch(self, g: torch.Generator, size: int) -> dict[str, torch.Tensor]:
        n_tracks, n_stems, n = self.stems.shape
        track = torch.randint(n_tracks, (size, 1), generator=g).expand(size, n_stems).clone()
        remix = torch.rand(size, generator=g) < self.remix_prob
        track[remix] = torch.randint(n_tracks, (int(remix.sum()), n_stems), generator=g)
        start = (
            torch.randint(n - self.seg + 1, (size, 1), generator=g).expand(size, n_stems).clone()
        )
        start[remix] = torch.randint(n - self.seg + 1, (int(remix.sum()), n_stems), generator=g)
        idx = start[..., None] + torch.arange(self.seg)
        stems = self.stems[
            track[..., None].expand_as(idx),
            torch.arange(n_stems)[None, :, None].expand_as(idx),
            idx,
        ]
        if self.random_gain:
            stems = stems * (0.5 + torch.rand(size, n_stems, 1, generator=g))
        mixture = stems.sum(dim=1)
        if self.keep is not None:  # the other stems are silent targets
            stems = stems * self.keep[None, :, None]
        return {"mix": mixture, "stems": stems}

    def fixed(self, per_track: int) -> dict[str, torch.Tensor]:
        n_tracks, _, n = self.stems.shape
        hop = max(1, (n - self.seg) // max(1, per_track - 1))
        pieces = [
            self.stems[t, :, s : s + self.seg]
            for t in range(n_tracks)
            for s in range(0, n - self.seg + 1, hop)
        ][: n_tracks * per_track]
        stems = torch.stack(pieces)
        return {"mix": stems.sum(dim=1), "stems": stems}


def train(ctx: RunContext) -> None:
    p = ctx.params
    device = run_device(ctx)
    stems = tuple(p.get("stems", STEMS))
    stft = Stft.from_params(p)
    train_tracks = _tracks(ctx, "data", stems, stft.sample_rate)
    val_tracks = _tracks(ctx, "val_data", stems, stft.sample_rate)
    seg = int(float(p.get("segment_seconds", 2.0)) * stft.sample_rate)
    train_set = Segments(_mono(train_tracks), seg, p, stems)
    val_set = Segments(_mono(val_tracks), seg, {}, stems)
    meta = _meta(p, stems, stft)
    model = build(meta)
    parents: list[dict[str, Any]] = []
    if "pretrained" in ctx.config.get("references", {}):
        path = separator_path(ctx, "pretrained")
        source = checkpoint.load(path, kind=KIND)
        blending.check_compatible([(str(path), source["meta"]), ("this experiment", meta)])
        load_weights(model, source["state_dict"], str(path))
        norm = MagNorm.from_meta(source["meta"])  # the statistics the weights were trained with
        parents.append({"checkpoint": refs.checkpoint_id(path), "relation": "pretrained"})
        print(f"fine-tuning from {path}", flush=True)
    else:
        norm = MagNorm.fit(stft.spec(train_set.stems.sum(dim=1)).abs())
    trainable = _freeze(model, list(p.get("freeze", [])))
    frozen = [
        m
        for name, m in model.named_children()
        if any(name.startswith(f) for f in p.get("freeze", []))
    ]
    if p.get("freeze"):
        print(
            f"frozen: {', '.join(p['freeze'])}; training {sum(q.numel() for q in trainable)} "
            f"parameters",
            flush=True,
        )
    batch_size = int(p.get("batch_size", 8))
    rhythm, gamma = (
        bool(meta["rhythm_head"]) and meta["model"] == "unet_crnn",
        float(p.get("focal_gamma", 2.0)),
    )
    drums = stems.index("drums") if "drums" in stems else None
    val_batch = val_set.fixed(VAL_SEGMENTS_PER_TRACK)

    def step(batch: dict[str, torch.Tensor], is_train: bool):
        for module in frozen:  # frozen layers keep their normalisation statistics too
            module.eval()
        mix, target = batch["mix"].to(device), batch["stems"].to(device)
        spec = stft.spec(mix)
        mag = spec.abs()
        masks, onsets = masks_of(model, norm(mag)[:, None])
        target_mag = stft.spec(target).abs()
        loss = (masks.float() * mag[:, None] - target_mag).abs().mean()
        if rhythm and onsets is not None and drums is not None:
            loss = loss + ONSET_WEIGHT * focal_loss(
                onsets.float(), onset_targets(target_mag[:, drums]), gamma
            )
        return loss, mix.shape[0], {}

    def train_batches(g: torch.Generator):
        steps = math.ceil(train_set.per_epoch / batch_size)
        return (train_set.batch(g, batch_size) for _ in range(steps))

    def val_batches():
        n = val_batch["mix"].shape[0]
        return (
            {k: v[i : i + batch_size] for k, v in val_batch.items()}
            for i in range(0, n, batch_size)
        )

    full_meta = {
        **meta,
        **norm.to_meta(),
        "recipe": "separation.train",
        "experiment": ctx.config.get("experiment"),
        "seed": int(p.get("seed", 0)),
    }
    trainer = Trainer(
        ctx,
        PREFIX,
        {PART: model},
        step,
        train_batches,
        val_batches,
        full_meta,
        device,
        parents=parents,
        trainable=trainable,
    )
    trainer.fit()
    trainer.load_best()
    _score(ctx, model, full_meta, device, val_tracks)


def onset_targets(drum_mag: torch.Tensor) -> torch.Tensor:
    """Per-frame onsets of the drum stem [B, 512, T] -> [B, T] in {0, 1}: spectral flux peaks."""
    flux = torch.relu(torch.diff(torch.log1p(drum_mag), dim=-1)).sum(dim=-2)
    flux = torch.nn.functional.pad(flux, (1, 0))
    limit = flux.mean(dim=-1, keepdim=True) + 1.5 * flux.std(dim=-1, keepdim=True)
    return (flux > limit).float()


def _score_checkpoint(ctx: RunContext, path: Path, device: torch.device) -> None:
    """Separate the validation tracks with a checkpoint and score them with this run's
    mask_scale, threshold and gain correction."""
    payload = checkpoint.load(path, kind=KIND)
    model = build(payload["meta"])
    load_weights(model, payload["state_dict"], str(path))
    _score(ctx, model, payload["meta"], device)


def _score(
    ctx: RunContext,
    model: torch.nn.Module,
    meta: dict[str, Any],
    device,
    tracks: list[Track] | None = None,
) -> None:
    p = ctx.params
    if tracks is None:
        tracks = _tracks(ctx, "val_data", tuple(meta["stems"]), int(meta["stft"]["sample_rate"]))
    score(
        ctx,
        model,
        meta,
        tracks,
        device,
        float(p.get("mask_scale", 1.0)),
        float(p.get("threshold", 0.0)),
        bool(p.get("gain_correction", False)),
    )


def evaluate(ctx: RunContext) -> None:
    """Score a checkpoint (`pretrained`) with this experiment's mask_scale, threshold, gain."""
    device = run_device(ctx)
    path = separator_path(ctx, "pretrained")
    record_evaluation(ctx, path)
    _score_checkpoint(ctx, path, device)


def record_evaluation(ctx: RunContext, path: Path) -> None:
    """An evaluation is a lineage node of its own, pointing at the weights it scored."""
    ctx.reporter.checkpoint(
        str(path),
        "evaluation",
        id=f"{ctx.run_id}/evaluation",
        sha256=sha256_file(path),
        parents=[{"checkpoint": refs.checkpoint_id(path), "relation": "evaluated"}],
    )


def blend(ctx: RunContext) -> None:
    """Average the sources' weights, record where they came from, evaluate the result."""
    device = run_device(ctx)
    sources = ctx.config.get("sources", [])
    paths = [blending.source_path(ctx, s) for s in sources]
    weights = [float(s["weight"]) for s in sources]
    out = ctx.checkpoints_dir / BEST
    payloads = [checkpoint.read(p) for p in paths]  # each file loaded once
    plain = not all(checkpoint.is_nkd(pl) for pl in payloads)
    if plain:  # the researcher's own checkpoints: averaged and written in their own layout
        out = ctx.checkpoints_dir / f"{ctx.run_id}_blend{paths[0].suffix or '.pth'}"
        blending.write_plain_blend(paths, weights, out, payloads)
    else:
        blending.write_blend(paths, weights, out, ctx, payloads)
    ctx.reporter.checkpoint(
        str(out),
        "best",
        sha256=sha256_file(out),
        parents=[
            {"checkpoint": refs.checkpoint_id(q), "relation": "blend", "weight": w}
            for q, w in zip(paths, weights, strict=True)
        ],
    )
    if plain:
        print("not evaluated: the blend of plain state dicts is not an nkd separator; score it "
              "with your own evaluation script", flush=True)
        return
    _score_checkpoint(ctx, out, device)
