"""`headway sim ...`: simulated data collection."""

from __future__ import annotations

import argparse
from pathlib import Path

from headway.commands import names_argument
from headway.executors import add_executor_arguments, ray_settings


def _sim_collect(args: argparse.Namespace) -> int:
    from headway.datasets.collect import CollectConfig, collect, parse_mix
    from headway.sim.randomization import parse_randomization

    config = CollectConfig(
        task=args.task,
        episodes=args.episodes,
        mix=parse_mix(args.mix),
        views=names_argument(args.views),
        image_size=args.size,
        seed=args.seed,
        out=args.out,
        fast_render=not args.full_render,
        failure_kinds=names_argument(args.failures),
        failure_stages=args.failure_stages,
        randomize=parse_randomization(args.randomize),
    )
    ray = ray_settings(args.executor, args.address, args.workers, args.gpus_per_worker)
    on_ray = {"ray": ray} if ray is not None else {}  # the local call stays exactly as before
    summary = collect(config, resume=args.resume, overwrite=args.overwrite, **on_ray)
    print(summary.render())
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from headway.datasets.collect import DEFAULT_MIX, FAILURE_STAGES
    from headway.sim.env import DEFAULT_VIEWS
    from headway.sim.expert import FAILURES, MODES

    sim = commands.add_parser("sim", help="simulation: collect demonstrations")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="COMMAND")
    collect = sim_commands.add_parser("collect", help="collect scripted episodes into a LeRobot dataset")
    collect.add_argument("--task", default="lift", help="lift, stack, pick_place_can or door")
    collect.add_argument("--episodes", type=int, default=50)
    mix_text = ",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items())
    collect.add_argument("--mix", default=mix_text, help=f"shares of episodes per mode ({'/'.join(MODES)}; default {mix_text})")
    collect.add_argument("--failures", default=",".join(FAILURES), help="failure kinds that failed episodes take in turn")
    collect.add_argument(
        "--failure-stages", default="random", choices=FAILURE_STAGES,
        help="where stall/away strike: a random stage per episode, or every stage in turn",
    )
    collect.add_argument("--views", default=",".join(DEFAULT_VIEWS), help="comma-separated camera names")
    collect.add_argument("--size", type=int, default=84, help="square image size in pixels")
    collect.add_argument(
        "--randomize", default="", metavar="KIND[=STRENGTH],...",
        help="randomise each episode's scene from its seed: camera (0-4, 1 = +-2 cm / 5 deg / +-2 deg fovy), "
        "lighting (0-4, 1 = robosuite's default), texture (0-1, blend of a random table/floor/wall pattern), "
        "color (0-1, blend of a random robot colour), dynamics (0-4); strength 1 if left out; "
        "'mild' = camera=0.5,lighting=0.5,texture=0.15,color=0.15. Default: the nominal scene",
    )
    collect.add_argument("--seed", type=int, default=0)
    collect.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    collect.add_argument("--resume", action="store_true", help="finish an interrupted collection")
    collect.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    add_executor_arguments(collect, "the rollouts")
    collect.add_argument("--full-render", action="store_true", help="keep multisampling, shadows and reflections")
    collect.set_defaults(run=_sim_collect)
