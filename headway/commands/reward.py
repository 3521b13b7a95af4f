"""`headway reward ...`: train and evaluate process reward models."""

from __future__ import annotations

import argparse
from pathlib import Path

from headway.commands import add_run_dir_flags, config_flags, config_from_args, lazy_flags, names_argument


def _reward_train(args: argparse.Namespace) -> int:
    from headway.reward.train import TrainConfig, train_reward_model

    summary = train_reward_model(config_from_args(TrainConfig, args), resume=args.resume, overwrite=args.overwrite)
    if summary.get("rank", 0) != 0:  # under torchrun, rank 0 speaks for every process
        return 0
    print(
        f"trained {summary['out']}: {summary['steps']} steps on {summary['episodes']} episodes "
        f"({summary['frames']} frames, views {', '.join(summary['views'])}), final loss {summary['final_loss']:.3f}, "
        f"{summary['seconds']:.0f} s"
    )
    return 0


def _train_flags(parser: argparse.ArgumentParser) -> None:
    """reward train's flags, generated from TrainConfig (headway/reward/train.py)."""
    from headway.reward.train import TrainConfig

    config_flags(
        TrainConfig,
        names={"datasets": "dataset", "image_size": "size", "rotate_degrees": "rotate", "linear_if_missing": "linear_targets"},
    )(parser)


def _reward_eval(args: argparse.Namespace) -> int:
    from headway.atomic import atomic_write_json
    from headway.reward.evaluate import evaluate, render_table
    from headway.reward.loading import load_reward_model

    model = load_reward_model(args.model, device=args.device)
    views = names_argument(args.views) if args.views else None
    if args.report or args.label or args.wording or args.fps or args.speed or args.shift_size:
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
        args.dataset, args.label, args.task_text, args.wording or [], args.fps or [], args.shift_size or [], args.speed or []
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
    add_run_dir_flags(train)
    lazy_flags(train, _train_flags)
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
    robust.add_argument("--fps", action="append", type=float, default=None, metavar="F", help="also score the first dataset as if recorded at F fps: its nearest frames at F fps, declared at F (the model sees them at its own rate) (repeatable)")
    robust.add_argument("--speed", action="append", type=float, default=None, metavar="S", help="also score the first dataset as if its robot moved S times as fast (frames dropped or repeated at the same frame rate) (repeatable)")
    robust.add_argument("--shift-size", action="append", type=int, default=None, metavar="PX", help="also score the first dataset with frames resampled to PX pixels (repeatable)")
    evaluate.add_argument("--device", default=None)
    evaluate.set_defaults(run=_reward_eval)
