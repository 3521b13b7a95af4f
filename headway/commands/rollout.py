"""`headway rollout`: run a policy on an arm (simulated or real) with the live process reward, recording every episode."""

from __future__ import annotations

import argparse
from pathlib import Path

from headway.commands import config_flags, config_from_args, lazy_flags


def _rollout(args: argparse.Namespace) -> int:
    from headway.hardware.controller import RolloutConfig
    from headway.hardware.rollout_session import render_summary, run_rollouts
    from headway.hardware.safety import SafetyConfig

    summary = run_rollouts(config_from_args(RolloutConfig, args, safety=config_from_args(SafetyConfig, args)))
    print(render_summary(summary))
    if args.json:
        from headway.atomic import atomic_write_json

        atomic_write_json(args.json, summary)
        print(f"wrote {args.json}")
    return 0 if summary.get("complete") else 1


def _rollout_flags(parser: argparse.ArgumentParser) -> None:
    """rollout's flags, generated from RolloutConfig (headway/hardware/controller.py) and, unprefixed as
    before, its SafetyConfig (headway/hardware/safety.py)."""
    from headway.hardware.controller import RolloutConfig
    from headway.hardware.safety import SafetyConfig

    config_flags(RolloutConfig, skip=("progress",), required=("robot", "policy", "reward", "record"), names={"image_size": "size"})(parser)
    config_flags(SafetyConfig, names={"watchdog_timeout": "watchdog"})(parser)


def register(commands: argparse._SubParsersAction) -> None:
    rollout = commands.add_parser(
        "rollout",
        help="run a policy on an arm at a fixed rate with the live process reward; record every episode",
        description="Episodes end on success (reward model's success probability), on stalled progress or at the time limit. "
        "Every episode is recorded as a LeRobot dataset with the action actually sent, progress/stage/success and safety interventions.",
    )
    rollout.add_argument("--json", type=Path, default=None, help="write the summary as JSON")
    lazy_flags(rollout, _rollout_flags)
    rollout.set_defaults(run=_rollout)
