"""`headway demo`: the whole stack end to end on embedded defaults."""

from __future__ import annotations

import argparse
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from headway.demo import DemoConfig, run_demo

    run_demo(DemoConfig(task=args.task, out=args.out, size="full" if args.full else "quick"))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the whole stack end to end on embedded defaults")
    demo.add_argument("--task", default="lift")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small settings, minutes on a CPU (default)")
    size.add_argument("--full", action="store_true", help="benchmark-size settings")
    demo.set_defaults(run=_demo)
