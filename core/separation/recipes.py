"""The separation recipes: train (CRNN / U-Net CRNN, fine-tune, freeze, remix), evaluate
(mask_scale, threshold, gain correction) and blend (weighted average of checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from core.data.cache import AudioCache
from core.data.tracks import TrackFiles, prepare
from core.errors import RunError
from core.registry.settings import RULE
from core.runs import refs
from core.runs.context import RunContext
from core.separation import blend as blending
from core.separation.evaluate import (
    INFERENCE_KEYS,
    Separation,
    bss_scores,
    fit_gains,
    loaded,
    score,
    separation_for,
    summarize,
)
from core.separation.models import build, focal_loss, load_weights, masks_of
from core.separation.segments import SegmentSet, StepBatches, ValSet, loader
from core.separation.spectral import MagNorm, Stft
from core.training import checkpoint
from core.training.loop import Trainer, run_device
from core.util.checksum import sha256_file

PREFIX, PART = "separator", "model"
KIND, BEST = blending.KIND, blending.BEST
ONSET_WEIGHT = 0.1  # weight of the rhythm head's focal loss beside the mask loss
VAL_SEGMENTS_PER_TRACK = 4


def _tracks(ctx: RunContext, key: str, stems: tuple[str, ...], rate: int) -> list[TrackFiles]:
    """The tracks of a data key, prepared in the workspace's audio cache (decoded once)."""
    name, table = ctx.data_source(key)
    return prepare(Path(table["root"]), name, stems, rate, AudioCache(ctx.cache_dir))


def held_out(tracks: list[TrackFiles]) -> tuple[list[TrackFiles], list[TrackFiles]]:
    """Without `val_data`: the last tracks by name (about one in seven, at least one) are kept
    out of training and validate it, the same ones on every run and resume."""
    if len(tracks) < 2:
        raise RunError(f"data: {len(tracks)} track: nothing to hold out for validation; set "
                       f"val_data (a source or a folder of tracks)")
    n = max(1, round(len(tracks) / 7))
    ordered = sorted(tracks, key=lambda t: t.name)
    print(f"no val_data: {n} of {len(tracks)} tracks of data held out for validation "
          f"({', '.join(t.name for t in ordered[-n:])})", flush=True)
    return ordered[:-n], ordered[-n:]


def _workers(ctx: RunContext, device: torch.device) -> int:
    """DataLoader worker processes (the key's rule): the experiment's `num_workers`; else none
    on the CPU, where the model needs the cores more than the loader does; beside a GPU the
    registry's [defaults] value, else 4. What the rule decided is recorded on the run."""
    p = ctx.params
    if ctx.explicit("num_workers"):
        return int(p["num_workers"])
    if device.type != "cuda":
        n = 0
        if p.get("num_workers"):
            print(f"num_workers 0 on the CPU (rule; the [defaults] value {p['num_workers']} "
                  f"applies beside a GPU)", flush=True)
    else:
        n = int(p["num_workers"]) if "num_workers" in p else min(4, max(1, (os.cpu_count() or 2)
                                                                        - 1))
    ctx.reporter.emit("settings", used={"num_workers": n}, origin={"num_workers": RULE})
    return n


def separator_path(ctx: RunContext, key: str) -> Path:
    return refs.checkpoint_path(ctx, key, PREFIX, PART, "best")


def model_meta(p: dict[str, Any]) -> dict[str, Any]:
    """The architecture a run's settings build (what a `pretrained` file must match)."""
    return _meta(p, tuple(p["stems"]), Stft.from_params(p))


