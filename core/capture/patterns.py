"""Per-epoch values from what an unedited script already prints.

Built-in shapes (each can be turned off with `builtin_scalars = false`):

    Epoch 3/100 ... loss: 0.4100 - val_loss: 0.5200          (Keras)
    Epoch 3: 100%|####| 50/50 [00:01<00:00, train_loss=0.41, val_loss=0.52]   (Lightning, tqdm)
    epoch 3 | train 0.41 | val 0.52
    [Epoch 3] Train Loss: 0.41, Val Loss: 0.52
    {'loss': 0.41, 'learning_rate': 5e-05, 'epoch': 3.0}     (Hugging Face Trainer)
    SDR: 3.2 dB        vocals SDR: 4.1 dB        Accuracy: 93.1%

and the registry's own `output_scalars`: regular expressions whose named groups are values
(`(?P<epoch>\\d+)` sets the epoch; `(?P<val_loss>...)` a value; a group `name` with a group
`value` names the value from the line). `@nkd` lines win: once a script reports epochs itself,
patterns no longer make epoch records.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
EPOCH = [
    re.compile(r"\bepoch\s*[:=]?\s*\[?(?P<epoch>\d+)\s*(?:/\s*(?P<total>\d+))?\]?", re.I),
    re.compile(rf"['\"]epoch['\"]\s*:\s*(?P<epoch>{NUMBER})", re.I),  # a printed dict
]
# `key: value` / `key=value` (a key of one or two words, maybe quoted), and `key value` between |
WORD = r"[A-Za-z][A-Za-z0-9_]*"
PAIR = re.compile(
    rf"(?<![A-Za-z0-9_.])['\"]?(?P<key>{WORD}(?: {WORD})?)['\"]?\s*[:=]\s*"
    rf"(?P<value>{NUMBER})(?P<unit>\s*(?:%|dB))?(?![A-Za-z0-9_:/.])"
)
SEGMENT = re.compile(
    rf"\s*(?P<key>{WORD}(?: {WORD})?)\s+(?P<value>{NUMBER})(?P<unit>\s*(?:%|dB))?\s*"
)
# only keys that read as training values are taken from ordinary output
VOCABULARY = re.compile(r"loss|acc|sdr|sir|sar|isr|f1|auc|lr$|learning_rate|error|score|"
                        r"precision|recall|wer|cer|bleu|perplexity|ppl|mae|mse|rmse|psnr")
KEY_NAMES = {
    "loss": "train_loss", "train": "train_loss", "train_loss": "train_loss",
    "training_loss": "train_loss", "train_loss_epoch": "train_loss", "tr_loss": "train_loss",
    "val": "val_loss", "val_loss": "val_loss", "valid_loss": "val_loss",
    "validation_loss": "val_loss", "eval_loss": "val_loss", "val_loss_epoch": "val_loss",
    "test_loss": "test_loss", "lr": "lr", "learning_rate": "lr",
    "acc": "accuracy", "accuracy": "accuracy", "val_acc": "val_accuracy",
    "val_accuracy": "val_accuracy", "sdr": "sdr", "si_sdr": "si_sdr", "f1": "f1",
}
IGNORED = {"epoch", "step", "it", "iter", "iteration", "batch", "v_num", "s", "eta", "time",
           "global_step", "total", "samples", "elapsed"}
STEMS = ("vocals", "drums", "bass", "other", "mean", "median")


class Capture:
    """What one line said: an epoch, values, or standalone metrics (SDR, accuracy). (A plain
    class: the worker of every command run imports this, and starts sooner without the
    dataclasses module.)"""

    __slots__ = ("epoch", "total", "values", "metrics")

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.total: int | None = None
        self.values: dict[str, float] = {}
        self.metrics: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return (f"Capture(epoch={self.epoch!r}, total={self.total!r}, values={self.values!r}, "
                f"metrics={self.metrics!r})")

    def __bool__(self) -> bool:
        return self.epoch is not None or bool(self.values) or bool(self.metrics)


def _key(raw: str) -> str:
    key = re.sub(r"[\s./-]+", "_", raw.strip().lower()).strip("_")
    key = re.sub(r"^(?:epoch_\d+_|\d+_)", "", key)
    return KEY_NAMES.get(key, key)


def _number(text: str, unit: str | None) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    if unit and unit.strip() == "%":
        value /= 100
    return value


def builtin(line: str) -> Capture:
    """The built-in shapes applied to one line."""
    out = Capture()
    text = line.strip()
    if not text or len(text) > 2000:
        return out
    for pattern in EPOCH:
        m = pattern.search(text)
        if m:
            try:
                out.epoch = int(float(m.group("epoch")))
            except ValueError:
                pass
            total = m.groupdict().get("total")
            out.total = int(total) if total else None
            break
    pairs = [m for m in PAIR.finditer(text)]
    if "|" in text:
        pairs += [m for seg in text.split("|") if (m := SEGMENT.fullmatch(seg))]
    found: list[tuple[str, float, str]] = []
    for m in pairs:
        key = _key(m.group("key"))
        if not key or key in IGNORED or not (key in KEY_NAMES.values() or VOCABULARY.search(key)):
            continue
        value = _number(m.group("value"), m.group("unit"))
        if value is not None:
            found.append((key, value, (m.group("unit") or "").strip()))
    # one value alone on a line with no epoch (`SDR: 3.2 dB`, `Accuracy: 93.1%`) is a result
    alone = len(found) == 1 and out.epoch is None
    for key, value, unit in found:
        split, stem, base = _parts(key)
        if (base in ("sdr", "si_sdr") and (unit == "dB" or alone)) or \
                (base == "accuracy" and alone):
            out.metrics.append({"name": base, "value": value,
                                **({"stem": stem} if stem else {}),
                                **({"split": split} if split else {})})
        else:
            out.values[key] = value
    return out


SPLITS = {"test": "test", "val": "val", "valid": "val", "validation": "val", "eval": "val"}


def _parts(key: str) -> tuple[str | None, str | None, str]:
    """`test_vocals_sdr` -> ("test", "vocals", "sdr")."""
    split = stem = None
    head, _, rest = key.partition("_")
    if rest and head in SPLITS:
        split, key = SPLITS[head], rest
    head, _, rest = key.partition("_")
    if rest and head in STEMS:
        stem, key = head, rest
    return split, stem, key


def compile_scalars(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """The registry's `output_scalars`; re.error names the bad one (the registry checks)."""
    return [re.compile(p) for p in patterns]


