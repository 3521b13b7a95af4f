"""Load any headway reward model from its checkpoint folder, by the `format` its config names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from headway.checkpoint import load_by_format
from headway.registry import Registry
from headway.reward.interface import RewardModel

# format name (config.json "format") -> loader(path, device) -> RewardModel
REWARD_MODEL_FORMATS: Registry[Callable[[Path, str | None], RewardModel]] = Registry("reward model format")


def _load_stage_reward(path: Path, device: str | None) -> RewardModel:
    from headway.reward.stage_reward import StageRewardModel

    return StageRewardModel.load(path, device=device)


REWARD_MODEL_FORMATS.register("headway.stage_reward", _load_stage_reward)


def _load_keypoint_reward(path: Path, device: str | None) -> RewardModel:
    from headway.reward.keypoint_reward import KeypointRewardModel

    return KeypointRewardModel.load(path, device=device)


REWARD_MODEL_FORMATS.register("headway.keypoint_reward", _load_keypoint_reward)


def load_reward_model(path: Path | str, device: str | None = None) -> RewardModel:
    """Open a reward-model checkpoint of any registered kind."""
    fix = "Pass the folder written by `headway reward train` (or another headway reward model)"
    return load_by_format(path, REWARD_MODEL_FORMATS, device, "reward model", fix)
