"""Potential-based reward shaping over stored episodes (Ng et al. 1999).

r'_t = r_t + gamma * Phi(s_{t+1}) - Phi(s_t), with Phi of a true terminal state taken as 0 and
nothing zeroed at a time-limit truncation. Phi is computed once per stored frame, so the shaped
return telescopes exactly.

Also: Phi from a reward model's output (`PotentialConfig`, `potential`: a weighted mix of progress,
success probability and named per-frame arrays, with an optional ensemble-uncertainty penalty), and
the per-transition shapings learners use (`SHAPINGS`: pbrs, and for comparison the non-invariant
naive delta and KAGI rules).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from headway.errors import HeadwayError
from headway.registry import Registry
from headway.reward.interface import RewardOutput


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


# -- potentials from a reward model's output -------------------------------------------------------
@dataclass
class PotentialConfig:
    """How Phi is built from a reward model's per-frame scores.

    Phi = progress_weight * progress + success_weight * success probability
          + sum over `keypoints` of weight * that named per-frame array (keypoint potentials, when a
            keypoint model supplies them)
          - uncertainty_penalty * ensemble spread.
    The uncertainty penalty is off by default (0). It lowers Phi where the model's ensemble disagrees
    (a lower confidence bound), which damps reward hacking of states the model is unsure about; since it
    stays inside Phi, potential-based shaping with it is still policy-invariant.
    """

    progress_weight: float = 1.0
    success_weight: float = 0.0
    keypoints: dict[str, float] = field(default_factory=dict)
    uncertainty_penalty: float = 0.0

    def __post_init__(self) -> None:
        weights = {"progress_weight": self.progress_weight, "success_weight": self.success_weight}
        weights.update({f"keypoints[{name!r}]": w for name, w in self.keypoints.items()})
        weights["uncertainty_penalty"] = self.uncertainty_penalty
        for name, value in weights.items():
            if not np.isfinite(value):
                raise HeadwayError(f"potential weight {name} is {value}; give a finite number")
        if self.uncertainty_penalty < 0:
            raise HeadwayError(
                f"uncertainty_penalty must be >= 0 (it subtracts the ensemble spread), got {self.uncertainty_penalty}"
            )
        if self.progress_weight == 0 and self.success_weight == 0 and not any(self.keypoints.values()):
            raise HeadwayError("every potential weight is 0, so Phi would be constant; give progress or success a weight")

    @classmethod
    def mix(cls, success_weight: float = 0.0, uncertainty_penalty: float = 0.0) -> PotentialConfig:
        """The RL rewards' form, Phi = (1 - w) progress + w success - k uncertainty, with w in [0, 1]."""
        if not 0.0 <= success_weight <= 1.0:
            raise HeadwayError(f"success weight of the potential must be in [0, 1], got {success_weight}")
        return cls(progress_weight=1.0 - success_weight, success_weight=success_weight, uncertainty_penalty=uncertainty_penalty)


def check_present(output: RewardOutput, success_weight: float, uncertainty_penalty: float) -> None:
    """Refuse a potential that weights an output the reward model does not produce (`output.absent`)."""
    absent = getattr(output, "absent", frozenset())
    for field, weight in (("success", success_weight), ("uncertainty", uncertainty_penalty)):
        if weight and field in absent:
            raise HeadwayError(
                f"the potential weights {field} ({weight}) but this reward model does not produce it "
                f"(absent: {', '.join(sorted(absent))}); set that weight to 0"
            )


def potential(
    output: RewardOutput,
    config: PotentialConfig | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
    finite: bool = True,
) -> np.ndarray:
    """Phi per frame (float64, shape (T,)) from a RewardOutput, mixed as `config` says; the one place
    a potential is assembled (labels, the RL rewards and their batched scorer all call it).

    `extra` holds the named per-frame arrays the config's `keypoints` weights refer to. Compute this
    once per stored frame and reuse it (a Phi recomputed with noise breaks the telescoping sum).
    `finite=False` returns NaN as it is, for callers that report it themselves (the RL loops name the
    env step and keep their last good checkpoint).
    """
    config = config or PotentialConfig()
    length = int(np.size(output.progress))
    check_present(output, config.success_weight, config.uncertainty_penalty)
    phi = config.progress_weight * np.asarray(output.progress, dtype=np.float64).reshape(length)
    if config.success_weight:
        phi = phi + config.success_weight * np.asarray(output.success, dtype=np.float64).reshape(length)
    extra = extra or {}
    for name, weight in config.keypoints.items():
        if name not in extra:
            raise HeadwayError(
                f"potential weight for {name!r} given but no per-frame array of that name; "
                f"available: {', '.join(sorted(extra)) or 'none'}. Pass it in `extra` or drop the weight"
            )
        values = np.asarray(extra[name], dtype=np.float64)
        if values.shape != (length,):
            raise HeadwayError(f"per-frame array {name!r} has shape {values.shape}; expected ({length},), one value per frame")
        phi = phi + weight * values
    if config.uncertainty_penalty:
        phi = phi - config.uncertainty_penalty * np.asarray(output.uncertainty, dtype=np.float64).reshape(length)
    if finite and not np.isfinite(phi).all():
        frame = int(np.flatnonzero(~np.isfinite(phi))[0])
        raise HeadwayError(f"potential is NaN or infinite at frame {frame}; the reward model produced a bad score")
    return phi


def shaped_rewards(
    potentials: np.ndarray,
    rewards: np.ndarray | None = None,
    gamma: float = 0.99,
    terminated: bool = False,
    shaping: str = "pbrs",
) -> np.ndarray:
    """Per-frame rewards of one stored episode under any registered shaping (for comparisons).

    Same frame conventions as `potential_based_rewards`: the last frame's next state is the terminal
    state (Phi = 0 for pbrs) when `terminated`; otherwise it was never stored and the last transition
    gets only its task reward.
    """
    function = SHAPINGS.get(shaping)
    potentials, rewards = _check(potentials, rewards, gamma)
    following = np.append(potentials[1:], 0.0)
    out = np.empty(len(potentials))
    for t in range(len(potentials)):
        last = t == len(potentials) - 1
        if last and not terminated:
            out[t] = rewards[t]
        else:
            out[t] = function(float(rewards[t]), float(potentials[t]), float(following[t]), gamma, last and terminated)
    return out.astype(np.float32)
