"""sha256 of files, streamed, for checkpoints and soft labels."""

from __future__ import annotations

from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    import hashlib  # OpenSSL's library loads in a few ms: a worker that hashes nothing skips it

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
