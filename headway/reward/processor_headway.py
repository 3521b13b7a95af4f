"""Processors lerobot's factory builds for the `headway` reward type: move inputs to the model's
device, outputs back to the CPU. Frames need no normalisation (the model takes [0, 1] RGB)."""

from __future__ import annotations

from typing import Any

from lerobot.processor import (
    DeviceProcessorStep,
    IdentityProcessorStep,
    PolicyProcessorPipeline,
    policy_action_to_transition,
    transition_to_policy_action,
)

from headway.reward.configuration_headway import HeadwayConfig


def make_headway_pre_post_processors(config: HeadwayConfig, dataset_stats: dict | None = None, **_: Any):
    pre = PolicyProcessorPipeline(steps=[DeviceProcessorStep(device=config.device)], name="headway_preprocessor")
    post = PolicyProcessorPipeline(
        steps=[DeviceProcessorStep(device="cpu"), IdentityProcessorStep()],
        name="headway_postprocessor",
        to_transition=policy_action_to_transition,
        to_output=transition_to_policy_action,
    )
    return pre, post
