"""Episodes held in memory with their SARM targets, and the segment sampler that builds training batches.

A training sample is a short segment of one episode (plus its first frame): every frame in it is
encoded once and serves every window that ends inside the segment, which makes training several
times cheaper than encoding each window on its own. Augmentations as SARM: rewind (frames played
backwards with their earlier targets) and mismatched task text (target: no progress).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from headway.datasets.reader import DatasetReader
from headway.errors import HeadwayError
from headway.perception.preprocess import resize_frames
from headway.reward.labels import StagePrior, stage_targets
from headway.reward.stage_model import window_indices
from headway.reward.task_text import paraphrases
from headway.stages import Subtask

# Instructions used as mismatched-task negatives when the data has a single task.
NEGATIVE_TASKS = (
    "open the drawer",
    "wipe the table",
    "fold the towel",
    "push the button",
    "pour water into the cup",
    "put the lid on the pot",
    "stack the red cube on the green cube",
    "put the can in its bin",
    "open the door",
    "pick up the red cube and lift it",
)


@dataclass
class EpisodeData:
    task: str
    frames: torch.Tensor  # (T, V, 3, H, W) uint8 frames, or (T, V, E) cached features of a frozen encoder

    present: torch.Tensor  # (V,) bool: views this episode has
    stage: np.ndarray  # (T,)
    tau: np.ndarray  # (T,)
    progress: np.ndarray  # (T,)
    success: np.ndarray  # (T,) has the task succeeded by this frame


def episode_success_targets(
    subtasks: list[Subtask] | None, length: int, stage_count: int, succeeded: bool | None, next_success: np.ndarray | None
) -> np.ndarray:
    """Per frame: has the task succeeded by now (and stays so)?

    From the recorded `next.success` signal when the dataset has one (success visible from the
    frame after it), else from the annotations: from the end of the last stage of a complete episode.
    """
    targets = np.zeros(length, dtype=np.float32)
    if succeeded is False:
        return targets
    if next_success is not None:
        done = np.asarray(next_success, dtype=bool).reshape(-1)
        if done.size and done[-1]:
            failures = np.flatnonzero(~done)
            targets[min(int(failures[-1]) + 2 if failures.size else 0, length - 1) :] = 1.0
        return targets
    if subtasks is not None and len(subtasks) == stage_count:
        targets[subtasks[-1].end :] = 1.0
    return targets


def dataset_stage_names(readers: list[DatasetReader]) -> tuple[str, ...]:
    """The stage names shared by every dataset (from headway's card or the SARM proportions file)."""
    names = None
    for reader in readers:
        card_stages = reader.card().get("stages")
        proportions = reader.stage_proportions()
        these = tuple(card_stages) if card_stages else tuple(proportions or ())
        if not these:
            raise HeadwayError(
                f"{reader.root} has no stage list (meta/temporal_proportions_sparse.json); annotate it with stages first"
            )
        if names is not None and these != names:
            raise HeadwayError(f"datasets disagree on the task stages: {list(names)} vs {list(these)} ({reader.root})")
        names = these
    return names


def load_episodes(
    roots: list[Path],
    views: tuple[str, ...],
    image_size: int,
    stage_names: tuple[str, ...],
    prior: StagePrior,
    linear_if_missing: bool = False,
    progress: bool = True,
    features: Callable[[DatasetReader, int, str], np.ndarray] | None = None,
) -> list[EpisodeData]:
    """Every episode of `roots` in memory with its targets (errors name the bad episode).

    With `features` (reader, episode, view) -> (T, E), a frozen encoder's cached features stand
    in for the frames and no video is decoded.
    """
    episodes = []
    for root in roots:
        reader = DatasetReader(root)
        have = [v for v in views if v in reader.views]
        if not have:
            raise HeadwayError(f"{root} has none of the model's views {list(views)}; its cameras: {reader.views}")
        for index in tqdm(range(reader.num_episodes), desc=f"load {Path(root).name}", disable=not progress):
            episode = reader.episode(index, views=have, decode=features is None)
            where = f"{root} episode {index}"
            try:
                stage, tau = stage_targets(
                    episode.subtasks, episode.length, stage_names, index, prior, linear_if_missing, episode.scene
                )
            except HeadwayError as error:
                raise type(error)(f"{root}: {error}") from None
            if features is not None:
                per_view = {v: np.asarray(features(reader, index, v)) for v in have}
                frames = _stack_views(per_view, views, torch.float16)
            else:
                per_view = {v: resize_frames(episode.images[v], image_size).transpose(0, 3, 1, 2) for v in have}
                frames = _stack_views(per_view, views, torch.uint8)
            state = episode.state
            if state is not None and not np.all(np.isfinite(state)):
                raise HeadwayError(f"{where}: observation.state has NaN or inf")
            succeeded = episode.outcome.success if episode.outcome else None
            episodes.append(
                EpisodeData(
                    task=episode.task,
                    frames=frames,
                    present=torch.tensor([v in have for v in views]),
                    stage=stage,
                    tau=tau,
                    progress=prior.progress(stage, tau),
                    success=episode_success_targets(
                        episode.subtasks, episode.length, len(stage_names), succeeded, episode.arrays.get("next.success")
                    ),
                )
            )
    if not episodes:
        raise HeadwayError(f"no episodes in {[str(r) for r in roots]}")
    return episodes


def _stack_views(per_view: dict[str, np.ndarray], views: tuple[str, ...], dtype: torch.dtype) -> torch.Tensor:
    """(T, V, ...) in model view order, zeros where the episode lacks a view."""
    sample = next(iter(per_view.values()))
    stacked = torch.zeros(sample.shape[0], len(views), *sample.shape[1:], dtype=dtype)
    for slot, view in enumerate(views):
        if view in per_view:
            stacked[:, slot] = torch.from_numpy(np.ascontiguousarray(per_view[view])).to(dtype)
    return stacked


@dataclass
class Batch:
    frames: torch.Tensor  # (N, V, 3, H, W) uint8: every frame the batch needs, once
    frame_segment: torch.Tensor  # (N,) which of the batch's segments each frame belongs to
    present: torch.Tensor  # (N, V) bool
    windows: torch.Tensor  # (P, W+1) indices into frames
    valid: torch.Tensor  # (P, W+1) bool
    times: torch.Tensor  # (P, W+1) seconds
    tasks: list[str]  # (P,)
    stage: torch.Tensor  # (P,)
    tau: torch.Tensor
    progress: torch.Tensor
    success: torch.Tensor
    matched: torch.Tensor  # (P,) bool: task text is the episode's own


class SegmentSampler:
    """Draws batches of episode segments with SARM's augmentations and random view dropout."""

    def __init__(
        self,
        episodes: list[EpisodeData],
        window: int,
        fps: float,
        stride: int = 1,
        segment: int = 24,
        rewind_prob: float = 0.8,
        mismatch_prob: float = 0.2,
        view_dropout: float = 0.3,
        seed: int = 0,
        paraphrase_prob: float = 0.0,
        time_warp: float = 0.0,
    ) -> None:
        self.episodes = episodes
        self.time_warp = time_warp
        self.window = window
        self.stride = stride
        self.fps = fps
        self.segment = segment
        self.rewind_prob = rewind_prob
        self.mismatch_prob = mismatch_prob
        self.view_dropout = view_dropout
        self.rng = np.random.default_rng(seed)
        own = sorted({e.task for e in episodes})
        # a paraphrase is the same task: it is never a mismatched negative
        self.paraphrase_prob = paraphrase_prob
        self.paraphrases = {task: paraphrases(task) for task in own}
        said = {p for ps in self.paraphrases.values() for p in ps}
        self.negatives = [t for t in NEGATIVE_TASKS if t not in own and t not in said] + own

    def sample(self, segments: int) -> Batch:
        frames, present, rows, frame_segment = [], [], [], []
        offset = 0
        for segment_index in range(segments):
            episode = self.episodes[int(self.rng.integers(len(self.episodes)))]
            stride = self._segment_stride()
            sequence, times = self._sequence(len(episode.stage), stride)
            view_mask = self._view_mask(episode.present)
            chosen = np.concatenate([[0], sequence])  # slot 0 of the list: the episode's first frame
            frames.append(episode.frames[torch.from_numpy(chosen)])
            frame_segment.append(torch.full((len(chosen),), segment_index))
            present.append(view_mask.expand(len(chosen), -1))
            task, matched = episode.task, True
            if self.rng.random() < self.mismatch_prob:
                others = [t for t in self.negatives if t != episode.task and t not in self.paraphrases.get(episode.task, ())]
                task, matched = str(self.rng.choice(others)), False
            elif self.paraphrase_prob > 0 and self.paraphrases.get(task) and self.rng.random() < self.paraphrase_prob:
                task = str(self.rng.choice(self.paraphrases[task]))
            nothing_before = sequence[0] < stride  # no earlier frame on this segment's stride
            # windows over the segment's own positions, which are one window slot apart; slot 0 is the first frame
            positions, valid = window_indices(np.arange(len(sequence)), self.window)
            slots = np.where(valid, positions + 1, 0)
            slots[:, 0] = 0
            slot_times = np.where(valid, times[positions], 0.0)
            slot_times[:, 0] = 0.0
            for position in range(len(sequence)):
                if position < self.window - 1 and not nothing_before:
                    continue  # its window would reach before the segment: not what inference sees
                frame = sequence[position]
                rows.append(
                    (
                        slots[position] + offset,
                        valid[position],
                        slot_times[position],
                        task,
                        matched,
                        (episode.stage[frame], episode.tau[frame], episode.progress[frame], episode.success[frame]),
                    )
                )
            offset += len(chosen)
        slots, valid, times, tasks, matched, targets = zip(*rows)
        stage, tau, progress, success = (np.array(column) for column in zip(*targets))
        matched_array = np.array(matched)
        return Batch(
            frames=torch.cat(frames),
            frame_segment=torch.cat(frame_segment),
            present=torch.cat(present),
            windows=torch.from_numpy(np.stack(slots)),
            valid=torch.from_numpy(np.stack(valid)),
            times=torch.from_numpy(np.stack(times)).float(),
            tasks=list(tasks),
            stage=torch.from_numpy(np.where(matched_array, stage, 0)).long(),
            tau=torch.from_numpy(np.where(matched_array, tau, 0.0)).float(),
            progress=torch.from_numpy(np.where(matched_array, progress, 0.0)).float(),
            success=torch.from_numpy(np.where(matched_array, success, 0.0)).float(),
            matched=torch.from_numpy(matched_array),
        )

    def _segment_stride(self) -> int:
        """The model's stride, or with `time_warp` a stride scaled as a faster or slower robot would
        look at the model's frame rate."""
        if self.time_warp <= 0:
            return self.stride
        factor = float(np.exp(self.rng.uniform(-1.0, 1.0) * np.log1p(self.time_warp)))
        return max(1, round(self.stride * factor))

    def _sequence(self, length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame indices of a segment, every `stride` frames (maybe ending with a rewind), and their
        elapsed times in seconds: consecutive positions are one window slot apart, as at inference."""
        # The end is drawn past the episode's last frame too, and such a segment slides back to end
        # on the last frame of its phase: otherwise a frame is scored only by segments ending at or
        # after it, and an episode's final frames (its outcome) would be trained on 5-15x less often
        # than its first ones.
        end = int(self.rng.integers(length + stride * max(self.segment - self.window, 0)))
        if end >= length:
            end -= stride * -(-(end - length + 1) // stride)
            if end < 0:  # an episode shorter than the stride has no frame of this phase
                end = length - 1
        start = end - stride * (self.segment - 1)
        if start < 0:
            start = end % stride
        sequence = np.arange(start, end + 1, stride)
        if self.rng.random() < self.rewind_prob and end > 0:
            back = int(self.rng.integers(1, 5))
            sequence = np.concatenate([sequence, np.maximum(end - stride * np.arange(1, back + 1), 0)])
        times = (start + stride * np.arange(len(sequence))) / self.fps  # time goes on while the video rewinds
        return sequence, times

    def _view_mask(self, present: torch.Tensor) -> torch.Tensor:
        available = torch.nonzero(present).flatten().tolist()
        mask = present.clone()
        if len(available) > 1 and self.rng.random() < self.view_dropout:
            keep = self.rng.choice(available, size=int(self.rng.integers(1, len(available))), replace=False)
            mask[:] = False
            mask[torch.as_tensor(keep)] = True
        return mask[None]