def check_pretrained(path: Path, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """A separator checkpoint as fine-tuning or an evaluation reads it: an nkd separator whose
    weights fit the model its meta describes, and, for a fine-tune (`settings` given), the
    architecture this run builds. Returns the loaded checkpoint."""
    payload = checkpoint.load(path, kind=KIND)
    try:
        model = build(payload["meta"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{path}: its meta does not describe a separator ({exc})") from None
    load_weights(model, payload["state_dict"], str(path))
    if settings is not None:
        blending.check_compatible([(str(path), payload["meta"]),
                                   ("this experiment", model_meta(settings))])
    return payload


def _meta(p: dict[str, Any], stems: tuple[str, ...], stft: Stft) -> dict[str, Any]:
    """What builds the model again (its constructor arguments, the STFT); the inference
    settings and the normalisation join it once they are known."""
    return {
        "model": p["model"],
        "stems": list(stems),
        "hidden_size": int(p["hidden_size"]),
        "num_layers": int(p["num_layers"]),
        "dropout": float(p["dropout"]),
        "rhythm_head": bool(p["rhythm_head"]),
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


def train(ctx: RunContext) -> None:
    p = ctx.params
    device = run_device(ctx)
    stems = tuple(p["stems"])
    stft = Stft.from_params(p)
    train_tracks = _tracks(ctx, "data", stems, stft.sample_rate)
    if p.get("val_data"):
        val_tracks = _tracks(ctx, "val_data", stems, stft.sample_rate)
    else:
        train_tracks, val_tracks = held_out(train_tracks)
    seg = int(float(p["segment_seconds"]) * stft.sample_rate)
    seed = int(p["seed"])
    train_set = SegmentSet(train_tracks, seg, p, stems, seed)
    val_set = ValSet(val_tracks, seg, VAL_SEGMENTS_PER_TRACK)
    workers = _workers(ctx, device)
    meta = _meta(p, stems, stft)
    model = build(meta)
    parents: list[dict[str, Any]] = []
    source: dict[str, Any] = {"meta": {}}
    if "pretrained" in ctx.config.get("references", {}):
        path = separator_path(ctx, "pretrained")
        source = check_pretrained(path, p)  # as the launch checked it
        load_weights(model, source["state_dict"], str(path))
        norm = MagNorm.from_meta(source["meta"])  # the statistics the weights were trained with
        parents.append({"checkpoint": refs.checkpoint_id(path), "relation": "pretrained"})
        print(f"fine-tuning from {path}", flush=True)
    else:
        norm = train_set.norm(stft)  # a fixed-size sample, whatever the size of the data
    trainable = _freeze(model, list(p["freeze"]))
    frozen = [
        m
        for name, m in model.named_children()
        if any(name.startswith(f) for f in p["freeze"])
    ]
    if p.get("freeze"):
        print(
            f"frozen: {', '.join(p['freeze'])}; training {sum(q.numel() for q in trainable)} "
            f"parameters",
            flush=True,
        )
    batch_size = int(p["batch_size"])
    rhythm, gamma = (
        bool(meta["rhythm_head"]) and meta["model"] == "unet_crnn",
        float(p["focal_gamma"]),
    )
    drums = stems.index("drums") if "drums" in stems else None
    squared = p["loss"] == "mse"

    def step(batch: dict[str, torch.Tensor], is_train: bool):
        for module in frozen:  # frozen layers keep their normalisation statistics too
            module.eval()
        mix = batch["mix"].to(device, non_blocking=True)
        target = batch["stems"].to(device, non_blocking=True)
        spec = stft.spec(mix)
        mag = spec.abs()
        masks, onsets = masks_of(model, norm(mag)[:, None])
        target_mag = stft.spec(target).abs()
        error = masks.float() * mag[:, None] - target_mag
        loss = error.square().mean() if squared else error.abs().mean()
        if rhythm and onsets is not None and drums is not None:
            loss = loss + ONSET_WEIGHT * focal_loss(
                onsets.float(), onset_targets(target_mag[:, drums]), gamma
            )
        return loss, mix.shape[0], {}

    def train_batches(g: torch.Generator, epoch: int = 0, start: int = 0):
        del g  # every example draws from its own (seed, epoch, index) generator
        sampler = StepBatches(epoch, len(train_set), batch_size, start)
        return loader(train_set, workers, device, batch_sampler=sampler)

    def val_batches():
        return loader(val_set, workers, device, batch_size=batch_size)

    full_meta = {
        **meta,
        **norm.to_meta(),
        "recipe": "separation.train",
        "experiment": ctx.config.get("experiment"),
        "seed": int(p["seed"]),
    }
    # selected, validated and scored with the inference settings it will be evaluated with: a
    # fine-tune keeps its parent's unless the experiment sets others
    sep = separation_for(ctx, model, {**full_meta, "inference": source["meta"].get("inference")},
                         device)
    full_meta["inference"] = {k: getattr(sep, k) for k in INFERENCE_KEYS}
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
        # the validation SDR each epoch, where the best epoch or the run's halving sweep goes
        # by it (a sweep may rank trials by SDR while each keeps its best by loss)
        select=("sdr", _val_sdr(sep, val_tracks)) if "val_sdr" in (
            p["select_by"], (ctx.config.get("halving") or {}).get("metric")) else None,
    )
    trainer.fit()
    trainer.load_best()
    _score(ctx, sep, val_tracks)


def _val_sdr(sep: Separation, tracks: list[TrackFiles]):
    """The mean validation SDR of the model as it is (BSS Eval, as the run's scores are),
    separated as this run will be scored: its mask settings and Wiener passes."""
    meta, device = sep.meta, sep.device
    rate = int(meta["stft"]["sample_rate"])
    bss_device = device if device.type == "cuda" else None

    def score() -> float:
        per_track = bss_scores(sep, loaded(tracks), list(meta["stems"]), rate, bss_device)
        return summarize(per_track)["mean"]

    return score


def onset_targets(drum_mag: torch.Tensor) -> torch.Tensor:
    """Per-frame onsets of the drum stem [B, 512, T] -> [B, T] in {0, 1}: spectral flux peaks."""
    flux = torch.relu(torch.diff(torch.log1p(drum_mag), dim=-1)).sum(dim=-2)
    flux = torch.nn.functional.pad(flux, (1, 0))
    limit = flux.mean(dim=-1, keepdim=True) + 1.5 * flux.std(dim=-1, keepdim=True)
    return (flux > limit).float()


def _score_checkpoint(ctx: RunContext, path: Path, device: torch.device) -> None:
    """Score a checkpoint with the inference settings it was trained with (unless this
    experiment sets others) and this run's gain correction."""
    payload = checkpoint.load(path, kind=KIND)
    model = build(payload["meta"])
    load_weights(model, payload["state_dict"], str(path))
    _score(ctx, separation_for(ctx, model, payload["meta"], device))


def _score(ctx: RunContext, sep: Separation, val_tracks: list[TrackFiles] | None = None) -> None:
    """Validation scores, and test scores when `test_data` is set. A gain correction is fitted
    on the validation tracks only and applied unchanged to both; every SDR records that."""
    p = ctx.params
    meta = sep.meta
    stems, rate = tuple(meta["stems"]), int(meta["stft"]["sample_rate"])
    if val_tracks is None and not p.get("val_data") and not p.get("test_data"):
        raise RunError("nothing to score: set val_data or test_data")
    if p.get("gain_correction") and val_tracks is None and not p.get("val_data"):
        raise RunError("key 'gain_correction': gains are fitted on validation data only; "
                       "set val_data (the test data is never used to fit them)")
    if val_tracks is None and p.get("val_data"):
        val_tracks = _tracks(ctx, "val_data", stems, rate)
    gains, gains_from = None, "none"
    if p.get("gain_correction"):
        val_name = ctx.data_source("val_data")[0] if p.get("val_data") else "data (held out)"
        gains, gains_from = fit_gains(ctx, sep, val_tracks, val_name), f"val:{val_name}"
    if val_tracks is not None:
        score(ctx, sep, val_tracks, "val", gains, gains_from)
    if p.get("test_data"):
        score(ctx, sep, _tracks(ctx, "test_data", stems, rate), "test", gains, gains_from)


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
    plain = blending.check_sources(paths, payloads)
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
