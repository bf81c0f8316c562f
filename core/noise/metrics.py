"""Classification metrics in numpy: accuracy, macro-F1, ROC AUC (one-vs-rest), confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (y, pred), 1)
    return m


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float((y == pred).mean()) if y.size else float("nan")


def macro_f1(y: np.ndarray, pred: np.ndarray, n: int) -> float:
    m = confusion_matrix(y, pred, n)
    tp = np.diag(m).astype(float)
    precision = np.divide(tp, m.sum(0), out=np.zeros(n), where=m.sum(0) > 0)
    recall = np.divide(tp, m.sum(1), out=np.zeros(n), where=m.sum(1) > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0
    )
    present = m.sum(1) > 0
    return float(f1[present].mean()) if present.any() else float("nan")


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank statistic (ties count half)."""
    pos, neg = int(positive.sum()), int((~positive).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(score.size)
    sorted_scores = score[order]
    i = 0
    while i < score.size:  # average ranks over ties
        j = i
        while j + 1 < score.size and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positive].sum() - pos * (pos + 1) / 2) / (pos * neg))


def roc_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Binary: AUC of the first class's probability; more classes: macro one-vs-rest."""
    n = probs.shape[1]
    if n == 2:
        return binary_auc(y == 0, probs[:, 0])
    values = [binary_auc(y == c, probs[:, c]) for c in range(n)]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def caveat(y: np.ndarray, classes: int, split: str) -> str | None:
    """Why scores on these labels mean less than they look, or None: fewer clips than classes,
    or a class with no clip in the split (its ROC AUC is undefined)."""
    n, present = len(y), len(set(np.asarray(y).tolist()))
    if n < classes:
        return (f"{n} {split} clip{'' if n == 1 else 's'} for {classes} classes: too few to "
                f"mean anything")
    if present < classes:
        return (f"{classes - present} of {classes} classes have no {split} clip (ROC AUC "
                f"undefined)")
    return None


def summary(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    pred = probs.argmax(1)
    n = probs.shape[1]
    return {
        "accuracy": accuracy(y, pred),
        "macro_f1": macro_f1(y, pred, n),
        "roc_auc": roc_auc(y, probs),
    }
