"""`headway keypoints ...`: train and evaluate affordance keypoint models; fuse one with a progress model."""

from __future__ import annotations

import argparse
from pathlib import Path

from headway.commands import names_argument


def _train(args: argparse.Namespace) -> int:
    from headway.perception.keypoint_train import KeypointTrainConfig, train_keypoint_model

    config = KeypointTrainConfig(
        datasets=args.dataset,
        out=args.out,
        views=names_argument(args.views) if args.views else None,
        max_minutes=args.minutes,
        seed=args.seed,
        device=args.device,
        **{name: getattr(args, name) for name in ("width", "steps", "batch_size") if getattr(args, name) is not None},
    )
    summary = train_keypoint_model(config, resume=args.resume)
    early = " (stopped at the time budget)" if summary["stopped_early"] else ""
    print(
        f"trained {summary['out']}: {summary['steps']} steps{early} on {summary['frames']} frames "
        f"(views {', '.join(summary['views'])}; keypoints {', '.join(summary['keypoints'])}), "
        f"final loss {summary['final_loss']:.3f}, {summary['seconds']:.0f} s"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from headway.atomic import atomic_write_json
    from headway.perception.keypoint_model import KeypointModel
    from headway.perception.keypoint_train import evaluate_keypoints, render_report

    model = KeypointModel.load(args.model, device=args.device)
    report = evaluate_keypoints(model, args.dataset, plots=args.plots)
    print(render_report(report))
    if args.json:
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    if args.plots:
        print(f"keypoints drawn on frames of each view in {args.plots} (rings: truth, dots: predicted)")
    return 0


def _fuse(args: argparse.Namespace) -> int:
    from headway.reward.keypoint_reward import build_keypoint_reward, static_cameras

    weights = [float(w) for w in args.weights.split(",")]
    if len(weights) != 2:
        from headway.errors import HeadwayError

        raise HeadwayError(f"--weights takes PROGRESS,KEYPOINTS (two numbers), got {args.weights!r}")
    cameras = static_cameras(args.dataset, list(names_argument(args.views)) if args.views else None)
    model = build_keypoint_reward(args.keypoints, args.progress, cameras, weights[0], weights[1], args.distance_scale, args.device)
    model.save(args.out)
    print(f"wrote {args.out}: keypoint reward over {', '.join(cameras)} fused with {args.progress} (weights {weights[0]:g}, {weights[1]:g})")
    if args.check_episodes > 0:
        from headway.reward.fusion_report import fusion_by_stage, render_fusion_report

        print(render_fusion_report(fusion_by_stage(model, args.dataset, args.check_episodes)))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("keypoints", help="affordance keypoints: train, evaluate, fuse into a reward")
    sub = group.add_subparsers(dest="keypoints_command", required=True, metavar="COMMAND")
    train = sub.add_parser("train", help="train the per-view keypoint heatmap model on simulated datasets")
    train.add_argument("--dataset", type=Path, action="append", required=True, help="a dataset from `headway sim collect` (repeatable)")
    train.add_argument("--out", type=Path, required=True, help="checkpoint folder to create")
    train.add_argument("--views", default=None, help="comma-separated views (default: all of the dataset)")
    train.add_argument("--steps", type=int, default=None, help="training steps (default: KeypointTrainConfig's, 3000)")
    train.add_argument("--batch-size", type=int, default=None, help="default: KeypointTrainConfig's, 32")
    train.add_argument("--width", type=int, default=None, help="channels of the first U-Net stage (default: KeypointTrainConfig's, 16)")
    train.add_argument("--minutes", type=float, default=None, help="stop (and save) after this much training time")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue an interrupted training in --out")
    train.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    train.set_defaults(run=_train)
    evaluate = sub.add_parser("eval", help="2D error per view and triangulated 3D error on held-out episodes")
    evaluate.add_argument("--model", type=Path, required=True)
    evaluate.add_argument("--dataset", type=Path, required=True)
    evaluate.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    evaluate.add_argument("--plots", type=Path, default=None, help="folder for frames with keypoints drawn")
    evaluate.add_argument("--device", default=None)
    evaluate.set_defaults(run=_eval)
    fuse = sub.add_parser("fuse", help="pair a keypoint model with a progress model into one reward checkpoint")
    fuse.add_argument("--keypoints", type=Path, required=True, help="checkpoint from `headway keypoints train`")
    fuse.add_argument("--progress", type=Path, required=True, help="stage-aware checkpoint from `headway reward train`")
    fuse.add_argument("--dataset", type=Path, required=True, help="a dataset whose static cameras give the calibration")
    fuse.add_argument("--views", default=None, help="static views to triangulate from (default: every static view)")
    fuse.add_argument("--weights", default="0.5,0.5", help="PROGRESS,KEYPOINTS weights of the fused potential")
    fuse.add_argument("--distance-scale", type=float, default=0.1, help="metres: closeness = exp(-distance / scale)")
    fuse.add_argument("--out", type=Path, required=True)
    fuse.add_argument(
        "--check-episodes",
        type=int,
        default=8,
        help="print how much each term rises per stage on the successful ones among this many --dataset episodes (0: skip)",
    )
    fuse.add_argument("--device", default=None)
    fuse.set_defaults(run=_fuse)
