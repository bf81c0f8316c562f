"""Reading and writing audio: any common format, resampled to one rate, mono or multichannel."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from core.errors import RunError
from core.util.audio_names import EXTENSIONS, FFMPEG, NATIVE  # noqa: F401 (audio.EXTENSIONS)


class AudioError(RunError):
    """A file that cannot be used as audio; the message names the file and why."""


def read(path: Path, sample_rate: int, mono: bool = True) -> np.ndarray:
    """Samples as float32, resampled to `sample_rate`: shape [n] when mono, else [channels, n]."""
    suffix = path.suffix.lower()
    if suffix in FFMPEG:
        data, rate = _read_ffmpeg(path)
    else:
        import soundfile

        if suffix == ".wav":
            truncated = wav_truncation(path)
            if truncated:
                raise AudioError(f"{path}: {truncated}")
        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioError(
                f"{path}: unreadable audio ({str(exc).splitlines()[0][:160]})"
            ) from None
        data = data.T  # [channels, n]
    if data.shape[-1] == 0:
        raise AudioError(f"{path}: empty audio (no samples)")
    if mono:
        data = data.mean(axis=0)
    if rate != sample_rate:
        import soxr

        if data.ndim == 1:
            data = soxr.resample(data, rate, sample_rate)
        else:
            data = soxr.resample(data.T, rate, sample_rate).T
    return np.ascontiguousarray(data, dtype=np.float32)


def wav_truncation(path: Path) -> str | None:
    """Why a RIFF/WAVE file is cut short (its data chunk claims more bytes than the file
    holds, as a copy interrupted part-way leaves it), or None. libsndfile reads such a file
    without a word, so a half-copied clip would silently train as a shorter one."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None  # not RIFF/WAVE (RF64, or not a wav at all): libsndfile decides
            size = path.stat().st_size
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                chunk_id, length = struct.unpack("<4sI", fh.read(8))
                if chunk_id == b"data":
                    if pos + 8 + length > size:
                        return (f"truncated wav: its data chunk declares {length} bytes, the "
                                f"file holds {size - pos - 8}")
                    return None
                pos += 8 + length + (length & 1)
    except OSError:
        return None
    return "truncated wav: no data chunk"


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(
            f"{path}: {path.suffix} files need ffmpeg, which is not installed "
            f"(apt install ffmpeg, or convert the file to wav)"
        )
    rate = 48000
    proc = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(rate), "-"],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{path}: ffmpeg could not decode it ({(reason or ['?'])[-1][:160]})")
    return np.frombuffer(proc.stdout, dtype=np.float32)[None, :], rate


def write(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write float samples ([n] or [channels, n]) as 16-bit PCM wav."""
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(samples, dtype=np.float32)
    soundfile.write(str(path), data.T if data.ndim == 2 else data, sample_rate, subtype="PCM_16")
