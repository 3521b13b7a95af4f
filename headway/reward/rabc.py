"""Reward-aligned behaviour cloning weights, exactly as LeRobot defines them (SARM paper Eq. 8-9).

r_i = Phi(o_{t+H}) - Phi(o_t) with H the policy's chunk length, clamped to the episode's last
frame; mu, sigma over all frames (mu >= 0, sigma >= eps); w = 1 if r > kappa, the soft weight
clip((r - (mu - 2 sigma)) / (4 sigma + eps), 0, 1) if 0 <= r <= kappa, 0 if r < 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from headway.errors import HeadwayError

KAPPA = 0.01
EPSILON = 1e-6


@dataclass(frozen=True)
class RABCStatistics:
    """Global statistics of the progress deltas the weights are computed against."""

    delta_mean: float
    delta_std: float


def progress_deltas(progress: np.ndarray, chunk_size: int) -> np.ndarray:
    """Phi(t + H) - Phi(t) within one episode, the future index clamped to the last frame."""
    if chunk_size < 1:
        raise HeadwayError(f"chunk size must be at least 1 frame, got {chunk_size}")
    progress = np.asarray(progress, dtype=np.float64)
    future = np.minimum(np.arange(len(progress)) + chunk_size, len(progress) - 1)
    return progress[future] - progress


def delta_statistics(deltas: np.ndarray, epsilon: float = EPSILON) -> RABCStatistics:
    deltas = np.asarray(deltas, dtype=np.float64)
    deltas = deltas[np.isfinite(deltas)]
    if len(deltas) == 0:
        return RABCStatistics(0.0, epsilon)
    return RABCStatistics(max(float(deltas.mean()), 0.0), max(float(deltas.std()), epsilon))


def weights_from_deltas(
    deltas: np.ndarray, stats: RABCStatistics, kappa: float = KAPPA, epsilon: float = EPSILON, fallback: float = 1.0
) -> np.ndarray:
    """Per-sample weights in [0, 1]; NaN deltas (no progress known) get `fallback`."""
    deltas = np.asarray(deltas, dtype=np.float64)
    lower = stats.delta_mean - 2 * stats.delta_std
    soft = np.clip((deltas - lower) / (4 * stats.delta_std + epsilon), 0.0, 1.0)
    weights = np.zeros_like(deltas)
    weights[deltas > kappa] = 1.0
    moderate = (deltas >= 0) & (deltas <= kappa)
    weights[moderate] = soft[moderate]
    weights[~np.isfinite(deltas)] = fallback
    return weights.astype(np.float32)


def rabc_weights(
    episodes_progress: Sequence[np.ndarray], chunk_size: int, kappa: float = KAPPA, epsilon: float = EPSILON
) -> list[np.ndarray]:
    """RA-BC weight of every frame of every episode, statistics taken over all of them."""
    deltas = [progress_deltas(p, chunk_size) for p in episodes_progress]
    stats = delta_statistics(np.concatenate(deltas) if deltas else np.zeros(0), epsilon)
    return [weights_from_deltas(d, stats, kappa, epsilon) for d in deltas]


def normalise_batch_weights(weights: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """Rescale a batch's weights to sum to the batch size (LeRobot's convention)."""
    weights = np.asarray(weights, dtype=np.float64)
    return (weights * len(weights) / (weights.sum() + epsilon)).astype(np.float32)
