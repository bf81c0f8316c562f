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
from core.util.files import atomic_write

FORMAT = "nkd.checkpoint/1"


def save(path: Path, kind: str, state_dict: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write a checkpoint so that a reader sees the old file or the new one, never half of one."""
    payload = {"format": FORMAT, "kind": kind, "state_dict": state_dict, "meta": meta}
    return save_payload(path, payload)


def save_payload(path: Path, payload: dict[str, Any]) -> Path:
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def read(path: str | Path) -> Any:
    """What a checkpoint file holds, loaded once on the CPU with `weights_only=True`."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, a pickle with objects, not a torch file at all
        raise RunError(f"{path}: {_why_unreadable(path, exc)}") from None


def load(path: str | Path, kind: str | None = None, payload: Any = None) -> dict[str, Any]:
    """Load an nkd checkpoint on the CPU, refusing anything that is not one (or not of `kind`).
    `payload`, when given, is what `read(path)` returned already."""
    path = Path(path)
    if payload is None:
        payload = read(path)
    if not is_nkd(payload):
        if _is_state_dict(payload):
            raise RunError(
                f"{path}: a bare state_dict, not an nkd checkpoint (it does not say which "
                f"model or settings it belongs to)"
            )
        raise RunError(f"{path}: not an nkd checkpoint (no '{FORMAT}' format marker)")
    if kind is not None and payload.get("kind") != kind:
        raise RunError(f"{path}: a '{payload.get('kind')}' checkpoint where '{kind}' was expected")
    return payload


def is_nkd(payload: Any) -> bool:
    """Does a loaded checkpoint carry nkd's format marker?"""
    return isinstance(payload, dict) and payload.get("format") == FORMAT


PLAIN_KEYS = ("state_dict", "model_state_dict", "model")


def load_plain(path: Path, payload: Any = None) -> tuple[dict[str, Any], str | None]:
    """Someone else's checkpoint: the whole payload, and under which key its state dict is
    (None for a bare state dict). Refused, naming the file, when it holds no state dict."""
    if payload is None:
        payload = read(path)
    if _is_state_dict(payload):
        return payload, None
    if isinstance(payload, dict):
        for key in PLAIN_KEYS:
            if _is_state_dict(payload.get(key)):
                return payload, key
    raise RunError(f"{path}: holds no state dict (a table of tensors, bare or under "
                   f"{', '.join(PLAIN_KEYS)})")


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _why_unreadable(path: Path, exc: Exception) -> str:
    """What the file is not, in nkd's words (torch's own advice, to load it with
    weights_only=False, would execute whatever the file holds: never)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        return "an empty file, not a checkpoint"
    if head[:2] != b"PK" and head[:1] != b"\x80":
        return "not a PyTorch checkpoint file (neither a zip archive nor a pickle)"
    text = str(exc)
    if "weights_only" in text or "Unsupported global" in text or "Unpickl" in type(exc).__name__:
        return ("holds pickled Python objects, which nkd never loads; only checkpoints of "
                "tensors and plain values are read")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"not a readable checkpoint (damaged or truncated: {first[:120]})"
