"""PNG figures written beside a run: the loss curve and the confusion matrix (matplotlib, Agg)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _never_fatal(draw: Callable[..., Path]) -> Callable[..., Path | None]:
    """A plot is never worth a failed run: a full disk or a read-only folder costs one line."""

    @functools.wraps(draw)
    def wrapper(path: Path, *args: Any, **kwargs: Any) -> Path | None:
        try:
            return draw(path, *args, **kwargs)
        except Exception as exc:
            reason = getattr(exc, "strerror", None) or exc
            print(f"nkd: {Path(path).name} not written ({reason})", flush=True)
            return None

    return wrapper


@_never_fatal
def loss_curve(path: Path, history: dict[str, list[float]], title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    epochs = range(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], label="train loss")
    ax.plot(epochs, history["val_loss"], label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


@_never_fatal
def confusion(path: Path, matrix: list[list[int]], classes: list[str], title: str) -> Path:
    plt = _pyplot()
    size = 2.5 + 0.6 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max(max(r) for r in matrix) if matrix else 0
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(
                j,
                i,
                str(v),
                ha="center",
                va="center",
                color="white" if v > top / 2 else "black",
                fontsize=8,
            )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _save(fig, path: Path) -> None:
    from core.util.files import atomic_write

    atomic_write(path, lambda fh: fig.savefig(fh, format="png"), suffix=".png")
