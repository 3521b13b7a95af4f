"""`headway sim ...`: simulated data collection."""

from __future__ import annotations

import argparse

from headway.commands import add_run_dir_flags, config_flags, config_from_args, lazy_flags
from headway.executors import add_executor_arguments, ray_settings


def _sim_collect(args: argparse.Namespace) -> int:
    from headway.datasets.collect import CollectConfig, collect

    config = config_from_args(CollectConfig, args)
    ray = ray_settings(args.executor, args.address, args.workers, args.gpus_per_worker)
    on_ray = {"ray": ray} if ray is not None else {}  # the local call stays exactly as before
    summary = collect(config, resume=args.resume, overwrite=args.overwrite, **on_ray)
    print(summary.render())
    return 0


def _collect_flags(parser: argparse.ArgumentParser) -> None:
    """sim collect's flags, generated from CollectConfig (headway/datasets/collect.py)."""
    from headway.datasets.collect import CollectConfig, parse_mix
    from headway.sim.randomization import parse_randomization

    config_flags(
        CollectConfig, skip=("fast_render",), required=("out",), names={"image_size": "size", "failure_kinds": "failures"},
        parse={"mix": parse_mix, "randomize": parse_randomization},
    )(parser)


def register(commands: argparse._SubParsersAction) -> None:
    sim = commands.add_parser("sim", help="simulation: collect demonstrations")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="COMMAND")
    collect = sim_commands.add_parser("collect", help="collect scripted episodes into a LeRobot dataset")
    add_run_dir_flags(collect)
    add_executor_arguments(collect, "the rollouts")
    # CollectConfig.fast_render, kept as the opposite switch users know (generated, it would be --no-fast-render)
    collect.add_argument(
        "--full-render", dest="fast_render", action="store_false", default=argparse.SUPPRESS,
        help="keep multisampling, shadows and reflections",
    )
    lazy_flags(collect, _collect_flags)
    collect.set_defaults(run=_sim_collect)
