"""A rollout session from its config: load the policy and reward model, build the arm, run the
controller (headway/hardware/controller.py), and the summary `headway rollout` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headway.errors import HeadwayError
from headway.hardware.controller import RolloutConfig, RolloutController
from headway.hardware.lerobot_adapter import LeRobotArm
from headway.hardware.protocols import Arm
from headway.hardware.sim_arm import SimArm
from headway.policy.interface import Policy, load_policy
from headway.reward.loading import load_reward_model


def make_arm(config: RolloutConfig, views: tuple[str, ...], image_size: int) -> Arm:
    """The arm named by `config.robot` (not connected yet)."""
    kind, _, name = config.robot.partition(":")
    if kind == "sim":
        return SimArm(name, views=views, image_size=config.image_size or image_size, camera_max_age=config.camera_max_age)
    return LeRobotArm.from_config_file(name, config.robot_config, camera_max_age=config.camera_max_age)


def load_rollout_policy(path: Path | str, device: str | None = None) -> Policy:
    """Any registered policy checkpoint (`headway policy eval` loads the same formats)."""
    return load_policy(path, device)


def run_rollouts(config: RolloutConfig) -> dict[str, Any]:
    """Load the policy and reward model, build the arm, run the session; returns the summary
    (success_rate, mean_final_progress, loop timing, interventions, dataset and preview video paths)."""
    if config.policy is None or config.reward is None:
        raise HeadwayError("a rollout needs --policy CKPT and --reward CKPT")
    model = load_reward_model(config.reward, device=config.device)
    policy = load_rollout_policy(config.policy, device=config.device)
    views = tuple(dict.fromkeys([*model.views, *policy.views]))
    arm = make_arm(config, views, model.image_size)
    instruction = config.instruction or getattr(arm, "instruction", None)
    if not instruction:
        raise HeadwayError("give the task text for the reward model (--instruction, or 'headway.instruction' in the robot config)")
    controller = RolloutController(arm, policy, model, config, instruction)
    summary = controller.run()
    summary["instruction"] = instruction
    return summary


def render_summary(summary: dict[str, Any]) -> str:
    """The lines `headway rollout` prints on exit."""
    if summary.get("kept"):
        return f"{summary['dataset']} already holds this finished session ({summary['episodes']} episodes): kept (--overwrite records it again)"
    lines = [
        f"episodes: {summary['episodes']} ({', '.join(f'{k} {v}' for k, v in sorted(summary['outcomes'].items()))})",
        f"success rate: {summary['success_rate']:.0%}" + (
            f" (true success in simulation: {summary['true_success_rate']:.0%})" if summary.get("true_success_rate") is not None else ""
        ),
        f"mean final progress: {summary['mean_final_progress']:.3f}",
    ]
    loop = summary.get("loop")
    if loop:
        lines.append(
            f"loop at {loop['fps']:g} Hz: period mean {loop['mean_period_ms']:.1f} ms, p99 {loop['p99_period_ms']:.1f} ms, "
            f"jitter (std) {loop['jitter_ms']:.1f} ms, overruns {loop['overruns']}/{loop['ticks']} ({loop['overrun_rate']:.1%})"
        )
    interventions = summary.get("interventions") or {}
    detail = ", ".join(f"{k} {v}" for k, v in sorted(interventions.items()))
    lines.append(f"safety interventions: {summary.get('interventions_total', 0)}" + (f" ({detail})" if detail else ""))
    if summary.get("stopped"):
        lines.append(f"stopped: {summary['stopped']}")
    if summary.get("dataset"):
        lines.append(f"dataset: {summary['dataset']}" + ("" if summary.get("complete") else " (incomplete: rerun with --resume)"))
    if summary.get("video"):
        lines.append(f"preview video: {summary['video']}")
    return "\n".join(lines)
