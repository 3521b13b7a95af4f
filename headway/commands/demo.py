"""`headway demo`: the whole stack end to end on embedded defaults."""

from __future__ import annotations

import argparse

from headway.commands import config_flags, config_from_args, lazy_flags


def _demo(args: argparse.Namespace) -> int:
    from headway.demo import DemoConfig, run_demo

    run_demo(config_from_args(DemoConfig, args))
    return 0


def _demo_flags(parser: argparse.ArgumentParser) -> None:
    """demo's flags, generated from DemoConfig (headway/demo.py); its size is the --quick/--full switch."""
    from headway.demo import DemoConfig

    config_flags(DemoConfig, skip=("size",))(parser)


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the whole stack end to end on embedded defaults")
    # DemoConfig.size, two sizes spelled as two switches (a generated flag would be --size quick|full)
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="size", action="store_const", const="quick", default=argparse.SUPPRESS,
                      help="small settings, minutes on a CPU (default)")
    size.add_argument("--full", dest="size", action="store_const", const="full", default=argparse.SUPPRESS, help="benchmark-size settings")
    lazy_flags(demo, _demo_flags)
    demo.set_defaults(run=_demo)
