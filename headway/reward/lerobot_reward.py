"""Any lerobot reward model (`lerobot.rewards`: sarm, robometer, topreward, reward_classifier) as a
headway reward model, named `lerobot:TYPE:PATH` wherever headway takes a reward model.

Each frame is scored from the sample a `LeRobotDataset` would return for it with the model's own
`observation_delta_indices` (indices clamped to the episode, `_is_pad` flags set), through the
model's lerobot pre-processor. SARM is scored as lerobot's RA-BC labelling scores it (the window's
centre frame, sparse head), so it sees future frames offline; `stream()` clamps those to the present.
Outputs a model does not produce are reported in `RewardOutput.absent`, never invented.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from headway.errors import HeadwayError
from headway.reward.interface import RewardOutput

LEROBOT_TYPES = ("sarm", "robometer", "topreward", "reward_classifier")
IMAGE_PREFIX = "observation.images."


def load_lerobot_reward_model(spec: str, device: str | None = None) -> LeRobotRewardModel:
    """`TYPE:PATH` (a local folder or a hub id) -> the model, its pre-processor and its views."""
    kind, sep, path = spec.partition(":")
    if kind not in LEROBOT_TYPES:
        raise HeadwayError(f"unknown lerobot reward type {kind!r}; known: {', '.join(LEROBOT_TYPES)} (write lerobot:TYPE:PATH)")
    if not sep or not path:
        raise HeadwayError(f"lerobot:{spec}: name the checkpoint, e.g. lerobot:{kind}:/path/to/pretrained_model")
    from lerobot.rewards import get_reward_model_class, make_reward_pre_post_processors
    from lerobot.configs.rewards import RewardModelConfig

    try:
        config = RewardModelConfig.from_pretrained(path, local_files_only=Path(path).exists())
    except Exception as error:  # hub misses, unreadable folders: lerobot's own errors vary by cause
        raise HeadwayError(f"lerobot:{kind}:{path}: cannot read a lerobot reward-model config there ({error})") from None
    if config.type != kind:
        raise HeadwayError(f"{path} holds a lerobot {config.type!r} reward model, not {kind!r}; write lerobot:{config.type}:{path}")
    config.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = get_reward_model_class(kind).from_pretrained(path, config=config)
    preprocess, _ = make_reward_pre_post_processors(config)
    return LeRobotRewardModel(kind, model.eval(), preprocess)


class LeRobotRewardModel:
    """headway's `RewardModel` protocol over a lerobot `PreTrainedRewardModel`."""

    def __init__(self, kind: str, model, preprocess, fps: float = 20.0, image_size: int = 224) -> None:
        self.kind, self.model, self.preprocess, self.fps = kind, model, preprocess, fps
        for step in [preprocess, *getattr(preprocess, "steps", [])]:
            if hasattr(step, "eval"):
                step.eval()  # no training-time augmentation (SARM's rewind, language perturbation)
        config = model.config
        self.camera_keys = [config.image_key] if hasattr(config, "image_key") else [
            key for key in config.input_features if key.startswith(IMAGE_PREFIX)
        ]
        if not self.camera_keys:
            raise HeadwayError(f"the lerobot {kind} model names no camera input; headway scores camera streams")
        self.state_key = getattr(config, "state_key", None)
        self.deltas = list(config.observation_delta_indices or [0])
        self._image_size = image_size
        self.absent = frozenset({"stage", "stage_probs", "uncertainty"} | ({"success"} if kind != "reward_classifier" else set()))

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(key.removeprefix(IMAGE_PREFIX) for key in self.camera_keys)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return ()

    @property
    def image_size(self) -> int:
        return self._image_size

    def check_views(self, views) -> list[str]:
        views = list(views)
        missing = [v for v in self.views if v not in views]
        if missing:
            raise HeadwayError(f"the lerobot {self.kind} model needs views {list(self.views)}; given {views}")
        return views

    def _sample(self, images: dict[str, np.ndarray], state, task: str, t: int, last: int) -> dict:
        indices = [min(max(t + d, 0), last) for d in self.deltas]
        pad = torch.tensor([not 0 <= t + d <= last for d in self.deltas])
        sample: dict = {"task": task, "index": t, "frame_index": t, "episode_index": 0, "timestamp": t / self.fps}
        for key, view in zip(self.camera_keys, self.views):
            frames = torch.from_numpy(np.ascontiguousarray(images[view][indices])).permute(0, 3, 1, 2).float() / 255.0
            sample[key] = frames if len(self.deltas) > 1 else frames[0]
            sample[f"{key}_is_pad"] = pad
        if self.state_key:  # without a recorded state, zeros: what lerobot's models use for "no state"
            state = np.zeros((last + 1, 1), np.float32) if state is None else np.asarray(state, dtype=np.float32)
            values = torch.from_numpy(state[indices])
            sample[self.state_key] = values if len(self.deltas) > 1 else values[0]
        return sample

    @torch.no_grad()
    def _score(self, sample: dict) -> tuple[float, float]:
        """(progress, success probability) of one sample's frame."""
        processed = self.preprocess(sample)
        if self.kind == "sarm":  # the window's centre frame, as lerobot's RA-BC labelling reads it
            rewards = self.model.calculate_rewards(
                text_embeddings=processed["text_features"], video_embeddings=processed["video_features"],
                state_features=processed.get("state_features"), lengths=processed.get("lengths"),
                return_all_frames=True, head_mode="sparse",
            )
            value = float(np.asarray(rewards).reshape(-1, np.asarray(rewards).shape[-1])[0, self.model.config.n_obs_steps // 2])
        else:
            value = float(self.model.compute_reward(processed).reshape(-1)[0])
        if not np.isfinite(value):
            raise HeadwayError(f"the lerobot {self.kind} model returned {value} for frame {sample['index']}")
        success = value if self.kind == "reward_classifier" else float("nan")
        return float(np.clip(value, 0.0, 1.0)), success

    def _output(self, scores: list[tuple[float, float]]) -> RewardOutput:
        progress, success = (np.array(column, dtype=np.float32) for column in zip(*scores))
        return RewardOutput.progress_only(progress, success, absent=self.absent)

    def score_episode(self, images: dict[str, np.ndarray], task: str, state: np.ndarray | None = None, batch_size: int = 256) -> RewardOutput:
        self.check_views(images)
        length = len(images[self.views[0]])
        return self._output([self._score(self._sample(images, state, task, t, length - 1)) for t in range(length)])

    def stream(self, task: str) -> LeRobotStreamingScorer:
        return LeRobotStreamingScorer(self, task)

    def save(self, path: Path) -> None:
        self.model.save_pretrained(path)


class LeRobotStreamingScorer:
    """Scores the newest frame from the frames so far (future window slots clamp to the present)."""

    def __init__(self, model: LeRobotRewardModel, task: str) -> None:
        self.model, self.task = model, task
        self.reset()

    def reset(self) -> None:
        self.frames: dict[str, list[np.ndarray]] = {view: [] for view in self.model.views}
        self.states: list[np.ndarray] = []

    def step(self, images: dict[str, np.ndarray], state: np.ndarray | None = None) -> RewardOutput:
        self.model.check_views(images)
        for view in self.model.views:
            self.frames[view].append(np.asarray(images[view]))
        if state is not None:
            self.states.append(np.asarray(state))
        t = len(self.frames[self.model.views[0]]) - 1
        stacked = {view: np.stack(frames) for view, frames in self.frames.items()}
        states = np.stack(self.states) if len(self.states) == t + 1 else None
        return self.model._output([self.model._score(self.model._sample(stacked, states, self.task, t, t))])
