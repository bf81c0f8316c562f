"""Weighted averages of separator checkpoints, refused when they cannot be averaged."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from core.errors import RunError
from core.runs import refs
from core.runs.context import RunContext
from core.store import Store
from core.training import checkpoint

KIND = "separator_model"
BEST = f"best_{KIND}.pth"
ARCH_KEYS = ("model", "stems", "hidden_size", "num_layers", "rhythm_head", "stft")


def check_compatible(items: list[tuple[str, dict[str, Any]]]) -> None:
    """Same architecture everywhere: model, stems, sizes and STFT, named where they differ."""
    first_name, first = items[0]
    for name, meta in items[1:]:
        for key in ARCH_KEYS:
            if meta.get(key) != first.get(key):
                raise RunError(
                    f"different architectures: {key} is {first.get(key)!r} in {first_name} "
                    f"but {meta.get(key)!r} in {name}"
                )


def check_sources(paths: list[Path], payloads: list[Any]) -> bool:
    """Refuse sources that cannot be averaged, naming the file and what differs; True when
    they are plain state dicts (the researcher's own), False for nkd separators. The run and a
    launch (before anything is recorded) check them with this one function."""
    if all(checkpoint.is_nkd(pl) for pl in payloads):
        loaded = [checkpoint.load(p, kind=KIND, payload=pl)
                  for p, pl in zip(paths, payloads, strict=True)]
        check_compatible([(str(p), pl["meta"]) for p, pl in zip(paths, loaded, strict=True)])
        alike([(str(p), pl["state_dict"]) for p, pl in zip(paths, loaded, strict=True)])
        return False
    _plain_states(paths, payloads)
    return True


def _plain_states(
    paths: list[Path], payloads: list[Any]
) -> tuple[list[tuple[str, dict[str, Any]]], tuple[Any, str | None]]:
    """Plain checkpoints' state dicts (checked alike) and the first one's layout."""
    loaded = [checkpoint.load_plain(p, pl) for p, pl in zip(paths, payloads, strict=True)]
    layouts = {key for _payload, key in loaded}
    if len(layouts) > 1:
        raise RunError("the sources keep their weights under different keys: "
                       + ", ".join(f"{p.name}: {k or 'bare'}" for p, (_pl, k)
                                   in zip(paths, loaded, strict=True)))
    states = [(str(p), pl[key] if key else pl) for p, (pl, key) in zip(paths, loaded, strict=True)]
    alike(states)
    return states, loaded[0]


def alike(states: list[tuple[str, dict[str, torch.Tensor]]]) -> None:
    """The same keys and shapes in every state dict, or the first difference named."""
    first_name, first = states[0]
    for name, state in states[1:]:
        missing, extra = sorted(set(first) - set(state)), sorted(set(state) - set(first))
        if missing or extra:
            key = (missing or extra)[0]
            raise RunError(
                f"key '{key}' is in {first_name if missing else name} but not in "
                f"{name if missing else first_name}"
            )
        for key, tensor in first.items():
            if state[key].shape != tensor.shape:
                raise RunError(
                    f"key '{key}': shape {tuple(tensor.shape)} in {first_name} but "
                    f"{tuple(state[key].shape)} in {name}"
                )


def average(
    states: list[tuple[str, dict[str, torch.Tensor]]], weights: list[float]
) -> dict[str, torch.Tensor]:
    """Σ wᵢ·θᵢ over identical key sets and shapes; integer buffers come from the first source."""
    total = sum(weights)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise RunError(f"blend weights {weights} sum to {total:g}, not 1")
    if any(w <= 0 for w in weights):
        raise RunError(f"blend weights {weights} must all be positive")
    alike(states)
    first = states[0][1]
    out = {}
    for key, tensor in first.items():
        if not tensor.is_floating_point():
            out[key] = tensor.clone()  # e.g. BatchNorm's num_batches_tracked
            continue
        out[key] = sum(w * s[key].double() for w, (_n, s) in zip(weights, states, strict=True)).to(
            tensor.dtype
        )
    return out


def write_plain_blend(
    paths: list[Path], weights: list[float], out: Path, payloads: list[Any] | None = None
) -> None:
    """Plain PyTorch checkpoints (a bare state dict, or one under state_dict /
    model_state_dict / model): averaged, and written back in the first one's layout.
    `payloads`, when given, are the files as `checkpoint.read` loaded them already."""
    states, (first, key) = _plain_states(paths, payloads or [None] * len(paths))
    state = average(states, weights)
    payload = {**first, key: state} if key else state
    checkpoint.save_payload(out, payload)
    print("blended " + " + ".join(f"{w:g} x {p}" for p, w in zip(paths, weights, strict=True))
          + f" -> {out} (plain state dict{f' under {key!r}' if key else ''})", flush=True)


def source_path(ctx: RunContext, source: dict[str, Any]) -> Path:
    """A blend source of the run's config (experiment, run or file) -> its best separator
    checkpoint."""
    return refs.checkpoint_path_of(ctx, source, f"source '{source['ref']}'", "separator", "model")


def ancestors(store: Store, checkpoint_id: str) -> set[str]:
    seen, todo = set(), [checkpoint_id]
    while todo:
        node = todo.pop()
        for row in store.conn.execute("SELECT parent FROM lineage WHERE child = ?", (node,)):
            if row[0] not in seen:
                seen.add(row[0])
                todo.append(row[0])
    return seen


def _run_of(checkpoint_id: str) -> str:
    return checkpoint_id.split("/", 1)[0]


def write_blend(
    paths: list[Path], weights: list[float], out: Path, ctx: RunContext,
    read: list[Any] | None = None,
) -> dict[str, Any]:
    payloads = [checkpoint.load(p, kind=KIND, payload=pl)
                for p, pl in zip(paths, read or [None] * len(paths), strict=True)]
    check_compatible([(str(p), pl["meta"]) for p, pl in zip(paths, payloads, strict=True)])
    state = average(
        [(str(p), pl["state_dict"]) for p, pl in zip(paths, payloads, strict=True)], weights
    )
    store = Store(ctx.db_path)
    try:
        ids = [refs.checkpoint_id(p) for p in paths]
        lines = [ancestors(store, i) | {i} for i in ids]
    finally:
        store.close()
    runs = [{_run_of(c) for c in line} for line in lines]
    if not set.intersection(*runs):
        print(
            "warning: the blend sources share no ancestor; averages of unrelated trainings "
            "rarely work",
            flush=True,
        )
    meta = {
        **payloads[0]["meta"],
        "recipe": "separation.blend",
        "experiment": ctx.config.get("experiment"),
        "blend": [{"checkpoint": str(p), "weight": w} for p, w in zip(paths, weights, strict=True)],
    }
    checkpoint.save(out, KIND, state, meta)
    print(
        "blended "
        + " + ".join(f"{w:g} x {p}" for p, w in zip(paths, weights, strict=True))
        + f" -> {out}",
        flush=True,
    )
    return meta
