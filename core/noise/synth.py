"""A deterministic, procedurally synthesized noise data set for the demo and the tests.

Each class name maps to a generator by keyword: impacts and footsteps through a floor (low thumps
with room decay), daily sounds (speech-like voiced bursts, dishes, running water), background
(mains hum, fan, pink noise), construction hammering, and two types kept for zero-shot evaluation
(drilling, door slams). Every clip also carries a little room noise at a random level, so the
classes overlap as real recordings do. The same seed always gives the same files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.data import audio
from core.data import demo as demo_data
from core.errors import RunError

SR = 16000
Gen = Callable[[np.random.Generator, int], np.ndarray]


def _t(n: int) -> np.ndarray:
    return np.arange(n) / SR


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    x = np.fft.irfft(spectrum, n)
    return x / (np.abs(x).max() + 1e-9)


def _lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    spectrum *= 1.0 / (1.0 + (freqs / cutoff) ** 4)
    return np.fft.irfft(spectrum, x.size)


def _bandpass(x: np.ndarray, low: float, high: float) -> np.ndarray:
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    spectrum *= (freqs >= low) & (freqs <= high)
    return np.fft.irfft(spectrum, x.size)


def _room(rng: np.random.Generator, x: np.ndarray, decay_s: float) -> np.ndarray:
    """Convolve with an exponentially decaying noise tail: a small reverberant room."""
    m = int(decay_s * SR)
    ir = rng.standard_normal(m) * np.exp(-_t(m) / (decay_s / 5))
    ir[0] = 4.0
    y = np.fft.irfft(np.fft.rfft(x, x.size + m) * np.fft.rfft(ir, x.size + m), x.size + m)
    return y[: x.size]


def _thump(rng: np.random.Generator, n: int, at: int, f0: float, tau: float) -> np.ndarray:
    out = np.zeros(n)
    m = n - at
    t = _t(m)
    body = sum(
        np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k**1.5 for k in (1, 1.6, 2.3)
    )
    click = _lowpass(rng.standard_normal(m), 400.0) * np.exp(-t / 0.008)
    out[at:] = (body + 0.5 * click) * np.exp(-t / tau)
    return out


def floor_impact(rng: np.random.Generator, n: int) -> np.ndarray:
    """Footsteps or a dropped object heard through a floor: low thumps with room decay."""
    x = np.zeros(n)
    if rng.random() < 0.6:  # footsteps: a regular walk
        step = int(rng.uniform(0.35, 0.6) * SR)
        for at in range(int(rng.uniform(0, 0.3) * SR), n, step):
            x += _thump(rng, n, at, rng.uniform(35, 70), rng.uniform(0.04, 0.09))
    else:  # one or two impacts
        for _ in range(rng.integers(1, 3)):
            x += _thump(
                rng, n, int(rng.uniform(0, 0.7) * n), rng.uniform(40, 110), rng.uniform(0.08, 0.2)
            )
    return _lowpass(_room(rng, x, 0.3), 300.0)


def speech(rng: np.random.Generator, n: int) -> np.ndarray:
    """Speech-like voiced bursts: a glottal pulse train through moving formants, syllable rhythm."""
    t = _t(n)
    f0 = rng.uniform(100, 240) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    phase = np.cumsum(f0) / SR
    source = np.zeros(n)
    source[np.flatnonzero(np.diff(np.floor(phase), prepend=0) > 0)] = 1.0
    spectrum = np.fft.rfft(source)
    freqs = np.fft.rfftfreq(n, 1 / SR)
    shape = np.zeros_like(freqs)
    for centre, width in (
        (rng.uniform(400, 800), 90),
        (rng.uniform(1100, 1900), 120),
        (rng.uniform(2300, 3000), 160),
    ):
        shape += 1.0 / (1.0 + ((freqs - centre) / width) ** 2)
    voiced = np.fft.irfft(spectrum * shape, n)
    syllables = (
        np.clip(np.sin(2 * np.pi * rng.uniform(3, 5.5) * t + rng.uniform(0, 6.28)), 0, None) ** 2
    )
    return _room(rng, voiced * syllables, 0.2)


def dishes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Dishes and cutlery: bright inharmonic clinks that ring briefly."""
    x = np.zeros(n)
    for _ in range(rng.integers(2, 6)):
        at = int(rng.uniform(0, 0.9) * n)
        t = _t(n - at)
        ring = sum(np.sin(2 * np.pi * rng.uniform(2000, 6500) * t) for _ in range(3))
        x[at:] += ring * np.exp(-t / rng.uniform(0.02, 0.08)) * rng.uniform(0.4, 1.0)
    return _room(rng, x, 0.15)


