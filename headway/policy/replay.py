"""Replay buffers: online transitions with true-terminal flags, and demonstrations from a LeRobot dataset.

A transition stores `terminated` only for true terminals (task success when the env terminates on
success); a time-limit truncation is stored as an ordinary transition (terminated = 0), so the
learner bootstraps from the next state. `mixed_batch` draws half of each batch from the
demonstrations and half from online experience, as RLPD does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from headway.errors import HeadwayError

FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


class ReplayBuffer:
    """A fixed-capacity ring buffer of (obs, action, reward, next_obs, terminated)."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int) -> None:
        if capacity < 1:
            raise HeadwayError(f"replay capacity must be positive, got {capacity}")
        self.capacity, self.obs_dim, self.action_dim = int(capacity), obs_dim, action_dim
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, action_dim), np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.size = 0
        self.cursor = 0
        self.cloneable: np.ndarray | None = None  # per transition, for demonstration buffers (see mixed_batch)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminated: bool) -> None:
        if not np.isfinite(reward):
            raise HeadwayError(f"refusing to store a non-finite reward ({reward})")
        i = self.cursor
        self.obs[i], self.action[i], self.reward[i], self.next_obs[i], self.terminated[i] = obs, action, reward, next_obs, float(terminated)
        self.cursor = (self.cursor + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def extend(self, obs, action, reward, next_obs, terminated) -> None:
        for row in zip(obs, action, reward, next_obs, terminated):
            self.add(*row)

    def sample_indices(self, count: int, rng: np.random.Generator) -> np.ndarray:
        if self.size == 0:
            raise HeadwayError("cannot sample from an empty replay buffer")
        return rng.integers(0, self.size, count)

    def arrays(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {name: getattr(self, name)[indices] for name in FIELDS}

    def sample(self, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.arrays(self.sample_indices(count, rng))

    # -- persistence (for resume) --------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        n = self.size
        data = {name: getattr(self, name)[:n] if self.size < self.capacity else getattr(self, name) for name in FIELDS}
        data["meta"] = np.array([self.capacity, self.obs_dim, self.action_dim, self.size, self.cursor], np.int64)
        return data

    @classmethod
    def from_state(cls, data: dict[str, np.ndarray]) -> ReplayBuffer:
        capacity, obs_dim, action_dim, size, cursor = (int(x) for x in data["meta"])
        buffer = cls(capacity, obs_dim, action_dim)
        for name in FIELDS:
            getattr(buffer, name)[: len(data[name])] = data[name]
        buffer.size, buffer.cursor = size, cursor
        return buffer


def mixed_batch(
    online: ReplayBuffer,
    demos: ReplayBuffer | None,
    batch_size: int,
    rng: np.random.Generator,
    demo_ratio: float = 0.5,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A batch with `demo_ratio` of its rows from demonstrations (RLPD's symmetric sampling) and a
    boolean mask of the rows a behaviour-cloning term may imitate: demonstration rows, and only those
    from successful episodes when the demo buffer carries a `cloneable` flag per transition."""
    n_demo = int(round(batch_size * demo_ratio)) if demos is not None and len(demos) else 0
    if len(online) == 0:
        n_demo = batch_size
    parts = []
    if batch_size - n_demo:
        parts.append(online.sample(batch_size - n_demo, rng))
    mask = np.zeros(batch_size, dtype=bool)
    if n_demo:
        indices = demos.sample_indices(n_demo, rng)  # type: ignore[union-attr]
        parts.append(demos.arrays(indices))  # type: ignore[union-attr]
        cloneable = demos.cloneable  # type: ignore[union-attr]
        mask[batch_size - n_demo :] = True if cloneable is None else cloneable[indices]
    batch = {k: torch.as_tensor(np.concatenate([p[k] for p in parts]), device=device) for k in FIELDS}
    return batch, torch.as_tensor(mask, device=device)


# -- demonstrations ------------------------------------------------------------------------------------
@dataclass
class DemoEpisode:
    """One demonstration episode as the learner sees it, before rewards are attached."""

    obs: np.ndarray  # (T, obs_dim): observation.state ++ observation.environment_state
    action: np.ndarray  # (T, action_dim)
    success: np.ndarray  # (T,) next.success
    dense: np.ndarray | None  # (T,) next.robosuite_dense_reward when recorded
    task: str
    index: int
    images: dict[str, np.ndarray] | None = None  # view -> (T, H, W, 3), only when a reward source needs them
    state_dim: int | None = None  # obs[:, :state_dim] is observation.state (proprioception), for reward models that use it
    scene: tuple[np.ndarray, np.ndarray] | None = None  # (stage, tau) per frame the simulator showed, when recorded


def read_demo_episodes(root: Path | str, views: tuple[str, ...] = (), max_episodes: int | None = None) -> list[DemoEpisode]:
    """Read a LeRobot dataset's state, object state, actions and success signal (and frames of `views`)."""
    from headway.datasets.reader import DatasetReader  # deferred: pandas/pyarrow, only to read demonstrations

    reader = DatasetReader(Path(root))
    episodes = []
    for index in range(reader.num_episodes if max_episodes is None else min(max_episodes, reader.num_episodes)):
        episode = reader.episode(index, views=list(views), decode=bool(views))
        arrays = episode.arrays
        for key in ("observation.state", "observation.environment_state", "action"):
            if key not in arrays:
                raise HeadwayError(
                    f"{root} has no {key!r}; demonstrations for state-based RL need observation.state, "
                    "observation.environment_state and action (record them with `headway sim collect`)"
                )
        if "next.success" in arrays:
            success = np.asarray(arrays["next.success"]).reshape(-1).astype(bool)
        elif "next.reward" in arrays:
            success = np.asarray(arrays["next.reward"]).reshape(-1) > 0
        else:
            raise HeadwayError(f"{root} has neither next.success nor next.reward; the sparse task reward is unknown")
        dense = arrays.get("next.robosuite_dense_reward")
        obs = np.concatenate([arrays["observation.state"], arrays["observation.environment_state"]], axis=1).astype(np.float32)
        episodes.append(
            DemoEpisode(
                obs=obs,
                action=np.asarray(arrays["action"], np.float32),
                success=success,
                dense=None if dense is None else np.asarray(dense, np.float32).reshape(-1),
                task=episode.task,
                index=index,
                state_dim=int(arrays["observation.state"].shape[1]),
                images=episode.images if views else None,
                scene=episode.scene,
            )
        )
    if not episodes:
        raise HeadwayError(f"{root} has no episodes to use as demonstrations")
    return episodes


def demo_transitions(episode: DemoEpisode) -> tuple[np.ndarray, np.ndarray]:
    """(frame indices t, terminated flags) of the transitions t -> t+1 the episode yields.

    The episode is cut at its first success, which is a true terminal (the learner's env terminates
    on success). A last frame that is not a success has no stored next state and is dropped."""
    length = len(episode.obs)
    hits = np.flatnonzero(episode.success)
    if len(hits):
        stop = int(hits[0])
        return np.arange(stop + 1), np.arange(stop + 1) == stop
    return np.arange(length - 1), np.zeros(length - 1, dtype=bool)


def fill_demo_buffer(
    episodes: list[DemoEpisode],
    rewards: Callable[[DemoEpisode, np.ndarray, np.ndarray], np.ndarray],
) -> ReplayBuffer:
    """A buffer of every demo transition, with rewards from `rewards(episode, frames, terminated)`."""
    rows, cloneable = [], []
    for episode in episodes:
        frames, terminated = demo_transitions(episode)
        if len(frames) == 0:
            continue
        reward = np.asarray(rewards(episode, frames, terminated), np.float32)
        following = np.minimum(frames + 1, len(episode.obs) - 1)
        rows.append((episode.obs[frames], episode.action[frames], reward, episode.obs[following], terminated))
        cloneable.append(np.full(len(frames), bool(episode.success.any())))
    if not rows:
        raise HeadwayError("the demonstrations yield no transitions (every episode has a single frame)")
    columns = [np.concatenate(c) for c in zip(*rows)]
    buffer = ReplayBuffer(len(columns[0]), columns[0].shape[1], columns[1].shape[1])
    buffer.extend(*columns)
    buffer.cloneable = np.concatenate(cloneable)  # transitions of successful episodes: what a BC term may imitate
    return buffer
