"""`headway policy ...`: behaviour cloning (plain or reward-aligned), offline RL (IQL) and evaluation in simulation."""

from __future__ import annotations

import argparse
from pathlib import Path

from headway.commands import names_argument


def _policy_bc(args: argparse.Namespace) -> int:
    from headway.policy.bc import BCConfig, train_bc

    config = BCConfig(
        dataset=args.dataset,
        out=args.out,
        obs=args.obs,
        chunk=args.chunk,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        views=names_argument(args.views) if args.views else None,
        image_size=args.size,
        weights=args.weights,
        labels=args.labels,
        execution=args.execution,
        seed=args.seed,
        device=args.device,
    )
    summary = train_bc(config)
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

    config = IQLConfig(
        dataset=args.dataset,
        labels=args.labels,
        out=args.out,
        reward=args.reward,
        expectile=args.expectile,
        temperature=args.temperature,
        gamma=args.gamma,
        chunk=args.chunk,
        steps=args.steps,
        batch_size=args.batch_size,
        model=args.model,
        force=args.force,
        execution=args.execution,
        seed=args.seed,
        device=args.device,
    )
    summary = train_iql(config)
    print(
        f"trained {summary['out']} ({summary['task']}, IQL on {summary['reward']} rewards, gamma {summary['gamma']:g}): "
        f"{summary['steps']} steps on {summary['episodes']} episodes ({summary['samples']} samples, "
        f"{summary['terminal_episodes']} ending in a terminal), value loss {summary['final_value_loss']:.3f}, "
        f"critic loss {summary['final_critic_loss']:.3f}, actor loss {summary['first_actor_loss']:.3f} -> "
        f"{summary['final_actor_loss']:.3f}, mean weight {summary['final_mean_weight']:.2f} "
        f"({100 * summary['final_clipped_share']:.0f}% clipped), {summary['seconds']:.0f} s"
    )
    return 0


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
    bc.add_argument("--dataset", type=Path, required=True, help="a LeRobot v3.0 dataset with observation.state and action")
    bc.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    bc.add_argument("--weights", choices=("none", "rabc"), default="none", help="rabc: LeRobot's reward-aligned weights")
    bc.add_argument("--labels", type=Path, default=None, help="sarm_progress.parquet, or a folder holding one (for --weights rabc)")
    bc.add_argument("--obs", choices=("state", "images", "state+images"), default="state",
                    help="state: proprioception + object state (default); images: cameras only; state+images: proprioception + cameras")
    bc.add_argument("--chunk", type=int, default=10, help="actions predicted per query (H)")
    bc.add_argument("--steps", type=int, default=3000)
    bc.add_argument("--batch-size", type=int, default=256)
    bc.add_argument("--lr", type=float, default=1e-3)
    bc.add_argument("--views", default=None, help="comma-separated cameras for image modes (default: all)")
    bc.add_argument("--size", type=int, default=None, help="image size for image modes (default: the dataset's)")
    bc.add_argument("--execution", choices=("ensemble", "open_loop"), default="ensemble",
                    help="ensemble: ACT's temporal ensembling, queried every step (default); open_loop: play whole chunks")
    bc.add_argument("--seed", type=int, default=0)
    bc.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    bc.set_defaults(run=_policy_bc)
    iql = policy_commands.add_parser("iql", help="offline RL (Implicit Q-Learning) on a dataset and its reward labels")
    iql.add_argument("--dataset", type=Path, required=True, help="a LeRobot v3.0 dataset with observation.state and action")
    iql.add_argument("--labels", type=Path, required=True, help="the dataset's label folder from `headway label`")
    iql.add_argument("--out", type=Path, required=True, help="checkpoint folder to write (BC format: `headway policy eval` loads it)")
    iql.add_argument("--reward", choices=("shaped", "progress", "success", "sparse"), default="shaped",
                     help="shaped: the labels' potential-based reward (default); progress / success: the model's outputs; "
                          "sparse: the dataset's task reward")
    iql.add_argument("--expectile", type=float, default=0.7, help="tau of the value's expectile regression, in (0.5, 1)")
    iql.add_argument("--temperature", type=float, default=3.0, help="beta of the advantage weights exp(beta * A)")
    iql.add_argument("--gamma", type=float, default=None, help="discount (default: the labels' gamma)")
    iql.add_argument("--chunk", type=int, default=10, help="actions per chunk (Q is over whole chunks)")
    iql.add_argument("--steps", type=int, default=3000)
    iql.add_argument("--batch-size", type=int, default=256)
    iql.add_argument("--model", type=Path, default=None, help="reward checkpoint the labels must come from (fingerprint check)")
    iql.add_argument("--force", action="store_true", help="use labels made from another dataset or model")
    iql.add_argument("--execution", choices=("ensemble", "open_loop"), default="ensemble")
    iql.add_argument("--seed", type=int, default=0)
    iql.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
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
