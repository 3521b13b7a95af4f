"""`headway label ...`: label every frame of a LeRobot dataset with a reward model, resumably."""

from __future__ import annotations

import argparse
from pathlib import Path

from headway.executors import add_executor_arguments


def _label(args: argparse.Namespace) -> int:
    from headway.reward.labelling import LabelConfig, label_dataset, parse_episodes, parse_view_mapping

    config = LabelConfig(
        dataset=args.dataset,
        model=args.model,
        out=args.out,
        views=parse_view_mapping(args.view),
        episodes=parse_episodes(args.episodes),
        gamma=args.gamma,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        device=args.device,
        plots=args.plots,
        write_dataset=args.write_dataset,
        allow_download=args.allow_download,
        threads=args.threads,
        executor=args.executor,
        address=args.address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
    )
    summary = label_dataset(config, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    print(summary.render())
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    label = commands.add_parser(
        "label",
        help="label a LeRobot dataset with progress, stage, success, shaped reward and RA-BC weights",
        description="Score every frame of a LeRobot v3.0 dataset with a headway reward model. Writes "
        "sarm_progress.parquet (LeRobot's RA-BC schema), labels.parquet (the full table) and labels.json "
        "into --out; resumable after a crash with --resume.",
    )
    label.add_argument("--dataset", required=True, help="LeRobot v3.0 dataset folder (or a hub id in lerobot's cache)")
    label.add_argument("--model", required=True, help="reward model: a checkpoint folder, lerobot:TYPE:PATH or gvl:MODEL")
    label.add_argument("--out", type=Path, default=None, help="output folder (default: <dataset>.labels beside the dataset)")
    label.add_argument(
        "--view", action="append", default=[], metavar="MODEL_VIEW=DATASET_KEY",
        help="map a model view to a dataset camera, e.g. agentview=observation.images.top (repeatable; others match by name)",
    )
    label.add_argument("--episodes", default=None, help="episodes to label, e.g. 0-99,120 (default: all)")
    label.add_argument("--gamma", type=float, default=0.99, help="discount of the potential-based shaped reward (default 0.99)")
    label.add_argument("--chunk-size", type=int, default=50, help="RA-BC action-chunk length H in frames (default 50, as lerobot)")
    label.add_argument("--batch-size", type=int, default=256, help="frames per model batch (default 256)")
    label.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    label.add_argument("--threads", type=int, default=None, help="torch threads for scoring (default: all cores but one, which decodes)")
    add_executor_arguments(label, "the scoring")
    label.add_argument("--plots", type=int, default=0, metavar="N", help="draw a PNG and an MP4 for the first N episodes")
    label.add_argument("--write-dataset", type=Path, default=None, metavar="OUT", help="also write a copy of the dataset with the labels as features")
    label.add_argument("--resume", action="store_true", help="finish an interrupted run in --out")
    label.add_argument("--overwrite", action="store_true", help="replace labels from another model, dataset or settings")
    label.add_argument("--allow-download", action="store_true", help="let a hub id not in the local cache be downloaded")
    label.add_argument("--quiet", action="store_true", help="no progress bar")
    label.set_defaults(run=_label)
