"""Training targets from subtask annotations, with SARM's formulas, and loud failures on bad labels.

Per frame: stage k and within-stage progress tau = (t - s_k) / (e_k - s_k) clipped to [0, 1];
before the first subtask stage 0 with tau 0; in a gap, the previous stage with tau 1.
Normalised progress = P_{k-1} + alpha_k * tau with the dataset prior alpha (stage proportions).
An unfinished episode's tail (after its last annotated stage) is on the next stage with tau 0; where
the collection recorded what the scene showed (simulation), a tail whose scene fell back -- a dropped
cube, a gripper that left the object -- follows the scene down, since annotations cannot go backwards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from headway.errors import HeadwayError
from headway.stages import Subtask


class LabelError(HeadwayError):
    """An episode's annotations cannot give training targets."""


@dataclass(frozen=True)
class StagePrior:
    """Stage names in task order and their share of the task (sums to 1)."""

    names: tuple[str, ...]
    proportions: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.names or len(self.names) != len(self.proportions):
            raise LabelError(f"a stage prior needs one proportion per stage, got {self.names} / {self.proportions}")
        if any(not math.isfinite(p) or p <= 0 for p in self.proportions):
            raise LabelError(f"stage proportions must be positive and finite, got {dict(zip(self.names, self.proportions))}")
        if abs(sum(self.proportions) - 1.0) > 1e-6:
            raise LabelError(f"stage proportions sum to {sum(self.proportions)}, not 1")

    @classmethod
    def from_mapping(cls, proportions: Mapping[str, float]) -> StagePrior:
        total = sum(proportions.values())
        return cls(tuple(proportions), tuple(float(v) / total for v in proportions.values()))

    @classmethod
    def equal(cls, names: Sequence[str]) -> StagePrior:
        """Every stage the same share (Robo-Dopamine's step-wise discretisation)."""
        return cls(tuple(names), tuple(1.0 / len(names) for _ in names))

    @property
    def cumulative(self) -> np.ndarray:
        """P_0 = 0, P_k = alpha_1 + ... + alpha_k (length K + 1)."""
        return np.concatenate([[0.0], np.cumsum(self.proportions)])

    def progress(self, stage: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Normalised task progress in [0, 1] from stage indices and within-stage progress."""
        stage = np.asarray(stage, dtype=np.int64)
        alpha = np.asarray(self.proportions)
        return (self.cumulative[stage] + alpha[stage] * np.clip(tau, 0.0, 1.0)).astype(np.float32)

    def stage_and_tau(self, progress: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of `progress`: which stage a progress value falls in, and how far through it."""
        progress = np.clip(np.asarray(progress, dtype=np.float64), 0.0, 1.0)
        stage = np.clip(np.searchsorted(self.cumulative, progress, side="right") - 1, 0, len(self.names) - 1)
        tau = (progress - self.cumulative[stage]) / np.asarray(self.proportions)[stage]
        return stage.astype(np.int64), np.clip(tau, 0.0, 1.0).astype(np.float32)


def validate_subtasks(subtasks: Sequence[Subtask], length: int, stage_names: Sequence[str], episode: int) -> None:
    """Reject annotations that would silently give wrong targets; the message names the episode."""
    where = f"episode {episode}"
    order = {name: k for k, name in enumerate(stage_names)}
    previous_end, previous_stage = -1, -1
    for subtask in subtasks:
        if subtask.name not in order:
            raise LabelError(f"{where}: stage {subtask.name!r} is not one of the task's stages {list(stage_names)}")
        for value in (subtask.start, subtask.end):
            if value is None or not math.isfinite(float(value)):
                raise LabelError(f"{where}: stage {subtask.name!r} has a missing or NaN frame ({subtask.start}, {subtask.end})")
            if not 0 <= value < length:
                raise LabelError(f"{where}: stage {subtask.name!r} frame {value} is outside the episode (0-{length - 1})")
        if subtask.end < subtask.start:
            raise LabelError(f"{where}: stage {subtask.name!r} ends (frame {subtask.end}) before it starts ({subtask.start})")
        if order[subtask.name] <= previous_stage:
            raise LabelError(f"{where}: stages are out of task order or repeated at {subtask.name!r}")
        if subtask.start <= previous_end:
            raise LabelError(f"{where}: stage {subtask.name!r} starts at frame {subtask.start}, overlapping the previous one")
        previous_end, previous_stage = subtask.end, order[subtask.name]


def stage_targets(
    subtasks: Sequence[Subtask] | None,
    length: int,
    stage_names: Sequence[str],
    episode: int,
    prior: StagePrior | None = None,
    linear_if_missing: bool = False,
    scene: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (stage index, tau) for one episode.

    `subtasks` None means the episode was never annotated: an error unless `linear_if_missing`,
    which uses progress linear in time (mapped to stages through `prior`). An empty list is an
    annotation saying no stage was achieved (all frames stage 0, tau 0). `scene` (per-frame stage
    and tau the scene showed) lowers an unfinished episode's tail wherever the scene fell below it.
    """
    if length < 1:
        raise LabelError(f"episode {episode} is empty")
    if subtasks is None:
        if not linear_if_missing:
            raise LabelError(
                f"episode {episode} has no stage annotations; annotate it, drop it, or ask for "
                "linear-in-time targets (--linear-targets)"
            )
        if prior is None:
            raise LabelError("linear-in-time targets need the dataset's stage prior")
        return prior.stage_and_tau(np.linspace(0.0, 1.0, length))
    validate_subtasks(subtasks, length, stage_names, episode)
    order = {name: k for k, name in enumerate(stage_names)}
    stage = np.zeros(length, dtype=np.int64)
    tau = np.zeros(length, dtype=np.float32)
    frames = np.arange(length)
    for subtask in subtasks:
        k = order[subtask.name]
        inside = (frames >= subtask.start) & (frames <= subtask.end)
        span = max(subtask.end - subtask.start, 1)
        stage[inside] = k
        tau[inside] = np.clip((frames[inside] - subtask.start) / span, 0.0, 1.0)
        after = frames > subtask.end  # gaps: this stage, complete, until the next one starts
        stage[after] = k
        tau[after] = 1.0
    last = order[subtasks[-1].name] if subtasks else len(stage_names) - 1
    if last < len(stage_names) - 1:
        # An unfinished episode's tail is on the next stage with none of it done: the same progress
        # as "previous stage complete", and the stage head learns what a stuck robot is attempting.
        tail = frames > subtasks[-1].end
        stage[tail] = last + 1
        tau[tail] = 0.0
        if scene is not None:
            scene_stage, scene_tau = _checked_scene(scene, length, len(stage_names), episode)
            lower = tail & ((scene_stage < stage) | ((scene_stage == stage) & (scene_tau < tau)))
            stage[lower] = scene_stage[lower]
            tau[lower] = scene_tau[lower]
    return stage, tau


def _checked_scene(scene: tuple[np.ndarray, np.ndarray], length: int, stages: int, episode: int) -> tuple[np.ndarray, np.ndarray]:
    scene_stage, scene_tau = (np.asarray(a).reshape(-1) for a in scene)
    if scene_stage.shape != (length,) or scene_tau.shape != (length,):
        raise LabelError(f"episode {episode}: the recorded scene stages have {scene_stage.size} frames, the episode {length}")
    if np.any((scene_stage < 0) | (scene_stage >= stages)) or not np.all(np.isfinite(scene_tau)):
        raise LabelError(f"episode {episode}: recorded scene stages are outside 0-{stages - 1} or NaN")
    return scene_stage.astype(np.int64), np.clip(scene_tau, 0.0, 1.0).astype(np.float32)
