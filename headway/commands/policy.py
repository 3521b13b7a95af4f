"""`headway policy ...`: behaviour cloning (plain or reward-aligned), offline RL (IQL) and evaluation in simulation."""

from __future__ import annotations

import argparse
from pathlib import Path

from headway.commands import config_flags, config_from_args, lazy_flags


def _policy_bc(args: argparse.Namespace) -> int:
    from headway.policy.bc import BCConfig, train_bc

    summary = train_bc(config_from_args(BCConfig, args))
    weights = ""
    if summary["weights"] == "rabc":
        weights = (
            f"; RA-BC weights: mean {summary['mean_weight']:.3f}, zero {100 * summary['zero_share']:.1f}%, "
            f"full {100 * summary['full_share']:.1f}%"
        )
    print(
        f"trained {summary['out']} ({summary['task']}, obs {summary['obs']}): {summary['steps']} steps on "
        f"{summary['episodes']} episodes ({summary['samples']} samples), loss {summary['first_loss']:.3f} -> "
        f"{summary['final_loss']:.3f}, {summary['seconds']:.0f} s{weights}"
    )
    return 0


def _policy_iql(args: argparse.Namespace) -> int:
    from headway.policy.iql import IQLConfig, train_iql

    summary = train_iql(config_from_args(IQLConfig, args))
    print(
        f"trained {summary['out']} ({summary['task']}, IQL on {summary['reward']} rewards, gamma {summary['gamma']:g}): "
        f"{summary['steps']} steps on {summary['episodes']} episodes ({summary['samples']} samples, "
        f"{summary['terminal_episodes']} ending in a terminal), value loss {summary['final_value_loss']:.3f}, "
        f"critic loss {summary['final_critic_loss']:.3f}, actor loss {summary['first_actor_loss']:.3f} -> "
        f"{summary['final_actor_loss']:.3f}, mean weight {summary['final_mean_weight']:.2f} "
        f"({100 * summary['final_clipped_share']:.0f}% clipped), {summary['seconds']:.0f} s"
    )
    return 0


def _bc_flags(parser: argparse.ArgumentParser) -> None:
    """policy bc's flags, generated from BCConfig (headway/policy/bc.py)."""
    from headway.policy.bc import BCConfig

    config_flags(BCConfig, names={"image_size": "size"})(parser)


def _iql_flags(parser: argparse.ArgumentParser) -> None:
    """policy iql's flags, generated from IQLConfig (headway/policy/iql.py)."""
    from headway.policy.iql import IQLConfig

    config_flags(IQLConfig)(parser)


def _policy_eval(args: argparse.Namespace) -> int:
    from headway.atomic import atomic_write_json
    from headway.policy.evaluate import evaluate_policy, render_summary
    from headway.policy.interface import load_policy

    from headway.executors import ray_settings

    ray = ray_settings(args.executor, args.address, args.workers, args.gpus_per_worker)
    policy = load_policy(args.policy, device=args.device)
    video_dir = args.video_dir or (Path(args.policy) / "videos")
    report = evaluate_policy(
        policy, args.task, episodes=args.episodes, seed=args.seed, videos=args.videos, video_dir=video_dir, horizon=args.horizon,
        ray=ray,
    )
    print(render_summary(report, str(args.policy)))
    for path in report["videos"]:
        print(f"video {path}")
    if args.json:
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    policy = commands.add_parser("policy", help="behaviour cloning (plain or RA-BC), offline RL (IQL) and policy evaluation")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    bc = policy_commands.add_parser("bc", help="train a BC policy of action chunks from a LeRobot dataset")
    lazy_flags(bc, _bc_flags)
    bc.set_defaults(run=_policy_bc)
    iql = policy_commands.add_parser("iql", help="offline RL (Implicit Q-Learning) on a dataset and its reward labels")
    lazy_flags(iql, _iql_flags)
    iql.set_defaults(run=_policy_iql)
    evaluate = policy_commands.add_parser("eval", help="roll a policy out in simulation: success rate, returns, videos")
    evaluate.add_argument("--task", required=True, help="simulated task, e.g. lift")
    evaluate.add_argument("--policy", type=Path, required=True, help="policy checkpoint folder (BC, SAC, ...)")
    evaluate.add_argument("--episodes", type=int, default=50)
    evaluate.add_argument("--seed", type=int, default=900_000, help="first episode seed (held out from collection seeds)")
    evaluate.add_argument("--videos", type=int, default=0, help="record this many rollouts as MP4")
    evaluate.add_argument("--video-dir", type=Path, default=None, help="where videos go (default: <policy>/videos)")
    evaluate.add_argument("--horizon", type=int, default=None, help="episode step limit (default: the task's)")
    evaluate.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    evaluate.add_argument("--device", default=None)
    from headway.executors import add_executor_arguments

    add_executor_arguments(evaluate, "the rollouts")
    evaluate.set_defaults(run=_policy_eval)
