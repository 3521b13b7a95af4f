"""Potential-based reward shaping over stored episodes (Ng et al. 1999).

r'_t = r_t + gamma * Phi(s_{t+1}) - Phi(s_t), with Phi of a true terminal state taken as 0 and
nothing zeroed at a time-limit truncation. Phi is computed once per stored frame, so the shaped
return telescopes exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from headway.errors import HeadwayError
from headway.registry import Registry


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


# -- per-transition shapings for learners ---------------------------------------------------------
# Each takes (task reward, Phi(s), Phi(s'), gamma, terminated) and returns the reward the learner sees.
ShapingFunction = Callable[[float, float, float, float, bool], float]
SHAPINGS: Registry[ShapingFunction] = Registry("shaping")


@SHAPINGS.decorator("pbrs")
def potential_based(reward: float, phi: float, phi_next: float, gamma: float, terminated: bool) -> float:
    """r + gamma Phi(s') - Phi(s), Phi(terminal) = 0: keeps the optimal policy (policy-invariant)."""
    return reward + gamma * (0.0 if terminated else phi_next) - phi


@SHAPINGS.decorator("delta")
def naive_delta(reward: float, phi: float, phi_next: float, gamma: float, terminated: bool) -> float:
    """Phi(s') - Phi(s) alone, without the task reward: not policy-invariant (the semantic trap)."""
    return phi_next - phi


@SHAPINGS.decorator("kagi")
def dense_when_sparse_is_zero(reward: float, phi: float, phi_next: float, gamma: float, terminated: bool) -> float:
    """KAGI's rule: the task reward when it is non-zero, else the dense potential Phi(s'): not policy-invariant."""
    return reward if reward != 0 else phi_next


@SHAPINGS.decorator("none")
def unshaped(reward: float, phi: float, phi_next: float, gamma: float, terminated: bool) -> float:
    """The task reward as it is."""
    return reward
