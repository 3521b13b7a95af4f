"""`headway rollout`: run a policy on an arm (simulated or real) with the live process reward, recording every episode."""

from __future__ import annotations

import argparse
from pathlib import Path


def _rollout(args: argparse.Namespace) -> int:
    from headway.hardware.controller import RolloutConfig, render_summary, run_rollouts
    from headway.hardware.safety import SafetyConfig

    config = RolloutConfig(
        robot=args.robot,
        robot_config=args.robot_config,
        policy=args.policy,
        reward=args.reward,
        episodes=args.episodes,
        fps=args.fps,
        record=args.record,
        resume=args.resume,
        overwrite=args.overwrite,
        instruction=args.instruction,
        max_seconds=args.max_seconds,
        success_threshold=args.success_threshold,
        success_steps=args.success_steps,
        stall_seconds=args.stall_seconds,
        image_size=args.size,
        seed=args.seed,
        safety=SafetyConfig(margin=args.margin, watchdog_timeout=args.watchdog),
        reset=args.reset,
        video=not args.no_video,
        device=args.device,
    )
    summary = run_rollouts(config)
    print(render_summary(summary))
    if args.json:
        from headway.atomic import atomic_write_json

        atomic_write_json(args.json, summary)
        print(f"wrote {args.json}")
    return 0 if summary.get("complete") else 1


def register(commands: argparse._SubParsersAction) -> None:
    rollout = commands.add_parser(
        "rollout",
        help="run a policy on an arm at a fixed rate with the live process reward; record every episode",
        description="Episodes end on success (reward model's success probability), on stalled progress or at the time limit. "
        "Every episode is recorded as a LeRobot dataset with the action actually sent, progress/stage/success and safety interventions.",
    )
    rollout.add_argument("--robot", required=True, help="sim:<task> (e.g. sim:lift) or lerobot:<type> (e.g. lerobot:so100_follower)")
    rollout.add_argument("--robot-config", type=Path, default=None, help="JSON robot config for lerobot:<type> (port, cameras, headway views/limits)")
    rollout.add_argument("--policy", type=Path, required=True, help="policy checkpoint folder (any registered format)")
    rollout.add_argument("--reward", required=True, help="reward model: a checkpoint folder, lerobot:TYPE:PATH or gvl:MODEL")
    rollout.add_argument("--episodes", type=int, default=10)
    rollout.add_argument("--fps", type=float, default=20.0, help="control rate in Hz")
    rollout.add_argument("--record", type=Path, required=True, help="LeRobot dataset folder to write")
    rollout.add_argument("--resume", action="store_true", help="continue an interrupted session (keeps finished episodes)")
    rollout.add_argument("--overwrite", action="store_true", help="replace an existing dataset or interrupted session")
    rollout.add_argument("--instruction", default=None, help="task text for the reward model (default: the sim task's)")
    rollout.add_argument("--max-seconds", type=float, default=None, help="time limit per episode (default: sim task horizon, 60 s real)")
    rollout.add_argument("--success-threshold", type=float, default=0.5)
    rollout.add_argument("--success-steps", type=int, default=3, help="consecutive steps over the threshold that end an episode")
    rollout.add_argument("--stall-seconds", type=float, default=4.0, help="failure when progress has not risen for this long")
    rollout.add_argument("--size", type=int, default=None, help="simulated camera size (default: the reward model's)")
    rollout.add_argument("--seed", type=int, default=0)
    rollout.add_argument("--margin", type=float, default=0.02, help="fraction of each joint range / workspace kept free")
    rollout.add_argument("--watchdog", type=float, default=0.5, help="hold the arm after this many seconds without a valid command")
    rollout.add_argument("--reset", choices=("auto", "prompt"), default=None, help="between episodes (default: auto in sim, prompt on a real arm)")
    rollout.add_argument("--no-video", action="store_true", help="skip the MP4 preview with the progress bar")
    rollout.add_argument("--json", type=Path, default=None, help="write the summary as JSON")
    rollout.add_argument("--device", default=None)
    rollout.set_defaults(run=_rollout)


