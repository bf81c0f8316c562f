"""sha256 of bytes and of files, streamed, for checkpoints, soft labels and the records of what
made a run. hashlib is imported on first use: loading OpenSSL's library costs a few ms, and a
launch or a worker that hashes nothing skips it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def sha256(data: bytes = b"") -> Any:
    """hashlib's sha256 object, fed `data` (update it with more)."""
    import hashlib

    return hashlib.sha256(data)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
