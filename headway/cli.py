"""The `headway` command: a thin layer over library functions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from headway.errors import HeadwayError


def _views(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _sim_collect(args: argparse.Namespace) -> int:
    from headway.datasets.collect import CollectConfig, collect, parse_mix

    config = CollectConfig(
        task=args.task,
        episodes=args.episodes,
        mix=parse_mix(args.mix),
        views=_views(args.views),
        image_size=args.size,
        seed=args.seed,
        out=args.out,
        fast_render=not args.full_render,
    )
    summary = collect(config, resume=args.resume, overwrite=args.overwrite)
    print(summary.render())
    return 0


def _dataset_info(args: argparse.Namespace) -> int:
    from headway.datasets.info import dataset_info, render_info

    info = dataset_info(args.dir)
    print(json.dumps(info, indent=2) if args.json else render_info(info))
    return 0


def _reward_train(args: argparse.Namespace) -> int:
    from headway.reward.train import TrainConfig, train_reward_model

    config = TrainConfig(
        datasets=args.dataset,
        out=args.out,
        encoder=args.encoder,
        views=_views(args.views) if args.views else None,
        image_size=args.size,
        steps=args.steps,
        linear_if_missing=args.linear_targets,
        allow_download=args.allow_download,
        seed=args.seed,
        device=args.device,
    )
    summary = train_reward_model(config, resume=args.resume)
    print(
        f"trained {summary['out']}: {summary['steps']} steps on {summary['episodes']} episodes "
        f"({summary['frames']} frames, views {', '.join(summary['views'])}), final loss {summary['final_loss']:.3f}, "
        f"{summary['seconds']:.0f} s"
    )
    return 0


def _reward_eval(args: argparse.Namespace) -> int:
    from headway.atomic import atomic_write_json
    from headway.reward.evaluate import evaluate, render_table
    from headway.reward.stage_reward import StageRewardModel

    model = StageRewardModel.load(args.model, device=args.device)
    report = evaluate(model, args.dataset, _views(args.views) if args.views else None, args.plots)
    print(render_table(report))
    if args.json:
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    if args.plots:
        print(f"progress plots in {args.plots}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from headway.demo import DemoConfig, run_demo

    run_demo(DemoConfig(task=args.task, out=args.out, size="full" if args.full else "quick"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from headway.datasets.collect import DEFAULT_MIX
    from headway.sim.env import DEFAULT_VIEWS

    parser = argparse.ArgumentParser(prog="headway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the whole stack end to end on embedded defaults")
    demo.add_argument("--task", default="lift")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small settings, minutes on a CPU (default)")
    size.add_argument("--full", action="store_true", help="benchmark-size settings")
    demo.set_defaults(run=_demo)

    sim = commands.add_parser("sim", help="simulation: collect demonstrations")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="COMMAND")
    collect = sim_commands.add_parser("collect", help="collect scripted episodes into a LeRobot dataset")
    collect.add_argument("--task", default="lift", help="lift, stack, pick_place_can or door")
    collect.add_argument("--episodes", type=int, default=50)
    mix_text = ",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items())
    collect.add_argument("--mix", default=mix_text, help=f"shares of expert/noisy/fail episodes (default {mix_text})")
    collect.add_argument("--views", default=",".join(DEFAULT_VIEWS), help="comma-separated camera names")
    collect.add_argument("--size", type=int, default=84, help="square image size in pixels")
    collect.add_argument("--seed", type=int, default=0)
    collect.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    collect.add_argument("--resume", action="store_true", help="finish an interrupted collection")
    collect.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    collect.add_argument("--full-render", action="store_true", help="keep multisampling, shadows and reflections")
    collect.set_defaults(run=_sim_collect)

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
    train.add_argument("--linear-targets", action="store_true", help="train unannotated episodes on linear-in-time progress")
    train.add_argument("--allow-download", action="store_true", help="let --encoder hf:<hub id> fetch weights not in the local cache")
    train.add_argument("--resume", action="store_true", help="continue an interrupted training in --out")
    train.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    train.set_defaults(run=_reward_train)
    evaluate = reward_commands.add_parser("eval", help="metrics on held-out episodes, with baselines")
    evaluate.add_argument("--model", type=Path, required=True)
    evaluate.add_argument("--dataset", type=Path, action="append", required=True)
    evaluate.add_argument("--views", default=None, help="score with this subset of the model's views")
    evaluate.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    evaluate.add_argument("--plots", type=Path, default=None, help="folder for per-episode progress plots")
    evaluate.add_argument("--device", default=None)
    evaluate.set_defaults(run=_reward_eval)

    dataset = commands.add_parser("dataset", help="inspect datasets")
    dataset_commands = dataset.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    info = dataset_commands.add_parser("info", help="views, fps, episodes, frames, tasks, stages, outcomes")
    info.add_argument("dir", type=Path)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(run=_dataset_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except HeadwayError as error:
        print(f"headway: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("headway: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
