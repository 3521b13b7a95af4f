"""Simulation throughput: env steps/s with two 84x84 views on lift, headway's render settings
against robosuite's defaults in the same run, and collection throughput (frames written/s).

    uv run python bench/sim_throughput.py [--steps 200] [--episodes 6]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from headway.datasets.collect import CollectConfig, collect
from headway.sim.env import make_env


def steps_per_second(fast_render: bool, steps: int) -> float:
    env = make_env("lift", image_size=84, fast_render=fast_render, horizon=10**6)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(10):  # warm up the renderer
        env.step(rng.uniform(-0.2, 0.2, 7))
    started = time.perf_counter()
    for _ in range(steps):
        env.step(rng.uniform(-0.2, 0.2, 7))
    rate = steps / (time.perf_counter() - started)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--episodes", type=int, default=6)
    args = parser.parse_args()

    robosuite_default = steps_per_second(fast_render=False, steps=args.steps)
    headway = steps_per_second(fast_render=True, steps=args.steps)
    print("lift, 2 views at 84x84, env steps per second (each step renders both views)")
    print(f"  robosuite default rendering  {robosuite_default:7.1f} steps/s  ({2 * robosuite_default:6.1f} camera frames/s)")
    print(f"  headway fast rendering       {headway:7.1f} steps/s  ({2 * headway:6.1f} camera frames/s)")
    print(f"  ratio headway / robosuite    {headway / robosuite_default:7.2f}x")

    out = Path(tempfile.mkdtemp()) / "lift"
    try:
        summary = collect(CollectConfig(task="lift", episodes=args.episodes, out=out), progress=False)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    print(f"collection (sim + staging + LeRobot video encoding): {summary.frames} frames in {summary.seconds:.1f} s "
          f"= {summary.frames / summary.seconds:.1f} frames/s ({summary.episodes} episodes, mix 0.6/0.2/0.2)")


if __name__ == "__main__":
    main()
