"""Potential-based reward shaping over stored episodes (Ng et al. 1999).

r'_t = r_t + gamma * Phi(s_{t+1}) - Phi(s_t), with Phi of a true terminal state taken as 0 and
nothing zeroed at a time-limit truncation. Phi is computed once per stored frame, so the shaped
return telescopes exactly.
"""

from __future__ import annotations

import numpy as np

from headway.errors import HeadwayError


def _check(potentials: np.ndarray, rewards: np.ndarray | None, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    potentials = np.asarray(potentials, dtype=np.float64)
    if potentials.ndim != 1 or len(potentials) < 1:
        raise HeadwayError(f"potentials must be one value per frame, got shape {potentials.shape}")
    if not np.isfinite(potentials).all():
        frame = int(np.flatnonzero(~np.isfinite(potentials))[0])
        raise HeadwayError(f"potential is NaN or infinite at frame {frame}; the reward model produced a bad score")
    if not 0.0 <= gamma <= 1.0:
        raise HeadwayError(f"discount gamma must be in [0, 1], got {gamma}")
    rewards = np.zeros(len(potentials)) if rewards is None else np.asarray(rewards, dtype=np.float64)
    if rewards.shape != potentials.shape:
        raise HeadwayError(f"{len(rewards)} task rewards for {len(potentials)} frames; give one reward per frame")
    return potentials, rewards


def potential_based_rewards(
    potentials: np.ndarray,
    rewards: np.ndarray | None = None,
    gamma: float = 0.99,
    terminated: bool = False,
) -> np.ndarray:
    """Shaped reward per frame of one episode.

    Frame t's reward is for the transition s_t -> s_{t+1}; `rewards[t]` is the task reward of that
    transition. The last frame's transition leads to the terminal state (Phi = 0) when
    `terminated`, else (truncated, or an episode that just stops) it gets no shaping term, since the
    next state was never stored; an RL learner bootstraps there instead.
    """
    potentials, rewards = _check(potentials, rewards, gamma)
    following = np.append(potentials[1:], 0.0 if terminated else np.nan)
    shaping = gamma * following - potentials
    if not terminated:
        shaping[-1] = 0.0
    return (rewards + shaping).astype(np.float32)