def water(rng: np.random.Generator, n: int) -> np.ndarray:
    """Running water: band-limited noise with a fluttering level and small bubble chirps."""
    t = _t(n)
    x = _bandpass(rng.standard_normal(n), rng.uniform(300, 800), rng.uniform(3000, 6000))
    x *= 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(5, 15) * t) * rng.random()
    for _ in range(rng.integers(3, 10)):
        at = int(rng.uniform(0, 0.95) * n)
        m = min(int(0.03 * SR), n - at)
        f = rng.uniform(600, 1500) * (1 + np.linspace(0, 1.5, m))
        x[at : at + m] += 3 * np.sin(2 * np.pi * np.cumsum(f) / SR) * np.hanning(m)
    return x / (np.abs(x).max() + 1e-9)


def daily(rng: np.random.Generator, n: int) -> np.ndarray:
    """Daily-life sounds: a voice, dishes or running water."""
    return (speech, dishes, water)[rng.integers(0, 3)](rng, n)


def background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Steady background: mains hum, a fan, or pink noise."""
    t = _t(n)
    kind = rng.integers(0, 3)
    if kind == 0:
        mains = rng.choice([50.0, 60.0])
        return sum(np.sin(2 * np.pi * mains * k * t) / k for k in range(1, 6)) + 0.1 * _pink(rng, n)
    if kind == 1:
        blade = rng.uniform(20, 60)
        return _lowpass(rng.standard_normal(n), rng.uniform(800, 2000)) * (
            1 + 0.3 * np.sin(2 * np.pi * blade * t)
        )
    return _pink(rng, n)


def construction(rng: np.random.Generator, n: int) -> np.ndarray:
    """Construction: fast regular hammering in the mid range over a grinding noise."""
    x = 0.2 * _bandpass(rng.standard_normal(n), 150, 1200)
    period = int(SR / rng.uniform(3, 7))
    for at in range(int(rng.uniform(0, 0.1) * SR), n, period):
        x += _thump(rng, n, at, rng.uniform(180, 500), 0.03)
    return _room(rng, x, 0.25)


def drilling(rng: np.random.Generator, n: int) -> np.ndarray:
    """A drill (zero-shot type): a rich buzzing tone that wavers."""
    t = _t(n)
    f = rng.uniform(120, 350) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * phase) / k**0.7 for k in range(1, 12))
    return x * (0.8 + 0.2 * np.sin(2 * np.pi * rng.uniform(8, 20) * t))


def door_slam(rng: np.random.Generator, n: int) -> np.ndarray:
    """A door slam (zero-shot type): one hard broadband impact and a rattling tail."""
    at = int(rng.uniform(0, 0.5) * n)
    x = np.zeros(n)
    t = _t(n - at)
    x[at:] = rng.standard_normal(n - at) * np.exp(-t / 0.05)
    x += 0.8 * _thump(rng, n, at, rng.uniform(90, 160), 0.12)
    return _room(rng, x, 0.4)


# (keywords, generator): the first keyword contained in a class name picks its generator.
GENERATORS: list[tuple[tuple[str, ...], Gen]] = [
    (("apartment", "thump", "impact", "footstep", "floor"), floor_impact),
    (("daily_human", "speech", "voice", "talk"), speech),
    (("dish", "cutlery"), dishes),
    (("water", "tap", "shower"), water),
    (("daily",), daily),
    (("construction", "hammer"), construction),
    (("background", "hum", "fan", "ambient"), background),
    (("drill",), drilling),
    (("door", "slam"), door_slam),
]


def generator_for(label: str) -> Gen:
    for keywords, gen in GENERATORS:
        if any(k in label.lower() for k in keywords):
            return gen
    known = ", ".join(k[0] for k, _ in GENERATORS)
    raise RunError(
        f"no synthetic generator for class '{label}' (class names must contain one of: {known})"
    )


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")


def clip(label: str, index: int, seconds: float, seed: int = 0) -> np.ndarray:
    """One clip of class `label`: the sound at a random level over a little room noise."""
    rng = np.random.default_rng(_seed(seed, label, index))
    n = int(seconds * SR)
    x = generator_for(label)(rng, n)
    x = x / (np.abs(x).max() + 1e-9)
    floor = _pink(rng, n) * 10 ** (rng.uniform(-40, -22) / 20)
    y = x * rng.uniform(0.2, 0.8) + floor
    return (y / max(1.0, np.abs(y).max() / 0.95)).astype(np.float32)


def write_labeled(
    root: Path, labels: list[str], per_class: int, label_from: str, seed: int = 0
) -> int:
    """Write `per_class` files per label: <root>/<label>/<label>_NNN.wav or <root>/<label>_NNN.wav.

    Lengths vary from 1 to 3 s, and one file in five is 22.05 kHz stereo, so indexing exercises
    segmenting, downmixing and resampling as real recordings would.
    """
    count = 0
    for label in labels:
        for i in range(per_class):
            rng = np.random.default_rng(_seed(seed, "len", label, i))
            seconds = float(rng.choice([1.0, 1.0, 1.0, 2.0, 3.0]))
            y = clip(label, i, seconds, seed)
            folder = root / label if label_from == "folder" else root
            _write(folder / f"{label}_{i:03d}.wav", y, i)
            count += 1
    return count


def write_unlabeled(root: Path, labels: list[str], total: int, seed: int = 0) -> int:
    """An unlabeled pool drawn evenly from `labels`' generators, with no label in the file names."""
    for i in range(total):
        y = clip(labels[i % len(labels)], 10_000 + i, 1.0, seed)
        _write(root / f"clip_{i:04d}.wav", y, i)
    return total


