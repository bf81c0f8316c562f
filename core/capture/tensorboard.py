"""TensorBoard scalars a script writes with `SummaryWriter`, followed live.

A small reader of the event files' own format (TFRecord frames around `Event` protocol buffers)
rather than the `tensorboard` package: that package takes about 1 s to import and pulls in
protobuf, grpc and a web server, for what is here some 100 lines with no dependency; the test
suite checks this reader against tensorboard's own on files SummaryWriter wrote.

Scalars are recorded per step, as the epoch index (scripts that log per epoch use the epoch as
the step); values of one step logged in separate calls are merged into one record.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FILE = re.compile(r"events\.out\.tfevents\.")
MAX_RECORD = 64 << 20  # a larger frame is not a scalar event: the rest of the file is skipped
KEEP_STEPS = 64  # steps whose values are kept for merging


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one protocol-buffer message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated field")
        yield field, wire, value


def _tensor_value(buf: bytes) -> float | None:
    """A scalar TensorProto (float or double)."""
    dtype = None
    for field, wire, value in _fields(buf):
        if field == 1 and wire == 0:
            dtype = value
        elif field == 5:  # float_val
            return struct.unpack("<f", value[:4])[0] if len(value) >= 4 else None
        elif field == 6:  # double_val
            return struct.unpack("<d", value[:8])[0] if len(value) >= 8 else None
        elif field == 4 and wire == 2:  # tensor_content, raw little-endian
            if dtype == 2 and len(value) >= 8:
                return struct.unpack("<d", value[:8])[0]
            if len(value) >= 4:
                return struct.unpack("<f", value[:4])[0]
    return None


def scalars(event: bytes) -> tuple[int, list[tuple[str, float]]]:
    """(step, [(tag, value)]) of one Event."""
    step, found = 0, []
    for field, wire, value in _fields(event):
        if field == 2 and wire == 0:
            step = value
        elif field == 5 and wire == 2:  # summary
            for f, w, item in _fields(value):
                if f != 1 or w != 2:
                    continue
                tag, number = None, None
                for vf, vw, v in _fields(item):
                    if vf == 1 and vw == 2:
                        tag = v.decode("utf-8", errors="replace")
                    elif vf == 2 and vw == 5:
                        number = struct.unpack("<f", v)[0]
                    elif vf == 8 and vw == 2:
                        number = _tensor_value(v)
                if tag is not None and number is not None:
                    found.append((tag, float(number)))
    return step, found


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of TFRecord frames."""
    crc = 0xFFFFFFFF
    table = _CRC32C
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of `data`."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path: Path, offset: int) -> tuple[list[bytes], int, list[str]]:
    """The complete TFRecord frames after `offset` whose checksums hold, the offset after them,
    and what was skipped: a frame whose data fails its CRC is skipped alone; a length that fails
    its CRC cannot be trusted, so the rest of the file is."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return [], offset, []
    out, skipped, pos = [], [], 0
    while pos + 12 <= len(data):
        head = data[pos:pos + 8]
        (size,) = struct.unpack("<Q", head)
        (head_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if head_crc != masked_crc(head) or size > MAX_RECORD:
            skipped.append(f"byte {offset + pos}: the record's length fails its checksum; "
                           f"the rest of the file is not read")
            return out, offset + len(data), skipped
        end = pos + 12 + size + 4
        if end > len(data):
            break  # still being written
        body = data[pos + 12:pos + 12 + size]
        (body_crc,) = struct.unpack("<I", data[end - 4:end])
        if body_crc == masked_crc(body):
            out.append(body)
        else:
            skipped.append(f"byte {offset + pos}: a record fails its checksum; skipped")
        pos = end
    return out, offset + pos, skipped


def key_of(tag: str) -> str:
    """`loss/train` -> train_loss, `Loss/val` -> val_loss, `acc/val` -> val_acc."""
    parts = [p for p in re.split(r"[/\s.-]+", tag.strip().lower()) if p]
    splits = [p for p in parts if p in ("train", "training", "val", "valid", "validation",
                                         "test", "eval")]
    rest = [p for p in parts if p not in splits]
    prefix = {"training": "train", "valid": "val", "validation": "val", "eval": "val"}
    head = prefix.get(splits[0], splits[0]) if splits else ""
    name = "_".join(rest) or "value"
    if name in ("lr", "learning_rate"):
        return "lr"
    return f"{head}_{name}" if head else ("train_loss" if name == "loss" else name)


class TensorboardWatch:
    """Event files under `dirs` written since the run started, read where they left off."""

    def __init__(self, dirs: list[Path], since: float) -> None:
        self.dirs = dirs
        self.since = since
        self.offsets: dict[str, int] = {}
        self.steps: dict[int, dict[str, float]] = {}

    def _files(self) -> Iterator[Path]:
        for top in self.dirs:
            for dirpath, dirnames, filenames in os.walk(top):
                # a folder nothing was added to since the run started holds no new file
                dirnames[:] = [d for d in dirnames
                               if _mtime(Path(dirpath) / d) >= self.since - 1]
                for name in filenames:
                    if FILE.match(name):
                        path = Path(dirpath) / name
                        if _mtime(path) >= self.since - 1:
                            yield path

    def poll(self) -> list[dict[str, Any]]:
        """Epoch records for the steps that got new values."""
        changed: set[int] = set()
        for path in self._files():
            frames, self.offsets[str(path)], skipped = records(
                path, self.offsets.get(str(path), 0))
            for why in skipped:  # said once in the run's log, never read as a value
                print(f"nkd: TensorBoard file {path.name}: {why}", flush=True)
            for frame in frames:
                try:
                    step, found = scalars(frame)
                except ValueError:
                    continue
                for tag, value in found:
                    self.steps.setdefault(step, {})[key_of(tag)] = value
                    changed.add(step)
        for old in sorted(self.steps)[:-KEEP_STEPS]:
            self.steps.pop(old)
        return [{"type": "epoch", "epoch": step, **self.steps[step]}
                for step in sorted(changed) if step in self.steps and step >= 0]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0

