"""Evaluation metrics on NumPy arrays (no per-row Python)."""
from __future__ import annotations

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN without both classes.

    Args:
        labels: [N] 0/1 labels.
        scores: [N] scores; higher means more likely positive.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average rank over ties: first and last position of each run of equal scores.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """Group AUC: the AUC within each group (e.g. user) that has both classes, averaged with the
    group's number of rows as weight; NaN when no group has both classes.

    One sort by (group, score) for all groups: tie-averaged ranks within each group, then each
    group's Mann-Whitney U from its positives' rank sum (no loop over groups).
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if not len(labels):
        return float("nan")
    _, group_ids = np.unique(np.asarray(groups), return_inverse=True)
    order = np.lexsort((scores, group_ids))
    group_ids, scores, labels = group_ids[order], scores[order], labels[order]
    n = len(labels)
    new_group = np.r_[True, group_ids[1:] != group_ids[:-1]]
    new_tie = new_group | np.r_[True, scores[1:] != scores[:-1]]
    group_starts, tie_starts = np.flatnonzero(new_group), np.flatnonzero(new_tie)
    sizes, tie_sizes = np.diff(np.r_[group_starts, n]), np.diff(np.r_[tie_starts, n])
    ranks = np.repeat(tie_starts + (tie_sizes + 1) / 2.0, tie_sizes)  # 1-based, ties averaged
    ranks -= np.repeat(group_starts, sizes)  # within the group
    positives = np.add.reduceat(labels.astype(np.int64), group_starts)
    rank_sums = np.add.reduceat(np.where(labels, ranks, 0.0), group_starts)
    both = (positives > 0) & (positives < sizes)
    if not both.any():
        return float("nan")
    p, size = positives[both], sizes[both]
    group_aucs = (rank_sums[both] - p * (p + 1) / 2.0) / (p * (size - p))
    return float(np.sum(group_aucs * size) / np.sum(size))


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else float("nan")


def calibration(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean prediction / mean label (1.0 is calibrated on average)."""
    mean_label = float(np.mean(labels)) if len(labels) else 0.0
    return float(np.mean(probs)) / mean_label if mean_label > 0 else float("nan")


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Reliability diagram data: rows of equal-count bins of the prediction, with the mean
    prediction, the observed rate and the count of each bin."""
    order = np.argsort(probs, kind="mergesort")
    out = []
    for chunk in np.array_split(order, bins):
        if len(chunk):
            out.append({"mean_prediction": float(np.mean(probs[chunk])),
                        "observed_rate": float(np.mean(labels[chunk])), "count": int(len(chunk))})
    return out


def roc_points(labels: np.ndarray, scores: np.ndarray, points: int = 51) -> list[dict[str, float]]:
    """ROC curve data: rows of false and true positive rates from (0, 0) to (1, 1), one per
    distinct score threshold, evenly thinned to at most ``points`` rows (first and last kept);
    empty without both classes.

    Args:
        labels: [N] 0/1 labels.
        scores: [N] scores; higher means more likely positive.
        points: the most rows returned (>= 2).
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return []
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, hits = scores[order], labels[order]
    # The last row of each run of equal scores: one threshold per distinct score, ties together.
    last = np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), len(scores) - 1]
    tpr = np.r_[0.0, np.cumsum(hits)[last] / positives]
    fpr = np.r_[0.0, np.cumsum(~hits)[last] / negatives]
    keep = np.unique(np.linspace(0, len(tpr) - 1, min(max(points, 2), len(tpr))).round().astype(int))
    return [{"fpr": float(fpr[i]), "tpr": float(tpr[i])} for i in keep]


def rmse(targets: np.ndarray, predictions: np.ndarray) -> float:
    if not len(targets):
        return float("nan")
    return float(np.sqrt(np.mean((np.asarray(targets, np.float64) - np.asarray(predictions, np.float64)) ** 2)))
