"""`headway demo`: the whole stack end to end on embedded defaults, stage by stage, each cached.

A stage's result is recorded in `<out>/stages.json` only once it is complete, so a rerun skips
finished stages and an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from headway.atomic import atomic_write_json, read_json
from headway.errors import HeadwayError

SIZES = {
    # episodes collected for training; held-out evaluation episodes
    "quick": {"episodes": 16, "eval_episodes": 8},
    "full": {"episodes": 60, "eval_episodes": 20},
}


@dataclass
class DemoConfig:
    task: str = "lift"
    out: Path = Path("runs/demo")
    size: str = "quick"

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.size not in SIZES:
            raise HeadwayError(f"demo size {self.size!r} is not one of {sorted(SIZES)}")
        from headway.sim.task import get_task

        get_task(self.task)

    @property
    def settings(self) -> dict:
        return SIZES[self.size]


class StageLog:
    """Which demo stages are finished, with their results, persisted atomically."""

    def __init__(self, path: Path, config: DemoConfig) -> None:
        self.path = path
        identity = {"task": config.task, "size": config.size}
        self.data = read_json(path) if path.exists() else {"config": identity, "stages": {}}
        if self.data["config"] != identity:
            raise HeadwayError(
                f"{path.parent} holds a demo run with other settings ({self.data['config']}); "
                "choose another --out or delete that folder"
            )

    def run(self, name: str, work: Callable[[], dict]) -> dict:
        if name in self.data["stages"]:
            print(f"[demo] {name}: done earlier, skipped")
            return self.data["stages"][name]
        print(f"[demo] {name} ...")
        started = time.perf_counter()
        result = work()
        result["seconds"] = round(time.perf_counter() - started, 1)
        self.data["stages"][name] = result
        atomic_write_json(self.path, self.data)
        return result


def run_demo(config: DemoConfig) -> dict:
    """Run the demo stages that exist so far and print where the results are."""
    from headway.datasets.collect import CollectConfig, collect
    from headway.datasets.info import dataset_info, render_info

    config.out.mkdir(parents=True, exist_ok=True)
    log = StageLog(config.out / "stages.json", config)
    settings = config.settings
    train_dir, eval_dir = config.out / "data" / "train", config.out / "data" / "eval"

    def collect_stage(out: Path, episodes: int, seed: int) -> Callable[[], dict]:
        def work() -> dict:
            summary = collect(CollectConfig(task=config.task, episodes=episodes, seed=seed, out=out), resume=True)
            print(summary.render())
            return {"dataset": str(out), "episodes": summary.episodes, "success_rate": summary.success_rate}

        return work

    log.run("collect training demonstrations", collect_stage(train_dir, settings["episodes"], seed=0))
    log.run("collect held-out demonstrations", collect_stage(eval_dir, settings["eval_episodes"], seed=1))
    info = log.run("summarise the dataset", lambda: dataset_info(train_dir))
    print(render_info(info))
    print(f"[demo] finished; results in {config.out}")
    return log.data
