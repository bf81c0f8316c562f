"""Separating whole tracks and scoring them: masks, gain correction, BSS Eval per stem and track.

Tracks are loaded one at a time (the next one in the background), so a test set of any size is
scored in the memory of two tracks; BSS Eval runs on the GPU when the run has one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.data.tracks import Track, TrackFiles
from core.errors import RunError
from core.registry.settings import CHECKPOINT, DEFAULT
from core.runs.context import RunContext
from core.separation import bsseval
from core.separation.keep import GLOBAL_DEFINITION, Keeper
from core.separation.models import masks_of
from core.separation.spectral import MagNorm, Stft
from core.separation.wiener import wiener
from core.util.files import atomic_write_text, csv_text

METRICS = ("sdr", "isr", "sir", "sar", "si_sdr")


@torch.no_grad()
def separate(
    model: torch.nn.Module,
    meta: dict,
    mixture: np.ndarray,
    device: torch.device,
    mask_scale: float,
    threshold: float,
    wiener_iterations: int,
) -> np.ndarray:
    """mixture [channels, n] -> estimates [stems, channels, n], each channel masked alone, then
    (with `wiener_iterations`) the channels filtered together (core.separation.wiener)."""
    stft = Stft(**meta["stft"])
    norm = MagNorm.from_meta(meta)
    model.to(device).eval()
    wave = torch.as_tensor(mixture, dtype=torch.float32, device=device)
    spec = stft.spec(wave)  # [C, 512, T]
    masks, _ = masks_of(model, norm(spec.abs())[:, None])  # [C, S, 512, T]
    masks = masks.float() * mask_scale
    if threshold > 0:
        masks = torch.where(masks < threshold, torch.zeros_like(masks), masks)
    if wiener_iterations > 0:
        mags = (masks * spec.abs()[:, None]).transpose(0, 1)  # [S, C, 512, T]
        est = stft.wave(wiener(spec, mags, wiener_iterations), wave.shape[-1])
        return est.cpu().numpy()  # [S, C, n]
    est = stft.wave(masks * spec[:, None], wave.shape[-1])  # mixture phase
    return est.permute(1, 0, 2).cpu().numpy()  # [S, C, n]


def loaded(tracks: Sequence[TrackFiles]) -> Iterator[Track]:
    """The tracks in memory one at a time, the next one read in the background while the
    current one is scored: at most two whole tracks are held, whatever the size of the set."""
    if not tracks:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(tracks[0].load)
        for i in range(len(tracks)):
            track = ahead.result()
            if i + 1 < len(tracks):
                ahead = pool.submit(tracks[i + 1].load)
            yield track
            del track


@dataclass(frozen=True)
class Separation:
    """How estimates are made from a mixture: the model and this run's mask settings."""

    model: torch.nn.Module
    meta: dict
    device: torch.device
    mask_scale: float
    threshold: float
    wiener_iterations: int

    def __call__(self, track: Track) -> np.ndarray:
        return separate(self.model, self.meta, track.mixture, self.device, self.mask_scale,
                        self.threshold, self.wiener_iterations)


# what a separator's output depends on beyond its weights, saved in its checkpoint's meta
# ("inference") beside the STFT, the stems and the normalisation
INFERENCE_KEYS = ("mask_scale", "threshold", "wiener_iterations")


def inference_settings(ctx: RunContext, meta: dict) -> dict[str, tuple[Any, str]]:
    """key -> (value, where it came from) for each inference setting: the experiment's own
    (or `--set`) first, then the checkpoint's, then the registry's [defaults] or the schema's."""
    saved = meta.get("inference") or {}
    chosen: dict[str, tuple[Any, str]] = {}
    for key in INFERENCE_KEYS:
        if key in saved and not ctx.explicit(key):
            chosen[key] = (saved[key], CHECKPOINT)
        else:
            chosen[key] = (ctx.params[key], ctx.origin.get(key, DEFAULT))
    return chosen


