"""`headway dataset ...`: inspect datasets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _dataset_info(args: argparse.Namespace) -> int:
    from headway.datasets.info import dataset_info, render_info

    info = dataset_info(args.dir)
    print(json.dumps(info, indent=2) if args.json else render_info(info))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    dataset = commands.add_parser("dataset", help="inspect datasets")
    dataset_commands = dataset.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    info = dataset_commands.add_parser("info", help="views, fps, episodes, frames, tasks, stages, outcomes")
    info.add_argument("dir", type=Path)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(run=_dataset_info)
