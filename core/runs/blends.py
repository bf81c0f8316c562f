"""An ad-hoc blend experiment (what `nkd blend` and the TUI's blend dialog launch): no torch."""

from __future__ import annotations

import re
from pathlib import Path

from core.errors import NkdError
from core.registry import Experiment, Reference, Registry
from core.store import Store
from core.util.names import NAME_MAX, check_name


def parse_weights(text: str, count: int) -> list[float]:
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise NkdError(f"blend: weights '{text}' are not a list of numbers") from None
    if len(weights) != count:
        raise NkdError(f"blend: {count} sources but {len(weights)} weights")
    if abs(sum(weights) - 1) > 1e-6 or any(w <= 0 for w in weights):
        raise NkdError(
            f"blend: weights {text} must be positive and sum to 1 (they sum to {sum(weights):g})"
        )
    return weights


def blend_experiment(
    registry: Registry,
    store: Store,
    sources: list[str],
    weights: list[float],
    name: str | None = None,
    val_data: str | None = None,
    mask_scale: float = 1.0,
    threshold: float = 0.0,
) -> Experiment:
    """Sources are experiments, run ids (or run:<id>) or checkpoint files."""
    if name is not None:
        check_name(name, "blend: --name", NkdError)
    if len(sources) < 2:
        raise NkdError("blend: give at least two sources (experiments, run ids or files)")
    refs, short = [], []
    for src, w in zip(sources, weights, strict=True):
        run = store.get_run(src.removeprefix("run:"))
        if src.startswith("run:") or run is not None:
            refs.append(Reference("run", src.removeprefix("run:"), w))
            experiment = registry.experiments.get(run["experiment"]) if run else None
            short.append(run["experiment"] if run else src.removeprefix("run:"))
        elif src in registry.experiments:
            refs.append(Reference("experiment", src, w))
            experiment = registry.experiments[src]
            short.append(src)
        elif (registry.path.parent / src).is_file() or Path(src).is_file():
            refs.append(Reference("file", src, w))
            experiment = None
            short.append(Path(src).stem)
        else:
            raise NkdError(f"blend: '{src}' is not an experiment, a run or a file")
        if experiment is not None:
            val_data = val_data or experiment.params.get("val_data")
    if not val_data:  # the separation source the registry validates on, if there is one
        used = {e.params.get("val_data") for e in registry.experiments.values()}
        kinds = [n for n, d in registry.data.items() if d.settings.get("kind") == "separation"]
        val_data = next((n for n in kinds if n in used), kinds[0] if kinds else None)
    if not val_data:
        raise NkdError("blend: no validation data known for these sources; use --val-data")
    if val_data not in registry.data:
        raise NkdError(f"blend: no data source '{val_data}' in {registry.path}")
    if name is None:  # from the sources' names, made safe as one folder name
        name = re.sub(r"[^A-Za-z0-9_-]", "_", "blend_" + "_".join(
            f"{n}_{r.weight:g}" for n, r in zip(short, refs, strict=True)
        ))[:NAME_MAX]
    params = {
        "group": "separation",
        "recipe": "separation.blend",
        "val_data": val_data,
        "mask_scale": mask_scale,
        "threshold": threshold,
        "sources": {str(r): r.weight for r in refs},
    }
    return Experiment(name, params, (name,), {}, tuple(refs))