def separation_for(ctx: RunContext, model: torch.nn.Module, meta: dict,
                   device: torch.device) -> Separation:
    """The run's Separation of a model with its inference settings, said in the log and
    recorded on the run with where each came from."""
    chosen = inference_settings(ctx, meta)
    print("inference: " + ", ".join(f"{k} {v} ({o})" for k, (v, o) in chosen.items()),
          flush=True)
    ctx.reporter.emit("settings", used={k: v for k, (v, _) in chosen.items()},
                      origin={k: o for k, (_, o) in chosen.items()})
    values = {k: v for k, (v, _) in chosen.items()}
    return Separation(model, meta, device, float(values["mask_scale"]),
                      float(values["threshold"]), int(values["wiener_iterations"]))


def fit_gains(ctx: RunContext, sep: Separation, tracks: Sequence[TrackFiles],
              source: str) -> np.ndarray:
    """Least-squares output gain per stem, argmin_g Σ ||g·ŝ − s||², fitted on validation
    tracks only, recorded on the run (metric `gain`, split=val) and then applied unchanged to
    every split this run scores."""
    stems = list(sep.meta["stems"])
    if not tracks:
        raise RunError(f"gain_correction: no validation tracks in '{source}' to fit gains on")
    num, den = np.zeros(len(stems)), np.zeros(len(stems))
    for track in loaded(tracks):
        est = sep(track)
        num += (est * track.stems).sum(axis=(1, 2))
        den += (est * est).sum(axis=(1, 2))
    g = np.where(den > 0, num / np.maximum(den, 1e-12), 1.0)
    for stem, value in zip(stems, g, strict=True):
        ctx.reporter.metric("gain", float(value), stem=stem, split="val", gains=f"val:{source}")
    print(f"gain correction fitted on {source} (val): "
          + ", ".join(f"{s} x{v:.3f}" for s, v in zip(stems, g, strict=True)), flush=True)
    return g


def bss_scores(
    separate_track: Callable[[Track], np.ndarray],
    tracks: Iterable[Track],
    stems: list[str],
    rate: int,
    device: torch.device | None = None,
    keeper: Keeper | None = None,
) -> dict[str, list[dict[str, float]]]:
    """BSS Eval of every track's estimates (1 s frames, the median over frames): per stem, one
    row per track with each measure; with a `keeper`, its per-second SDR, global SDR and
    excerpt are kept too (row key `sdr_global`)."""
    per_track: dict[str, list[dict[str, float]]] = {s: [] for s in stems}
    for track in tracks:
        est = separate_track(track)
        refs = track.stems.transpose(0, 2, 1)  # [S, n, C]
        scores = bsseval.bss_eval(refs, est.transpose(0, 2, 1), window=rate, hop=rate,
                                  device=device)
        result = scores.medians()
        if scores.caveat:  # said once per track; its rows carry it into the store
            print(f"{track.name}: {scores.caveat}", flush=True)
        glob = keeper.add(track, est, scores.sdr.double().cpu().numpy(),
                          {stem: float(result["sdr"][i]) for i, stem in enumerate(stems)}) \
            if keeper is not None else {}
        for i, stem in enumerate(stems):
            per_track[stem].append({"track": track.name,
                                    **{k: float(result[k][i]) for k in METRICS},
                                    **({"sdr_global": glob[stem]} if glob else {}),
                                    **({"caveat": scores.caveat} if scores.caveat else {})})
    return per_track


def summarize(per_track: dict[str, list[dict[str, float]]], measure: str = "sdr"
              ) -> dict[str, float]:
    """The median over tracks per stem, and their mean (the MUSDB18 / SiSEC 2018 figure)."""
    summary: dict[str, float] = {}
    for stem, rows in per_track.items():
        values = [r[measure] for r in rows if np.isfinite(r[measure])]
        if values:
            summary[stem] = float(np.median(values))
    if summary:
        summary["mean"] = float(np.mean(list(summary.values())))
    return summary


