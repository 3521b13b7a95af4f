"""Interval estimates for RL curves: percentile bootstrap over training seeds and evaluation episodes.

Each evaluation point holds, per training seed, the 0/1 outcomes of its held-out episodes. A
bootstrap replicate resamples seeds with replacement and, within each drawn seed, its episodes with
replacement (the two-level scheme of rliable's stratified bootstrap for few runs); the point's
interval is the 2.5/97.5 percentiles of the replicates' means. Steps-to-threshold is computed on
each replicate's mean curve (None when the replicate never reaches it), so its interval and the
share of replicates that reach the threshold come from the same draws. Two arms run on the same
seeds and episodes are compared paired: one draw resamples their difference.
"""

from __future__ import annotations

import numpy as np

from headway.errors import HeadwayError


def _check(outcomes: np.ndarray) -> np.ndarray:
    array = np.asarray(outcomes, dtype=float)
    if array.ndim != 3 or 0 in array.shape:
        raise HeadwayError(f"outcomes must be (seeds, points, episodes) with none empty, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise HeadwayError("outcomes contain NaN or inf")
    return array


def bootstrap_curves(outcomes: np.ndarray, replicates: int = 2000, seed: int = 0) -> np.ndarray:
    """(replicates, points) mean curves from resampled seeds and, within them, resampled episodes."""
    array = _check(outcomes)
    seeds, points, episodes = array.shape
    rng = np.random.default_rng(seed)
    chosen_seeds = rng.integers(0, seeds, (replicates, seeds))
    chosen_episodes = rng.integers(0, episodes, (replicates, seeds, episodes))
    # array[s, p, e] for each replicate r, drawn seed slot k, episode slot j
    drawn = array[chosen_seeds[:, :, None, None], np.arange(points)[None, None, :, None], chosen_episodes[:, :, None, :]]
    return drawn.mean(axis=(1, 3))


def point_intervals(outcomes: np.ndarray, replicates: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Mean per point with percentile-bootstrap intervals."""
    array = _check(outcomes)
    curves = bootstrap_curves(array, replicates, seed)
    tail = 100 * (1 - level) / 2
    return {
        "mean": array.mean(axis=(0, 2)).tolist(),
        "low": np.percentile(curves, tail, axis=0).tolist(),
        "high": np.percentile(curves, 100 - tail, axis=0).tolist(),
    }


def first_reaching(steps: list[int], curve, threshold: float) -> int | None:
    for step, value in zip(steps, curve):
        if value >= threshold - 1e-12:
            return int(step)
    return None


def steps_to_threshold(steps: list[int], outcomes: np.ndarray, threshold: float = 0.9, replicates: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """First step at which the mean curve reaches `threshold`, with a bootstrap interval.

    Replicates that never reach it count as beyond the last step (infinite) in the percentiles, so
    an upper bound of None means "not reached within the run" at that confidence."""
    array = _check(outcomes)
    if len(steps) != array.shape[1]:
        raise HeadwayError(f"{len(steps)} steps for {array.shape[1]} evaluation points")
    point = first_reaching(steps, array.mean(axis=(0, 2)), threshold)
    curves = bootstrap_curves(array, replicates, seed)
    never = max(steps) + 1  # a replicate that never reaches the threshold ranks beyond the run
    reached = np.array([never if (s := first_reaching(steps, c, threshold)) is None else s for c in curves])
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(reached, tail, method="lower"), np.percentile(reached, 100 - tail, method="higher")
    return {
        "steps": point,
        "low": None if low >= never else int(low),
        "high": None if high >= never else int(high),
        "share_reaching": float((reached < never).mean()),
    }


def paired_difference(a: np.ndarray, b: np.ndarray, replicates: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Arm a minus arm b, run on the same training seeds and held-out episodes: per point, and averaged over
    the points after the first (the area under the learning curve, so "faster" is one number).

    A replicate draws seeds, then episodes within them, and applies the same draw to both arms, so the
    pairing (same start, same evaluation scenes) is kept."""
    a, b = _check(a), _check(b)
    if a.shape != b.shape:
        raise HeadwayError(f"paired arms need the same (seeds, points, episodes), got {a.shape} and {b.shape}")
    curves = bootstrap_curves(a - b, replicates, seed)
    tail = 100 * (1 - level) / 2
    later = slice(1, None) if a.shape[1] > 1 else slice(0, 1)  # a single point is its own "after the start"
    after = curves[:, later].mean(axis=1)
    difference = (a - b).mean(axis=(0, 2))
    return {
        "mean": difference.tolist(),
        "low": np.percentile(curves, tail, axis=0).tolist(),
        "high": np.percentile(curves, 100 - tail, axis=0).tolist(),
        "after_start": float(difference[later].mean()),
        "after_start_low": float(np.percentile(after, tail)),
        "after_start_high": float(np.percentile(after, 100 - tail)),
    }


def worst_drop(curve_mean: list[float]) -> float:
    """How far the lowest later point falls below the first (0 if never below)."""
    if len(curve_mean) < 2:
        return 0.0
    return float(max(0.0, curve_mean[0] - min(curve_mean[1:])))
