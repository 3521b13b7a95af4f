"""Load any headway reward model from its checkpoint folder, by the `format` its config names."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from headway.errors import HeadwayError
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
    path = Path(path)
    config_path = path / "config.json"
    if not config_path.exists():
        raise HeadwayError(
            f"{path} is not a headway reward checkpoint: {config_path.name} is missing. "
            "Pass the folder written by `headway reward train` (or another headway reward model)"
        )
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise HeadwayError(f"{config_path} is not valid JSON ({error}); the checkpoint is damaged") from None
    return REWARD_MODEL_FORMATS.get(str(meta.get("format")))(path, device)
