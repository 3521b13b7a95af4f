"""`headway reward ...`: train and evaluate process reward models."""

from __future__ import annotations

import argparse
from pathlib import Path

from headway.commands import names_argument

RECIPE = (
    "image_shift", "shift_per", "window", "stride", "view_dropout",
    "color_jitter", "rotate_degrees", "crop_scale", "task_text", "paraphrase_prob", "threads",
)  # TrainConfig fields the CLI overrides only when given


def _reward_train(args: argparse.Namespace) -> int:
    from headway.reward.train import TrainConfig, train_reward_model

    config = TrainConfig(
        datasets=args.dataset,
        out=args.out,
        encoder=args.encoder,
        views=names_argument(args.views) if args.views else None,
        image_size=args.size,
        steps=args.steps,
        linear_if_missing=args.linear_targets,
        prior=args.prior,
        allow_download=args.allow_download,
        feature_cache=args.feature_cache,
        seed=args.seed,
        device=args.device,
        **{name: getattr(args, name) for name in RECIPE if getattr(args, name) is not None},
    )
    summary = train_reward_model(config, resume=args.resume)
    if summary.get("rank", 0) != 0:  # under torchrun, rank 0 speaks for every process
        return 0
    print(
        f"trained {summary['out']}: {summary['steps']} steps on {summary['episodes']} episodes "
        f"({summary['frames']} frames, views {', '.join(summary['views'])}), final loss {summary['final_loss']:.3f}, "
        f"{summary['seconds']:.0f} s"
    )
    return 0


def _reward_eval(args: argparse.Namespace) -> int:
    from headway.atomic import atomic_write_json
    from headway.reward.evaluate import evaluate, render_table
    from headway.reward.loading import load_reward_model

    model = load_reward_model(args.model, device=args.device)
    views = names_argument(args.views) if args.views else None
    if args.report or args.label or args.wording or args.frame_step or args.shift_size:
        return _robustness(args, model, views)
    if args.task_text is not None:
        from headway.reward.robustness import ShiftedModel

        model = ShiftedModel(model, task_text=args.task_text)
    report = evaluate(model, args.dataset, views, args.plots)
    print(render_table(report))
    if args.json:
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    if args.plots:
        print(f"progress plots in {args.plots}")
    return 0


def _robustness(args: argparse.Namespace, model, views) -> int:
    from headway.reward.robustness import conditions_from, render_table, robustness_report, write_report

    conditions = conditions_from(
        args.dataset, args.label, args.task_text, args.wording or [], args.frame_step or [], args.shift_size or []
    )
    report = robustness_report(model, conditions, views)
    print(render_table(report))
    if args.json:
        from headway.atomic import atomic_write_json

        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    if args.report:
        paths = write_report(report, args.report, title=f"{Path(args.model).name}: robustness")
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    reward = commands.add_parser("reward", help="process reward models: train and evaluate")
    reward_commands = reward.add_subparsers(dest="reward_command", required=True, metavar="COMMAND")
    train = reward_commands.add_parser("train", help="train the stage-aware multi-view reward model")
    train.add_argument("--dataset", type=Path, action="append", required=True, help="a LeRobot dataset (repeatable)")
    train.add_argument("--out", type=Path, required=True, help="checkpoint folder to create")
    train.add_argument("--encoder", default="conv", help="conv (default) or hf:<hub id or local path> (frozen)")
    train.add_argument("--views", default=None, help="comma-separated views (default: all of the first dataset)")
    train.add_argument("--size", type=int, default=84, help="model input size; frames are resized to it")
    train.add_argument("--steps", type=int, default=3000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--prior", default="dataset", choices=("dataset", "equal"), help="stage shares of progress: SARM's mean share of time (dataset) or equal shares")
    train.add_argument("--image-shift", type=int, default=None, help="random-shift augmentation in pixels (0: none; conv encoder only)")
    train.add_argument("--shift-per", choices=("segment", "frame"), default=None, help="one random shift per training segment and view (default) or per frame")
    train.add_argument("--window", type=int, default=None, help="recent frames the causal model reads (plus the first frame)")
    train.add_argument("--stride", type=int, default=None, help="frames between those recent frames")
    train.add_argument("--view-dropout", type=float, default=None, help="share of training segments shown a random strict subset of the views")
    train.add_argument("--color-jitter", type=float, default=None, help="brightness/contrast/saturation factors in 1 +- this and a colour cast, one draw per training window and view (0: none)")
    train.add_argument("--rotate", dest="rotate_degrees", type=float, default=None, metavar="DEGREES", help="random rotations up to +- DEGREES, one per training window and view (0: none)")
    train.add_argument("--crop-scale", type=float, default=None, help="random zoom-in crops keeping down to 1/(1+this) of the side, one per window and view (0: none)")
    train.add_argument("--task-text", default=None, help="train every episode under this task text instead of the datasets' own wording")
    train.add_argument("--paraphrase-prob", type=float, default=None, help="share of training windows shown a known paraphrase of their task (0: none)")
    train.add_argument("--linear-targets", action="store_true", help="train unannotated episodes on linear-in-time progress")
    train.add_argument("--allow-download", action="store_true", help="let --encoder hf:<hub id> fetch weights not in the local cache")
    train.add_argument("--feature-cache", type=Path, default=None, help="where a frozen tower's per-frame features are kept (default ~/.cache/headway/features; under torchrun on several nodes, a folder every node reads)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted training in --out")
    train.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    train.add_argument("--threads", type=int, default=None, help="torch threads per process on CPU (default 1: more collapse on a shared machine)")
    train.set_defaults(run=_reward_train)
    evaluate = reward_commands.add_parser("eval", help="metrics on held-out episodes, with baselines")
    evaluate.add_argument("--model", required=True, help="reward model: a checkpoint folder, lerobot:TYPE:PATH or gvl:MODEL")
    evaluate.add_argument("--dataset", type=Path, action="append", required=True)
    evaluate.add_argument("--views", default=None, help="score with this subset of the model's views")
    evaluate.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    evaluate.add_argument("--plots", type=Path, default=None, help="folder for per-episode progress plots")
    evaluate.add_argument("--task-text", default=None, help="score every dataset with this task text instead of its own wording")
    robust = evaluate.add_argument_group(
        "robustness report", "the model's metrics per dataset side by side, with the change from the first (nominal) one"
    )
    robust.add_argument("--report", type=Path, default=None, metavar="PREFIX", help="write PREFIX.json, PREFIX.md and PREFIX.png")
    robust.add_argument("--label", action="append", default=None, help="a name per --dataset for the report's rows (repeatable)")
    robust.add_argument("--wording", action="append", default=None, metavar="TEXT", help="also score the first dataset with its task said as TEXT (repeatable)")
    robust.add_argument("--frame-step", action="append", type=int, default=None, metavar="K", help="also score the first dataset at every K-th frame: 1/K the frame rate, K times the speed per frame (repeatable)")
    robust.add_argument("--shift-size", action="append", type=int, default=None, metavar="PX", help="also score the first dataset with frames resampled to PX pixels (repeatable)")
    evaluate.add_argument("--device", default=None)
    evaluate.set_defaults(run=_reward_eval)
