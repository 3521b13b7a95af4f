"""`headway demo`: the whole stack end to end on embedded defaults, stage by stage, each cached.

A stage's result is recorded in `<out>/stages.json` only once it is complete, so a rerun skips
finished stages and an interrupted demo resumes where it stopped (long stages resume too).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from headway.atomic import atomic_write_json, read_json
from headway.errors import HeadwayError

SIZES = {
    "quick": {"episodes": 16, "eval_episodes": 8, "reward_steps": 1200, "image_size": 84},
    "full": {"episodes": 40, "eval_episodes": 20, "reward_steps": 4000, "image_size": 84},
}


@dataclass
class DemoConfig:
    task: str = "lift"
    out: Path = Path("runs/demo")
    size: str = "quick"
    overrides: dict | None = None  # replaces entries of the size's settings (tests use tiny ones)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.size not in SIZES:
            raise HeadwayError(f"demo size {self.size!r} is not one of {sorted(SIZES)}")
        from headway.sim.task import get_task

        get_task(self.task)

    @property
    def settings(self) -> dict:
        return {**SIZES[self.size], **(self.overrides or {})}


class StageLog:
    """Which demo stages are finished, with their results, persisted atomically."""

    def __init__(self, path: Path, identity: dict) -> None:
        self.path = path
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
    """Run the demo stages that exist so far, write report.html and print where it is."""
    from headway.datasets.collect import CollectConfig, collect
    from headway.datasets.info import dataset_info, render_info
    from headway.reward.evaluate import METRIC_KEYS, evaluate, render_table
    from headway.reward.stage_reward import StageRewardModel
    from headway.reward.train import TrainConfig, train_reward_model

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    settings = config.settings
    log = StageLog(out / "stages.json", {"task": config.task, "size": config.size, "settings": settings})
    train_dir, eval_dir, reward_dir = out / "data" / "train", out / "data" / "eval", out / "reward_model"

    def collect_stage(target: Path, episodes: int, seed: int) -> Callable[[], dict]:
        def work() -> dict:
            summary = collect(
                CollectConfig(task=config.task, episodes=episodes, seed=seed, out=target, image_size=settings["image_size"]),
                resume=True,
            )
            print(summary.render())
            return {"dataset": str(target), "episodes": summary.episodes, "success_rate": summary.success_rate}

        return work

    log.run("collect training demonstrations", collect_stage(train_dir, settings["episodes"], seed=0))
    log.run("collect held-out demonstrations", collect_stage(eval_dir, settings["eval_episodes"], seed=1))
    info = log.run("summarise the dataset", lambda: dataset_info(train_dir))
    print(render_info(info))

    def train_stage() -> dict:
        summary = train_reward_model(
            TrainConfig(datasets=[train_dir], out=reward_dir, steps=settings["reward_steps"], image_size=settings["image_size"]),
            resume=True,
        )
        return {"checkpoint": str(reward_dir), "steps": summary["steps"], "final_loss": summary["final_loss"]}

    log.run("train the stage-aware reward model", train_stage)

    def eval_stage() -> dict:
        report = evaluate(StageRewardModel.load(reward_dir), [eval_dir], plots=out / "plots" / "progress")
        print(render_table(report))
        return report

    reward_report = log.run("evaluate the reward model on held-out episodes", eval_stage)
    report_path = write_demo_report(out, config, info, reward_report, log.data["stages"], METRIC_KEYS)
    print(f"[demo] finished; report: {report_path}")
    return log.data


def write_demo_report(out: Path, config: DemoConfig, info: dict, reward_report: dict, stages: dict, metric_keys) -> Path:
    from headway.report import html_table, inline_image, write_report

    rows = {"headway PRM": reward_report["metrics"], **reward_report["baselines"]}
    plots = sorted((out / "plots" / "progress").glob("*.png"))[:6]
    timing = {name: {"seconds": float(result.get("seconds", 0.0))} for name, result in stages.items()}
    sections = [
        (
            "Data",
            f"<p>{info['episodes']} training episodes ({info['frames']} frames) of <b>{config.task}</b>, views "
            f"{', '.join(info['views'])}, {info['fps']:g} fps.</p>"
            + html_table({m: {"episodes": c["episodes"], "succeeded": c["successes"]} for m, c in info["outcomes_by_mode"].items()}, ["episodes", "succeeded"]),
        ),
        (
            "Reward model on held-out episodes",
            f"<p>{reward_report['episodes']} held-out episodes (other seeds), same episodes for every row.</p>"
            + html_table(rows, list(metric_keys)),
        ),
        ("Progress of held-out episodes", "".join(inline_image(p) for p in plots)),
        ("Time per stage", html_table(timing, ["seconds"])),
    ]
    return write_report(out / "report.html", f"headway demo: {config.task} ({config.size})", sections)
