"""Self-describing checkpoints: written atomically, read back with `weights_only=True` only.

A checkpoint is a dict of tensors and plain values (never a pickled object of ours):
`{"format", "kind", "state_dict", "meta"}`. `meta` says what the weights are (architecture and its
sizes, class order, normalisation statistics, where they came from) so that a checkpoint can be
loaded, checked and evaluated without the run that wrote it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.errors import RunError
from core.workspace import atomic_write

FORMAT = "nkd.checkpoint/1"


def save(path: Path, kind: str, state_dict: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write a checkpoint so that a reader sees the old file or the new one, never half of one."""
    payload = {"format": FORMAT, "kind": kind, "state_dict": state_dict, "meta": meta}
    return save_payload(path, payload)


def save_payload(path: Path, payload: dict[str, Any]) -> Path:
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def load(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Load an nkd checkpoint on the CPU, refusing anything that is not one (or not of `kind`)."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, a pickle with objects, not a torch file at all
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{path}: not a readable checkpoint ({first[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RunError(f"{path}: not an nkd checkpoint (no '{FORMAT}' format marker)")
    if kind is not None and payload.get("kind") != kind:
        raise RunError(f"{path}: a '{payload.get('kind')}' checkpoint where '{kind}' was expected")
    return payload