def _write(path: Path, y: np.ndarray, i: int) -> None:
    if i % 5 == 4:
        import soxr

        stereo = np.stack([y, 0.9 * y])
        audio.write(path, soxr.resample(stereo.T, SR, 22050).T, 22050)
    else:
        audio.write(path, y, SR)


def plan(registry) -> dict[str, dict]:
    """What to write for each `synth = "noise"` data source, read from the experiments using it.

    A labeled source gets the original labels of every experiment's classes that train on it, an
    evaluation source gets their zero-shot classes, an unlabeled source a pool drawn from the
    labels of the labeled sources.
    """
    out: dict[str, dict] = {}
    for name, src in registry.data.items():
        if src.settings.get("synth") != "noise":
            continue
        out[name] = {
            "root": src.root,
            "label_from": src.settings.get("label_from", "folder"),
            "unlabeled": bool(src.settings.get("unlabeled")),
            "labels": [],
        }
    pool: list[str] = []
    for exp in registry.experiments.values():
        p = exp.params
        classes = p.get("classes")
        originals = (
            [label for group in classes.values() for label in group]
            if isinstance(classes, dict)
            else list(classes or [])
        )
        for key in ("data", "val_data"):
            entry = out.get(p.get(key, ""))
            if entry is not None and not entry["unlabeled"]:
                entry["labels"] += [c for c in originals if c not in entry["labels"]]
        entry = out.get(p.get("eval_data", ""))
        if entry is not None:
            entry["labels"] += [
                c for c in p.get("zero_shot_classes", []) if c not in entry["labels"]
            ]
        if p.get("data") in out and not out[p["data"]]["unlabeled"]:
            pool += [c for c in originals if c not in pool]
    for entry in out.values():
        if entry["unlabeled"]:
            entry["labels"] = pool
    return out


def synthesize(registry, per_class: int = 40, seed: int = 0, log=print) -> list[str]:
    """Write every noise demo source that is missing; never touch a folder of real recordings."""
    written = []
    for name, entry in plan(registry).items():
        root: Path = entry["root"]
        stamp = f"noise per_class={per_class} seed={seed}\n"
        if not entry["labels"]:
            log(f"{name}: no experiment uses it with classes; skipped")
            continue
        if not demo_data.claim(root, name, stamp, log):
            continue
        if entry["unlabeled"]:
            count = write_unlabeled(
                root, entry["labels"], per_class * len(entry["labels"]) // 2, seed
            )
        else:
            count = write_labeled(root, entry["labels"], per_class, entry["label_from"], seed)
        demo_data.seal(root, stamp)
        log(f"{name}: wrote {count} files to {root} ({', '.join(entry['labels'])})")
        written.append(name)
    return written
