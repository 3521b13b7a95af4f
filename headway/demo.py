"""`headway demo`: the whole stack end to end on embedded defaults, stage by stage, each cached.

Stages: collect a mixed-quality multi-view dataset and a held-out one; train the stage-aware
reward model and the keypoint model; evaluate both on held-out seeds against baselines; label the
dataset; train BC, RA-BC and IQL (on the labels' shaped reward) policies and evaluate them; fine-tune with online RL under the reward
model's potential-based shaping against the sparse reward; roll a policy out through the hardware
layer's simulated arm with the live reward; write one HTML report.

`<out>/demo.json` holds the run's settings (headway.run_dir). A stage's result is recorded in
`<out>/stages.json` only once it is complete, so a rerun skips finished stages and an interrupted
demo resumes where it stopped (long stages resume too).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from headway.atomic import atomic_write_json, read_json
from headway.demo_report import write_demo_report, write_report_figure
from headway.errors import HeadwayError
from headway.run_dir import RunDir
from headway.sim.task import get_task

SIZES = {
    "quick": {
        "episodes": 16,
        "eval_episodes": 8,
        "reward_steps": 1000,
        "keypoint_steps": 500,
        "bc_steps": 1500,
        "policy_eval_episodes": 10,
        "rl_steps": 2000,
        "rl_eval_every": 500,
        "rl_eval_episodes": 10,
        "rollout_episodes": 2,
        "horizon": None,  # episode limit for policy evaluation, RL and rollouts (None: the task's)
        "image_size": 84,
    },
    "full": {
        "episodes": 40,
        "eval_episodes": 20,
        "reward_steps": 4000,
        "keypoint_steps": 3000,
        "bc_steps": 3000,
        "policy_eval_episodes": 50,
        "rl_steps": 10000,
        "rl_eval_every": 1000,
        "rl_eval_episodes": 20,
        "rollout_episodes": 5,
        "horizon": None,
        "image_size": 84,
    },
}
BC_CHUNK = 10


@dataclass
class DemoConfig:
    task: str = "lift"  # lift, stack, pick_place_can or door
    out: Path = Path("runs/demo")  # run folder for every stage's output
    size: str = "quick"
    overwrite: bool = False  # start over in an --out holding a demo run with other settings
    overrides: dict | None = None  # replaces entries of the size's settings (tests use tiny ones)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.size not in SIZES:
            raise HeadwayError(f"demo size {self.size!r} is not one of {sorted(SIZES)}")
        get_task(self.task)
        unknown = set(self.overrides or {}) - set(SIZES[self.size])
        if unknown:
            raise HeadwayError(f"unknown demo settings {sorted(unknown)}; known: {sorted(SIZES[self.size])}")

    @property
    def settings(self) -> dict:
        return {**SIZES[self.size], **(self.overrides or {})}


class StageLog:
    """Which demo stages are finished, with their results, persisted atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = read_json(path) if path.exists() else {"stages": {}}

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