def score(
    ctx: RunContext,
    sep: Separation,
    tracks: Sequence[TrackFiles],
    split: str = "val",
    gains: np.ndarray | None = None,
    gains_from: str = "none",
) -> dict[str, float]:
    """Separate and score every track of one split, one track in memory at a time, with
    `gains` (fitted elsewhere: on validation data) applied unchanged; record metrics with their
    split and where their gains came from, and eval_result_<stem>[_<split>].csv; returns the
    median SDR per stem and its mean."""
    stems = list(sep.meta["stems"])
    rate = int(sep.meta["stft"]["sample_rate"])
    if not tracks:
        raise RunError(f"no {split} tracks to evaluate on")
    g = np.ones(len(stems)) if gains is None else gains
    bss_device = sep.device if sep.device.type == "cuda" else None
    where = {"split": split, "gains": gains_from}
    keeper = Keeper(ctx.run_dir, split, stems, rate, int(ctx.params["results_tracks"]),
                    {"sdr": bsseval.DEFINITION}, tracks=len(tracks))
    per_track = bss_scores(lambda track: sep(track) * g[:, None, None], loaded(tracks), stems,
                           rate, bss_device, keeper)
    keeper.finish()
    suffix = "" if split == "val" else f"_{split}"
    for stem in stems:
        rows = per_track[stem]
        for row in rows:
            for k in (*METRICS, "sdr_global"):
                if np.isfinite(row.get(k, np.nan)):
                    ctx.reporter.metric(k, row[k], stem=stem, track=row["track"], **where,
                                        definition=_definition(k), **_caveat(k, [row]))
        for k in METRICS:
            values = [r[k] for r in rows if np.isfinite(r[k])]
            if values:
                ctx.reporter.metric(k, float(np.median(values)), stem=stem, **where,
                                    definition=_definition(k), **_caveat(k, rows))
        _write_csv(ctx.run_dir / f"eval_result_{stem}{suffix}.csv", rows)
    summary = summarize(per_track)
    if summary:
        ctx.reporter.metric("sdr", summary["mean"], stem="mean", **where,
                            definition=bsseval.DEFINITION)
    challenge = global_summary(per_track)  # the challenges' figure: a mean over tracks
    for stem, value in challenge.items():
        ctx.reporter.metric("sdr_global", value, stem=stem, **where,
                            definition=f"{GLOBAL_DEFINITION}_mean_over_tracks")
    print(
        f"{split} SDR (median over frames, then tracks; gains {gains_from}): "
        + ", ".join(f"{k} {v:.3f} dB" for k, v in summary.items())
        + (f"; global SDR (challenge, mean over tracks) {challenge['mean']:.3f} dB"
           if challenge else ""),
        flush=True,
    )
    return summary


def global_summary(per_track: dict[str, list[dict[str, float]]]) -> dict[str, float]:
    """Global SDR as the MDX / SDX challenges report it: per stem the mean over tracks, and
    the mean over stems."""
    out = {}
    for stem, rows in per_track.items():
        values = [r["sdr_global"] for r in rows if np.isfinite(r.get("sdr_global", np.nan))]
        if values:
            out[stem] = float(np.mean(values))
    if out:
        out["mean"] = float(np.mean(list(out.values())))
    return out


def _caveat(metric: str, rows: list[dict[str, Any]]) -> dict[str, str]:
    """The caveat of an ISR, SIR or SAR whose filters were regularised on some of the rows'
    tracks (SDR and SI-SDR need no filter)."""
    hit = [r for r in rows if r.get("caveat")]
    if not hit or metric not in ("isr", "sir", "sar"):
        return {}
    text = hit[0]["caveat"]
    return {"caveat": (text if len(rows) == 1 else f"{len(hit)} of {len(rows)} tracks: {text}")
            [:200]}


def _definition(metric: str) -> str:
    if metric == "sdr_global":
        return GLOBAL_DEFINITION
    return bsseval.SI_SDR_DEFINITION if metric == "si_sdr" else bsseval.DEFINITION


def _write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    table = [["track", *METRICS]] + [[r["track"], *[f"{r[k]:.4f}" for k in METRICS]] for r in rows]
    atomic_write_text(path, csv_text(table))
