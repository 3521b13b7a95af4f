"""Load any headway reward model from its checkpoint folder, by the `format` its config names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from headway.checkpoint import load_by_format
from headway.registry import Registry
from headway.reward.gvl import GVLRewardModel
from headway.reward.interface import RewardModel

# format name (config.json "format") -> loader(path, device) -> RewardModel
REWARD_MODEL_FORMATS: Registry[Callable[[Path, str | None], RewardModel]] = Registry("reward model format")


def _load_stage_reward(path: Path, device: str | None) -> RewardModel:
    from headway.reward.stage_reward import StageRewardModel  # deferred: torch

    return StageRewardModel.load(path, device=device)


REWARD_MODEL_FORMATS.register("headway.stage_reward", _load_stage_reward)


def _load_keypoint_reward(path: Path, device: str | None) -> RewardModel:
    from headway.reward.keypoint_reward import KeypointRewardModel  # deferred: torch (and a cycle: keypoint_reward imports this module)

    return KeypointRewardModel.load(path, device=device)


REWARD_MODEL_FORMATS.register("headway.keypoint_reward", _load_keypoint_reward)


# spec prefix ("lerobot", "gvl", ...) -> loader(rest of the spec, device) -> RewardModel, for models
# named as `PREFIX:REST` rather than by a headway checkpoint folder.
REWARD_MODEL_SPECS: Registry[Callable[[str, str | None], RewardModel]] = Registry("reward model kind")


def _load_gvl(rest: str, device: str | None) -> RewardModel:
    """`gvl:MODEL[?views=a,b&max_frames=16&...]`: zero-shot VLM progress (options: headway.reward.gvl)."""
    return GVLRewardModel.from_pretrained(rest, device)


REWARD_MODEL_SPECS.register("gvl", _load_gvl)


def _load_lerobot(rest: str, device: str | None) -> RewardModel:
    """`lerobot:TYPE:PATH`: any lerobot reward model (sarm, robometer, topreward, reward_classifier)."""
    # deferred: torch, and lerobot's reward stack, load only when one of its models is asked for
    from headway.reward.lerobot_reward import load_lerobot_reward_model

    return load_lerobot_reward_model(rest, device)


REWARD_MODEL_SPECS.register("lerobot", _load_lerobot)


def reward_model_spec(path: Path | str) -> str | None:
    """The text of `path` if it is a `PREFIX:REST` spec (not an existing folder), else None."""
    text = str(path)
    prefix, sep, _ = text.partition(":")
    return text if sep and len(prefix) > 1 and not Path(text).exists() else None


def load_reward_model(path: Path | str, device: str | None = None) -> RewardModel:
    """Open a reward model: a headway checkpoint folder of any registered format, or `PREFIX:REST`
    for a registered spec prefix (`lerobot:sarm:PATH`, `gvl:MODEL`)."""
    spec = reward_model_spec(path)
    if spec is not None:
        prefix, _, rest = spec.partition(":")
        return REWARD_MODEL_SPECS.get(prefix)(rest, device)
    fix = "Pass the folder written by `headway reward train` (or another headway reward model)"
    return load_by_format(path, REWARD_MODEL_FORMATS, device, "reward model", fix)