class DemoPaths:
    """Where each stage keeps its output inside `--out`."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.train_data = out / "data" / "train"
        self.eval_data = out / "data" / "eval"
        self.reward_model = out / "models" / "reward"
        self.keypoint_model = out / "models" / "keypoints"
        self.labels = out / "labels"
        self.bc = out / "models" / "bc"
        self.rabc = out / "models" / "rabc"
        self.iql = out / "models" / "iql"
        self.rl = out / "rl"
        self.rollout = out / "rollout"
        self.plots = out / "plots"


def run_demo(config: DemoConfig) -> dict:
    """Run every demo stage (skipping finished ones), write report.html and print where it is."""
    settings = config.settings
    identity = {"task": config.task, "size": config.size, "settings": settings}
    RunDir(config.out, job="demo run", identity=identity, identity_file="demo.json").open(resume=True, overwrite=config.overwrite)
    log = StageLog(config.out / "stages.json")
    paths = DemoPaths(config.out)
    results: dict[str, dict] = {}
    for name, stage in STAGES:
        results[name] = log.run(name, lambda stage=stage: stage(config, settings, paths))
    report_path = write_demo_report(config, paths, results, log.data["stages"])
    figure_path = write_report_figure(config, paths, results)
    print(f"[demo] finished; report: {report_path} (summary picture: {figure_path})")
    return log.data


# -- stages ------------------------------------------------------------------------------------------
# deferred: each stage imports its own stack (torch, robosuite, pandas, ...) inside its function, so a
# stage already finished (cached) loads none of it.
def _collect(target_attr: str, episodes_key: str, seed: int) -> Callable[[DemoConfig, dict, DemoPaths], dict]:
    def stage(config: DemoConfig, settings: dict, paths: DemoPaths) -> dict:
        from headway.datasets.collect import CollectConfig, collect

        target = getattr(paths, target_attr)
        collect_config = CollectConfig(
            task=config.task, episodes=settings[episodes_key], seed=seed, out=target, image_size=settings["image_size"]
        )
        summary = collect(collect_config, resume=True)
        print(summary.render())
        return {"dataset": str(target), "episodes": summary.episodes, "success_rate": summary.success_rate}

    return stage


def _summarise(config: DemoConfig, settings: dict, paths: DemoPaths) -> dict:
    from headway.datasets.info import dataset_info, render_info

    info = dataset_info(paths.train_data)
    print(render_info(info))
    return info


def _train_reward(config: DemoConfig, settings: dict, paths: DemoPaths) -> dict:
    from headway.reward.train import TrainConfig, train_reward_model

    train_config = TrainConfig(
        datasets=[paths.train_data], out=paths.reward_model, steps=settings["reward_steps"], image_size=settings["image_size"]
    )
    summary = train_reward_model(train_config, resume=True)
    return {"checkpoint": str(paths.reward_model), "steps": summary["steps"], "final_loss": summary["final_loss"]}


def _evaluate_reward(config: DemoConfig, settings: dict, paths: DemoPaths) -> dict:
    from headway.reward.evaluate import evaluate, render_table
    from headway.reward.loading import load_reward_model

    report = evaluate(load_reward_model(paths.reward_model), [paths.eval_data], plots=paths.plots / "progress")
    print(render_table(report))
    return report


def _train_keypoints(config: DemoConfig, settings: dict, paths: DemoPaths) -> dict:
    from headway.perception.keypoint_train import KeypointTrainConfig, train_keypoint_model

    summary = train_keypoint_model(
        KeypointTrainConfig(datasets=[paths.train_data], out=paths.keypoint_model, steps=settings["keypoint_steps"]), resume=True
    )
    return {"checkpoint": str(paths.keypoint_model), "steps": summary["steps"], "final_loss": summary["final_loss"]}


def _evaluate_keypoints(config: DemoConfig, settings: dict, paths: DemoPaths) -> dict:
    from headway.perception.keypoint_model import KeypointModel
    from headway.perception.keypoint_train import evaluate_keypoints, render_report

    report = evaluate_keypoints(KeypointModel.load(paths.keypoint_model), paths.eval_data, plots=paths.plots / "keypoints")
    print(render_report(report))
    return report


def _label(config: DemoConfig, settings: dict, paths: DemoPaths) -> dict:
    from headway.reward.labelling import LabelConfig, label_dataset

    label_config = LabelConfig(
        dataset=paths.train_data, model=paths.reward_model, out=paths.labels, chunk_size=BC_CHUNK, plots=2
    )
    summary = label_dataset(label_config, resume=True)
    print(summary.render())
    return {
        "progress_path": str(summary.progress_path),
        "table_path": str(summary.table_path),
        "frames": summary.frames,
        "frames_per_second": summary.frames_per_second,
        "mean_final_progress_success": summary.mean_final_progress_success,
        "mean_final_progress_failure": summary.mean_final_progress_failure,
        "plots": [str(p) for p in summary.plots],
    }


def _policies(config: DemoConfig, settings: dict, paths: DemoPaths) -> dict:
    from headway.policy.bc import BCConfig, train_bc
    from headway.policy.evaluate import evaluate_policy, render_summary
    from headway.policy.iql import IQLConfig, train_iql
    from headway.policy.interface import load_policy

    common = {"dataset": paths.train_data, "chunk": BC_CHUNK, "steps": settings["bc_steps"]}
    trainers = {
        "BC": (paths.bc, lambda out: train_bc(BCConfig(out=out, **common))),
        "RA-BC": (paths.rabc, lambda out: train_bc(BCConfig(out=out, weights="rabc", labels=paths.labels, **common))),
        "IQL": (paths.iql, lambda out: train_iql(IQLConfig(out=out, labels=paths.labels, **common))),
    }
    rows = {}
    for name, (out, train) in trainers.items():
        if not (out / "config.json").exists():
            train(out)
        report = evaluate_policy(
            load_policy(out), config.task, episodes=settings["policy_eval_episodes"], horizon=settings["horizon"], videos=1, video_dir=paths.plots / "policies" / name
        )
        print(render_summary(report, name))
        rows[name] = {k: report[k] for k in ("success_rate", "mean_return", "mean_dense_return", "mean_length")}
        rows[name]["checkpoint"] = str(out)
        rows[name]["videos"] = [str(v) for v in report.get("videos", [])]
    return rows


def _reinforce(config: DemoConfig, settings: dict, paths: DemoPaths) -> dict:
    """Online RL from a deliberately weak start (BC on three demonstrations), reward model + pbrs vs
    sparse, through headway/policy/rl_runner.py's defaults: the weak policy's own network is re-cloned from
    its demonstrations plus its successful training episodes (headway/policy/rl_awr.py), so each curve starts
    at that policy's own success."""
    import numpy as np

    from headway.policy.bc import BCConfig, train_bc
    from headway.policy.rl_runner import OnlineRLConfig, run_online_rl

    weak = paths.out / "models" / "bc_weak"
    if not (weak / "config.json").exists():
        train_bc(BCConfig(dataset=paths.train_data, out=weak, chunk=BC_CHUNK, steps=max(1, settings["bc_steps"] // 2), episodes=(0, 1, 2)))
    runs = {}
    for name, reward in (("PRM + pbrs", f"prm:{paths.reward_model}"), ("sparse", "sparse")):
        out = paths.rl / name.split()[0].lower()
        summary = run_online_rl(
            OnlineRLConfig(
                task=config.task,
                method="awr",
                reward=reward,
                init=weak,
                demos=paths.train_data,
                steps=settings["rl_steps"],
                eval_every=settings["rl_eval_every"],
                eval_episodes=settings["rl_eval_episodes"],
                horizon=settings["horizon"],
                out=out,
            ),
            resume=True,
        )
        steps, success = summary["eval_steps"], summary["eval_success"]
        span = steps[-1] - steps[0] if len(steps) > 1 else 0
        runs[name] = {
            "start_success_rate": summary["start_success"],
            "final_success_rate": summary["final_success"],
            "success_auc": float(np.trapezoid(success, steps) / span) if span else success[-1],
            "eval_steps": steps,
            "eval_success": success,
            "init": str(weak),
        }
    curve = paths.rl / "learning_curves.png"
    _plot_curves(runs, curve, f"{config.task}: online RL from a weak BC start ({settings['rl_eval_episodes']} held-out episodes per point)")
    for row in runs.values():
        row["learning_curve"] = str(curve)
    return runs


def _plot_curves(runs: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, row in runs.items():
        ax.plot(row["eval_steps"], row["eval_success"], marker="o", label=name)
    ax.set(xlabel="environment steps", ylabel="success (held-out seeds)", ylim=(-0.05, 1.05), title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rollout(config: DemoConfig, settings: dict, paths: DemoPaths) -> dict:
    from headway.hardware.controller import RolloutConfig
    from headway.hardware.rollout_session import render_summary, run_rollouts
    from headway.sim.env import CONTROL_FREQ

    summary = run_rollouts(
        RolloutConfig(
            robot=f"sim:{config.task}",
            policy=paths.rabc,
            reward=paths.reward_model,
            record=paths.rollout,
            episodes=settings["rollout_episodes"],
            max_seconds=settings["horizon"] / CONTROL_FREQ if settings["horizon"] else None,
            resume=True,
        )
    )
    print(render_summary(summary))
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in summary.items()}


STAGES: list[tuple[str, Callable[[DemoConfig, dict, DemoPaths], dict]]] = [
    ("collect training demonstrations", _collect("train_data", "episodes", seed=0)),
    ("collect held-out demonstrations", _collect("eval_data", "eval_episodes", seed=1)),
    ("summarise the dataset", _summarise),
    ("train the stage-aware reward model", _train_reward),
    ("evaluate the reward model on held-out episodes", _evaluate_reward),
    ("train the keypoint model", _train_keypoints),
    ("evaluate the keypoint model on held-out episodes", _evaluate_keypoints),
    ("label the training dataset", _label),
    ("train and evaluate BC, RA-BC and IQL policies", _policies),
    ("fine-tune with online RL: reward model + pbrs vs sparse", _reinforce),
    ("roll out through the hardware layer with the live reward", _rollout),
]
