"""The one protocol every headway reward model implements.

Labelling, shaping, RL and the rollout controller hold a `RewardModel` and never care which kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class RewardOutput:
    """Per-frame scores of an episode (or of one step, with T = 1)."""

    progress: np.ndarray  # (T,) normalised task progress in [0, 1]
    stage: np.ndarray  # (T,) most likely stage index
    stage_probs: np.ndarray  # (T, K)
    success: np.ndarray  # (T,) probability the task has succeeded
    uncertainty: np.ndarray  # (T,) spread of the ensemble's progress (0 for a single model)
    # outputs this model does not produce (e.g. {"stage", "success"}): their arrays hold -1 / NaN /
    # zero-width placeholders that no consumer may read as scores
    absent: frozenset = frozenset()

    def __len__(self) -> int:
        return int(self.progress.shape[0])

    def _fields(self) -> tuple[np.ndarray, ...]:
        return (self.progress, self.stage, self.stage_probs, self.success, self.uncertainty)

    def take(self, indices: np.ndarray) -> RewardOutput:
        """The frames at `indices` (e.g. each recorded frame's latest scored frame)."""
        return RewardOutput(*(column[indices] for column in self._fields()), absent=self.absent)

    @staticmethod
    def progress_only(progress: np.ndarray, success: np.ndarray | None = None, absent: frozenset | None = None) -> RewardOutput:
        """Progress (and success, if given) with placeholders for every other output, marked absent."""
        progress = np.asarray(progress)
        count = len(progress)
        missing = {"stage", "uncertainty"} | ({"success"} if success is None else set())
        return RewardOutput(
            progress=progress, stage=np.full(count, -1, np.int64), stage_probs=np.zeros((count, 0), np.float32),
            success=np.full(count, np.nan, np.float32) if success is None else success,
            uncertainty=np.full(count, np.nan, np.float32), absent=frozenset(missing) if absent is None else absent,
        )

    @staticmethod
    def concatenate(parts: list[RewardOutput]) -> RewardOutput:
        absent = frozenset().union(*(p.absent for p in parts))
        return RewardOutput(*(np.concatenate(column) for column in zip(*(p._fields() for p in parts))), absent=absent)


@runtime_checkable
class StreamingScorer(Protocol):
    """Scores one multi-view observation at a time, from the past and present only."""

    def step(self, images: dict[str, np.ndarray], state: np.ndarray | None = None) -> RewardOutput: ...

    def reset(self) -> None: ...


@runtime_checkable
class RewardModel(Protocol):
    """A process reward model over camera views."""

    @property
    def views(self) -> tuple[str, ...]: ...

    @property
    def stage_names(self) -> tuple[str, ...]: ...

    @property
    def image_size(self) -> int: ...

    def score_episode(
        self,
        images: dict[str, np.ndarray],
        task: str,
        state: np.ndarray | None = None,
        batch_size: int = 256,
    ) -> RewardOutput:
        """Score every frame of an episode (views -> (T, H, W, 3) uint8), causally."""
        ...

    def stream(self, task: str) -> StreamingScorer:
        """A scorer for a live episode of `task`."""
        ...

    def save(self, path: Path) -> None: ...
