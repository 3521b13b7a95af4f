"""`headway policy ...`: behaviour cloning (plain or reward-aligned) and evaluation in simulation."""

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


def _policy_eval(args: argparse.Namespace) -> int:
    from headway.atomic import atomic_write_json
    from headway.policy.evaluate import evaluate_policy, render_summary
    from headway.policy.interface import load_policy

    policy = load_policy(args.policy, device=args.device)
    video_dir = args.video_dir or (Path(args.policy) / "videos")
    report = evaluate_policy(
        policy, args.task, episodes=args.episodes, seed=args.seed, videos=args.videos, video_dir=video_dir, horizon=args.horizon
    )
    print(render_summary(report, str(args.policy)))
    for path in report["videos"]:
        print(f"video {path}")
    if args.json:
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    policy = commands.add_parser("policy", help="behaviour cloning (plain or RA-BC) and policy evaluation")
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
    evaluate.set_defaults(run=_policy_eval)
