"""Labelling's per-episode work: score one decoded episode with a reward model and stage the
result as one file (atomic), decoding the next episode in a thread meanwhile. The Ray scorer
(headway/reward/ray_labelling.py) stages the same files with the same functions."""

from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from headway.atomic import atomic_write_bytes
from headway.datasets.reader import DatasetReader, Episode
from headway.errors import HeadwayError
from headway.perception.preprocess import resize_frames
from headway.reward.frame_rate import score_recorded


def episode_file(partial: Path, index: int) -> Path:
    return partial / "episodes" / f"episode_{index:06d}.npz"


def _outcome(episode: Episode) -> int:
    """1 success, 0 failure, -1 unknown: headway's episode outcome, else the recorded `next.success`."""
    if episode.outcome is not None:
        return int(episode.outcome.success)
    success = episode.arrays.get("next.success")
    if success is not None and len(success):
        return int(bool(np.asarray(success, dtype=bool).any()))
    return -1


def _terminated(episode: Episode) -> bool:
    """The last frame is a true success terminal (next.done and next.success), not a truncation."""
    done, success = episode.arrays.get("next.done"), episode.arrays.get("next.success")
    if done is None or success is None or not len(done):
        return False
    return bool(np.asarray(done, dtype=bool)[-1] and np.asarray(success, dtype=bool)[-1])


def _check_state(episode: Episode) -> np.ndarray | None:
    state = episode.state
    if state is None:
        return None
    state = np.asarray(state, dtype=np.float64)
    bad = ~np.isfinite(state.reshape(len(state), -1)).all(axis=1)
    if bad.any():
        raise HeadwayError(
            f"episode {episode.index}: observation.state is NaN or infinite at frame {int(np.flatnonzero(bad)[0])}; "
            "fix the recording, or leave the episode out with --episodes"
        )
    return state


def score_episode(model, episode: Episode, mapping: dict[str, str], batch_size: int) -> dict[str, np.ndarray]:
    state = _check_state(episode)
    images = {view: resize_frames(episode.images[key], model.image_size) for view, key in mapping.items()}
    output = score_recorded(model, images, episode.task, state, batch_size, episode.fps)
    if len(output) != episode.length:
        raise HeadwayError(f"episode {episode.index}: the model returned {len(output)} scores for {episode.length} frames")
    bad = np.flatnonzero(~np.isfinite(np.asarray(output.progress, dtype=np.float64)))
    if len(bad):
        raise HeadwayError(f"episode {episode.index}: the model gave no usable progress for frame {bad[0]} "
                           f"({len(bad)} frames); RA-BC statistics cannot include it")
    index = episode.arrays.get("index")
    frame_index = episode.arrays.get("frame_index")
    reward = episode.arrays.get("next.reward")
    return {
        "index": np.asarray(index, dtype=np.int64),
        "frame_index": np.asarray(frame_index if frame_index is not None else np.arange(episode.length), dtype=np.int64),
        "progress": np.asarray(output.progress, dtype=np.float32),
        "stage": np.asarray(output.stage, dtype=np.int64),
        "stage_probs": np.asarray(output.stage_probs, dtype=np.float32),
        "success": np.asarray(output.success, dtype=np.float32),
        "uncertainty": np.asarray(output.uncertainty, dtype=np.float32),
        "task_reward": np.zeros(episode.length) if reward is None else np.asarray(reward, dtype=np.float64).reshape(-1),
        "terminated": np.asarray(_terminated(episode)),
        "outcome": np.asarray(_outcome(episode)),
    }


def stage_scores(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_staged(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


class _Prefetcher:
    """Decodes the next episode in a background thread while the current one is scored."""

    def __init__(self, reader: DatasetReader, episodes: list[int], views: list[str]) -> None:
        self.reader, self.episodes, self.views = reader, episodes, views
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="headway-decode")
        self.pending: Future | None = None
        self.position = 0

    def _submit(self) -> None:
        if self.position < len(self.episodes):
            index = self.episodes[self.position]
            self.pending = self.pool.submit(self.reader.episode, index, self.views)
            self.position += 1
        else:
            self.pending = None

    def __iter__(self):
        self._submit()
        while self.pending is not None:
            episode = self.pending.result()
            self._submit()  # decode the next while the caller scores this one
            yield episode

    def close(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


def score_episodes(reader, model, mapping, todo: list[int], partial: Path, batch_size: int, progress: bool) -> int:
    """Decode (one episode ahead, in a thread), score and stage each episode in `todo`. Returns frames scored."""
    from tqdm import tqdm

    if not todo:
        return 0
    total = sum(reader.episode_length(e) for e in todo)
    prefetch = _Prefetcher(reader, todo, list(mapping.values()))
    bar = tqdm(total=total, unit="frame", desc="labelling", disable=not progress, dynamic_ncols=True)
    try:
        for episode in prefetch:
            stage_scores(episode_file(partial, episode.index), score_episode(model, episode, mapping, batch_size))
            bar.update(episode.length)
    finally:
        prefetch.close()
        bar.close()
    return total
