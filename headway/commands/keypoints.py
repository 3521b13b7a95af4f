"""`headway keypoints ...`: train and evaluate affordance keypoint models; fuse one with a progress model."""

from __future__ import annotations

import argparse
from pathlib import Path

from headway.commands import add_run_dir_flags, config_flags, config_from_args, lazy_flags, names_argument


def _train(args: argparse.Namespace) -> int:
    from headway.perception.keypoint_train import KeypointTrainConfig, train_keypoint_model

    summary = train_keypoint_model(config_from_args(KeypointTrainConfig, args), resume=args.resume, overwrite=args.overwrite)
    early = " (stopped at the time budget)" if summary["stopped_early"] else ""
    print(
        f"trained {summary['out']}: {summary['steps']} steps{early} on {summary['frames']} frames "
        f"(views {', '.join(summary['views'])}; keypoints {', '.join(summary['keypoints'])}), "
        f"final loss {summary['final_loss']:.3f}, {summary['seconds']:.0f} s"
    )
    return 0


def _train_flags(parser: argparse.ArgumentParser) -> None:
    """keypoints train's flags, generated from KeypointTrainConfig (headway/perception/keypoint_train.py)."""
    from headway.perception.keypoint_train import KeypointTrainConfig

    config_flags(KeypointTrainConfig, names={"datasets": "dataset", "max_minutes": "minutes"})(parser)


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
    model = build_keypoint_reward(
        args.keypoints, args.progress, cameras, weights[0], weights[1], args.distance_scale, args.device, stage_targets=args.stage_targets
    )
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
    add_run_dir_flags(train)
    lazy_flags(train, _train_flags)
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
    fuse.add_argument(
        "--stage-targets",
        default=None,
        help="per stage, comma-separated, TARGET:MOVER keypoints (TARGET alone: the gripper moves), e.g. "
        "grasp:gripper,grasp:gripper,lift_target:grasp (default: those the keypoint model was trained with)",
    )
    fuse.add_argument("--out", type=Path, required=True)
    fuse.add_argument(
        "--check-episodes",
        type=int,
        default=8,
        help="print how much each term rises per stage on the successful ones among this many --dataset episodes (0: skip)",
    )
    fuse.add_argument("--device", default=None)
    fuse.set_defaults(run=_fuse)
