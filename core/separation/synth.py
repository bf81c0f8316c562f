"""A deterministic procedural multitrack set: bass line, drum kit, a voice-like formant melody and
a chord pad, each panned, mixed at varied gains, written as MUSDB18-style track folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from core.data import audio
from core.data import demo as demo_data

SR = 22050
SCALE = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor


def _rng(*parts: object) -> np.random.Generator:
    seed = int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")
    return np.random.default_rng(seed)


def _midi(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _env(n: int, attack: float, release: float) -> np.ndarray:
    t = np.arange(n) / SR
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-t / release)


def bass(rng: np.random.Generator, n: int, beat: float, root: int) -> np.ndarray:
    out = np.zeros(n)
    step = int(beat * SR / 2)
    for start in range(0, n, step):
        m = min(step, n - start)
        f = _midi(root - 24 + SCALE[rng.integers(0, 5)])
        t = np.arange(m) / SR
        saw = 2 * ((f * t) % 1.0) - 1
        out[start : start + m] = (0.6 * np.sin(2 * np.pi * f * t) + 0.4 * saw) * _env(m, 0.01, 0.25)
    return out


def drums(rng: np.random.Generator, n: int, beat: float) -> np.ndarray:
    out = np.zeros(n)
    step = int(beat * SR / 2)  # eighth notes
    for k, start in enumerate(range(0, n, step)):
        m = min(int(0.3 * SR), n - start)
        t = np.arange(m) / SR
        if k % 4 == 0:  # kick on the beat
            f = 40 + 80 * np.exp(-t / 0.03)
            out[start : start + m] += np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / 0.12)
        if k % 4 == 2:  # snare on the off-beat
            noise = rng.standard_normal(m) * np.exp(-t / 0.06)
            out[start : start + m] += 0.5 * noise + 0.3 * np.sin(2 * np.pi * 190 * t) * np.exp(
                -t / 0.05
            )
        hat = np.diff(rng.standard_normal(m + 1)) * np.exp(-t / 0.015)  # bright hi-hat
        out[start : start + m] += 0.15 * hat
    return out


def vocals(rng: np.random.Generator, n: int, beat: float, root: int) -> np.ndarray:
    """A voice-like melody: a pulse train at the melody's pitch through three formants."""
    notes = root + SCALE[rng.integers(0, 7, size=n // int(beat * SR) + 1)]
    f0 = np.repeat([_midi(x) for x in notes], int(beat * SR))[:n]
    f0 = f0 * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * np.arange(n) / SR))
    phase = np.cumsum(f0) / SR
    pulses = np.zeros(n)
    pulses[np.flatnonzero(np.diff(np.floor(phase), prepend=0) > 0)] = 1.0
    spectrum = np.fft.rfft(pulses)
    freqs = np.fft.rfftfreq(n, 1 / SR)
    shape = sum(1 / (1 + ((freqs - c) / w) ** 2) for c, w in ((700, 110), (1200, 130), (2600, 200)))
    voice = np.fft.irfft(spectrum * shape, n)
    syll = np.clip(np.sin(2 * np.pi * np.arange(n) / SR / beat), 0, None) ** 0.5
    return voice * syll


def pad(rng: np.random.Generator, n: int, beat: float, root: int) -> np.ndarray:
    out = np.zeros(n)
    step = int(4 * beat * SR)
    for start in range(0, n, step):
        m = min(step, n - start)
        t = np.arange(m) / SR
        degree = rng.integers(0, 7)
        chord = [root + SCALE[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]
        tone = sum(
            np.sin(2 * np.pi * _midi(c) * t) + 0.3 * np.sin(4 * np.pi * _midi(c) * t) for c in chord
        )
        out[start : start + m] = tone * np.minimum(1, t / 0.3) * np.minimum(1, (m / SR - t) / 0.1)
    return out


def track(index: int, seconds: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Stems [2, n] (stereo) and their mixture for one track."""
    rng = _rng(seed, "track", index)
    n = int(seconds * SR)
    beat = 60.0 / rng.uniform(84, 132)
    root = int(rng.integers(57, 64))
    made = {
        "bass": bass(rng, n, beat, root),
        "drums": drums(rng, n, beat),
        "other": pad(rng, n, beat, root),
        "vocals": vocals(rng, n, beat, root + 12),
    }
    out = {}
    for name, x in made.items():
        x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.15, 0.35)
        pan = rng.uniform(0.25, 0.75)
        out[name] = np.stack([x * (1 - pan) * 2**0.5, x * pan * 2**0.5]).astype(np.float32)
    mixture = sum(out[s] for s in ("bass", "drums", "other", "vocals"))
    scale = min(1.0, 0.9 / float(np.abs(mixture).max()))  # the mixture never clips
    out = {k: v * scale for k, v in out.items()}
    out["mixture"] = mixture * scale
    return out


def write(root: Path, tracks: int, seconds: float, seed: int, prefix: str) -> None:
    for i in range(tracks):
        # train, val and test tracks are different pieces: their own ranges of track numbers
        stems = track(i + {"train": 0, "val": 1000, "test": 2000}[prefix], seconds, seed)
        folder = root / f"{prefix}_{i:03d}"
        for name, x in stems.items():
            audio.write(folder / f"{name}.wav", x, SR)


def synthesize(registry, tracks: int = 8, seconds: float = 8.0, seed: int = 0, log=print) -> None:
    """Write every `synth = "separation"` source: train sources get `tracks`, others a third."""
    for name, src in registry.data.items():
        if src.settings.get("synth") != "separation":
            continue
        root: Path = src.root
        used_as = {key for exp in registry.experiments.values()
                   for key in ("val_data", "test_data", "eval_data") if exp.params.get(key) == name}
        role = "test" if "test_data" in used_as else "val" if used_as else "train"
        is_train = role == "train"
        count = tracks if is_train else max(2, tracks // 3)
        stamp = f"separation tracks={count} seconds={seconds} seed={seed}\n"
        if not demo_data.claim(root, name, stamp, log):
            continue
        write(root, count, seconds, seed, role)
        demo_data.seal(root, stamp)
        log(f"{name}: wrote {count} tracks of {seconds:g} s to {root}")
