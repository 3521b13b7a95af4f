"""Scoring an episode recorded at another frame rate than the reward model was trained at.

The stage model reads a causal window of every `stride`-th frame, so the window's span in seconds
is fixed by the training data's frame rate. A 30 fps LeRobot recording scored frame by frame with a
20 fps model would show it 1.5x too little of the past. `score_recorded` therefore shows the model
the episode at the model's own rate (for each of its frame times, the latest recorded frame at or
before it) and gives every recorded frame the score of the latest model frame at or before it, so
the output keeps the episode's length and stays causal.
"""

from __future__ import annotations

import numpy as np

from headway.reward.interface import RewardOutput

EPS = 1e-9  # frame times that are whole multiples must not round down


def model_frame_rate(model) -> float | None:
    """The frame rate a model was trained at, or None for models without one (zero-shot, keypoint)."""
    fps = getattr(getattr(model, "config", None), "fps", None)
    return float(fps) if fps else None


def resample_indices(length: int, source_fps: float, target_fps: float, nearest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(picks, held): the source frame shown at each target frame time (the latest at or before it;
    with `nearest`, the nearest, for simulating a recording rather than scoring causally), and for
    each source frame the latest target frame at or before it."""
    if length < 1 or source_fps <= 0 or target_fps <= 0:
        raise ValueError(f"need a non-empty episode and positive frame rates, got {length} frames, {source_fps} -> {target_fps} fps")
    count = int(np.floor((length - 1) * target_fps / source_fps + EPS)) + 1
    times = np.arange(count) * source_fps / target_fps  # in source frames
    picks = np.minimum((np.floor(times + 0.5) if nearest else np.floor(times + EPS)).astype(np.int64), length - 1)
    held = np.minimum(np.floor(np.arange(length) * target_fps / source_fps + EPS).astype(np.int64), count - 1)
    return picks, held


def score_recorded(
    model, images: dict[str, np.ndarray], task: str, state: np.ndarray | None = None, batch_size: int = 256, fps: float | None = None
) -> RewardOutput:
    """`model.score_episode` for an episode recorded at `fps`, seen at the model's own frame rate.

    Models that transform episodes themselves (`ShiftedModel`) define `score_recorded` and get the
    call; models without a frame rate, or an `fps` of None, score the frames as given."""
    if hasattr(model, "score_recorded"):
        return model.score_recorded(images, task, state, batch_size, fps)
    rate = model_frame_rate(model)
    if rate is None or fps is None or abs(rate - fps) < 1e-6:
        return model.score_episode(images, task, state, batch_size)
    length = len(next(iter(images.values())))
    picks, held = resample_indices(length, fps, rate)
    output = model.score_episode({v: f[picks] for v, f in images.items()}, task, None if state is None else state[picks], batch_size)
    return output.take(held)


class StreamAtModelRate:
    """A streaming scorer for a control loop at `fps` whose model was trained at `model_fps`: each
    tick advances the model through every model frame time reached since the last tick (none when
    the loop is faster, several when slower), each shown the latest frame at or before it, so a
    live episode scores as `score_recorded` scores its recording."""

    def __init__(self, scorer, fps: float, model_fps: float) -> None:
        if fps <= 0 or model_fps <= 0:
            raise ValueError(f"frame rates must be positive, got {fps} and {model_fps}")
        self.scorer, self.fps, self.model_fps = scorer, float(fps), float(model_fps)
        self.reset()

    def reset(self) -> None:
        self.scorer.reset()
        self.tick, self.scored = 0, 0
        self.previous: tuple | None = None
        self.last: RewardOutput | None = None

    def step(self, images: dict[str, np.ndarray], state: np.ndarray | None = None) -> RewardOutput:
        due = int(np.floor(self.tick * self.model_fps / self.fps + EPS)) + 1
        while self.scored < due:
            shown = int(np.floor(self.scored * self.fps / self.model_fps + EPS))  # this tick or the one before
            frame = (images, state) if shown == self.tick else self.previous
            self.last = self.scorer.step(*frame)
            self.scored += 1
        self.previous = (images, state)
        self.tick += 1
        return self.last


def stream_at_rate(model, task: str, fps: float):
    """`model.stream(task)` for a loop at `fps`, adapted to the model's own frame rate when it differs."""
    scorer = model.stream(task)
    rate = model_frame_rate(model)
    if rate is None or abs(rate - fps) < 1e-6:
        return scorer
    return StreamAtModelRate(scorer, fps, rate)
