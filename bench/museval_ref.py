"""museval's BSS Eval v4, the yardstick of nkd's, loaded from its `metrics` module alone: the
package's own import pulls in musdb and stempeg, which refuse to load without ffmpeg, while the
metrics need only numpy and scipy. None where museval is not installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np


def museval_metrics() -> ModuleType | None:
    spec = importlib.util.find_spec("museval")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "metrics.py"
    loaded = importlib.util.spec_from_file_location("museval_metrics_alone", path)
    if loaded is None or loaded.loader is None:
        return None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def v4(metrics: ModuleType, refs: np.ndarray, ests: np.ndarray, rate: int) -> tuple[Any, ...]:
    """SDR, ISR, SIR, SAR [sources, frames] as museval.evaluate computes them (v4, images,
    1 s windows and hops, filters over the whole track)."""
    sdr, isr, sir, sar, _ = metrics.bss_eval(
        refs, ests, window=rate, hop=rate, compute_permutation=False, filters_len=512,
        framewise_filters=False, bsseval_sources_version=False)
    return sdr, isr, sir, sar
