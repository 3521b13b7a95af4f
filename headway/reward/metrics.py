"""Reward-model metrics: VOC, stage accuracy, progress MAE, success AUROC/F1, Kendall tau_a, Succ-Fail gap."""

from __future__ import annotations

import numpy as np
from scipy import stats


def value_order_correlation(progress: np.ndarray) -> float:
    """Spearman rank correlation of predicted progress with time over one episode (1 = monotone)."""
    progress = np.asarray(progress, dtype=np.float64)
    if progress.size < 2 or np.all(progress == progress[0]):
        return 0.0
    return float(stats.spearmanr(np.arange(progress.size), progress).statistic)


def kendall_tau_a(scores: np.ndarray, quality: np.ndarray) -> float:
    """Kendall's tau_a between predicted scores and true quality: (concordant - discordant) / all pairs.

    Unlike tau_b, ties in the prediction count against it, so a constant predictor scores 0.
    """
    scores, quality = np.asarray(scores, dtype=np.float64), np.asarray(quality, dtype=np.float64)
    n = scores.size
    if n < 2:
        return 0.0
    i, j = np.triu_indices(n, k=1)
    signs = np.sign(scores[i] - scores[j]) * np.sign(quality[i] - quality[j])
    return float(signs.sum() / (n * (n - 1) / 2))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (probability a random positive outranks a random negative; ties count half)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def f1_score(predicted: np.ndarray, labels: np.ndarray) -> float:
    predicted, labels = np.asarray(predicted, dtype=bool), np.asarray(labels, dtype=bool)
    true_positive = float((predicted & labels).sum())
    denominator = 2 * true_positive + float((predicted & ~labels).sum()) + float((~predicted & labels).sum())
    return 2 * true_positive / denominator if denominator else 1.0


def succ_fail_gap(final_progress: np.ndarray, success: np.ndarray) -> float:
    """Mean final progress of successful episodes minus that of failed ones."""
    final_progress, success = np.asarray(final_progress, dtype=np.float64), np.asarray(success, dtype=bool)
    if success.all() or not success.any():
        return float("nan")
    return float(final_progress[success].mean() - final_progress[~success].mean())


def stage_accuracy(predicted: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.asarray(predicted) == np.asarray(true)))


def mean_absolute_error(predicted: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted, dtype=np.float64) - np.asarray(true, dtype=np.float64))))
