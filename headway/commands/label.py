"""`headway label ...`: label every frame of a LeRobot dataset with a reward model, resumably."""

from __future__ import annotations

import argparse

from headway.commands import add_run_dir_flags, config_flags, config_from_args, lazy_flags
from headway.executors import add_executor_arguments


def _label(args: argparse.Namespace) -> int:
    from headway.reward.labelling import LabelConfig, label_dataset

    config = config_from_args(LabelConfig, args)
    summary = label_dataset(config, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    print(summary.render())
    return 0


def _label_flags(parser: argparse.ArgumentParser) -> None:
    """label's flags, generated from LabelConfig (headway/reward/labelling.py); its Ray fields come
    from add_executor_arguments, the same flags on every command that has them."""
    from headway.reward.labelling import LabelConfig, parse_episodes

    config_flags(LabelConfig, skip=("executor", "address", "workers", "gpus_per_worker"), parse={"episodes": parse_episodes})(parser)


def register(commands: argparse._SubParsersAction) -> None:
    label = commands.add_parser(
        "label",
        help="label a LeRobot dataset with progress, stage, success, shaped reward and RA-BC weights",
        description="Score every frame of a LeRobot v3.0 dataset with a headway reward model. Writes "
        "sarm_progress.parquet (LeRobot's RA-BC schema), labels.parquet (the full table) and labels.json "
        "into --out; resumable after a crash with --resume.",
    )
    # LabelConfig.views, a mapping: one repeatable flag per pair, which LabelConfig parses
    label.add_argument(
        "--view", dest="views", action="append", default=argparse.SUPPRESS, metavar="MODEL_VIEW=DATASET_KEY",
        help="map a model view to a dataset camera, e.g. agentview=observation.images.top (repeatable; others match by name)",
    )
    add_executor_arguments(label, "the scoring")
    add_run_dir_flags(label)
    label.add_argument("--quiet", action="store_true", help="no progress bar")
    lazy_flags(label, _label_flags)
    label.set_defaults(run=_label)