def custom(line: str, patterns: list[re.Pattern[str]]) -> Capture:
    out = Capture()
    for pattern in patterns:
        m = pattern.search(line)
        if not m:
            continue
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        if "name" in groups and "value" in groups:
            value = _number(groups["value"], None)
            if value is not None:
                out.values[_key(groups["name"])] = value
            continue
        for key, raw in groups.items():
            if key == "epoch":
                try:
                    out.epoch = int(float(raw))
                except ValueError:
                    pass
                continue
            value = _number(raw, None)
            if value is not None:
                out.values[KEY_NAMES.get(key, key)] = value
    return out


class Follower:
    """Turns a script's output into epoch and metric events, line by line.

    Values seen after an epoch line belong to that epoch; its record is sent with every value
    known so far (the store keeps the latest), at most every `every` seconds while the epoch's
    lines arrive (a script that prints each step does not write the store each step), and once
    more, complete, when the next epoch starts or the output ends (`flush`).
    """

    def __init__(self, builtins: bool = True, patterns: Iterable[str] = (), every: float = 0.5,
                 clock: Any = None) -> None:
        import time

        self.builtins = builtins
        self.patterns = compile_scalars(patterns)
        self.every = every
        self.clock = clock or time.monotonic
        self.epoch: int | None = None
        self.total: int | None = None
        self.values: dict[str, float] = {}
        self.dirty = False
        self.sent_at = float("-inf")
        self.reported_itself = False  # an @nkd epoch came: patterns make no epochs any more

    def feed(self, line: str) -> list[dict[str, Any]]:
        caught = Capture()
        if self.builtins:
            caught = builtin(line)
        if self.patterns:
            own = custom(line, self.patterns)
            caught.epoch = own.epoch if own.epoch is not None else caught.epoch
            caught.values.update(own.values)
        if not caught:
            return []
        events: list[dict[str, Any]] = [{"type": "metric", **m} for m in caught.metrics]
        if self.reported_itself:
            return events
        if caught.epoch is not None and caught.epoch != self.epoch:
            events += self.flush()
            self.epoch, self.values = caught.epoch, {}
            self.total = caught.total or self.total
        if self.epoch is None or not caught.values:
            return events
        self.values.update(caught.values)
        self.dirty = True
        if self.clock() - self.sent_at >= self.every:
            events += self.flush()
        return events

    def flush(self) -> list[dict[str, Any]]:
        """The current epoch's record, if it has values not sent yet."""
        if not self.dirty or self.epoch is None or self.reported_itself:
            return []
        self.dirty = False
        self.sent_at = self.clock()
        return [{"type": "epoch", "epoch": self.epoch, **self.values}]
