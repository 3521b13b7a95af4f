"""Reward models on the learner's own states: replay an online RL run's training episodes and score them.

    MUJOCO_GL=egl uv run python bench/onpolicy_reward.py --runs runs/s9/stack_noreset/seed2/prm+pbrs \\
        --models runs/bench_policies/reward/stack runs/s10/reward/stack_fail --out runs/s10/onpolicy

A reward model is trained and measured on demonstrations; online RL asks it about the states a weak,
noisy policy reaches, which demonstrations rarely show (an empty gripper carried to the target, a
cube nudged off). This bench tells "shaping does not help this learner" from "the potential is wrong
where the learner goes":
1. every training episode of each `--runs` folder (a `headway rl finetune` output: `train.csv` holds
   each episode's reset seed, the last checkpoint's `replay.npz` its executed actions) is replayed in
   the simulator from its seed with its actions (replay is exact: the object states are checked
   against the recorded ones) and rendered in the models' views;
2. each model scores the replayed frames as the runner does (only every stride-th frame is rendered and
   scored, the potential held in between);
3. the simulator's true progress (`oracle_potential`, the oracle arm's potential) is the reference; a
   stage model's progress, whose stages span the data's proportions, is put on the oracle's scale
   (each stage 1 / stages) before comparing.

Per model: mean absolute error to the true progress over all frames; over failed episodes, how often
the potential's peak exceeds the true peak by more than --overshoot (a false high that pbrs pays for and
that the early reset and `failure_peak` trust); the AUROC of the episode's peak potential for "the
episode truly got past --stage" (true peak progress above that stage's start); and the mean peak on
failures whose true progress never left the first stage. The ratio line compares each model to the first.
Replays are kept in OUT/replays (one .npz per episode; a killed run resumes, and new models are scored
without replaying); writes OUT/onpolicy_reward.json, OUT/onpolicy_reward.md and OUT/onpolicy_reward.png
(each episode's potential peak against its true peak, per model).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from headway.atomic import atomic_write_json, latest_checkpoint, read_json
from headway.csvlog import read_rows
from headway.reward.metrics import auroc
from headway.reward.shaping import potential
from headway.runtime import set_torch_threads


def replay_run(run: Path, folder: Path, views: tuple[str, ...], image_size: int, every: int, max_episodes: int | None) -> None:
    """Replay `run`'s training episodes into `folder`: per episode the rendered frames (every `every`-th),
    states, true progress and success (one .npz each, written atomically, so a killed replay resumes)."""
    from headway.policy.vec_env import VecEnv, VecEnvSpec

    checkpoint = latest_checkpoint(run)  # the last complete one, as a resumed run would take
    if checkpoint is None or not (checkpoint / "replay.npz").exists() or not (run / "train.csv").exists():
        raise SystemExit(f"{run} is not a finished `headway rl finetune --method awr` run (no train.csv or checkpoints/*/replay.npz)")
    with np.load(checkpoint / "replay.npz") as archive:  # each key of an .npz is decompressed on every access: read them once
        stored = {key: archive[key] for key in ("lengths", "actions", "obs", "success")}
    rows = read_rows(run / "train.csv", read_json(run / "latest.json")["step"])
    lengths = stored["lengths"]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    count = len(lengths) if max_episodes is None else min(max_episodes, len(lengths))
    missing = [k for k in range(count) if not (folder / f"episode_{k:04d}.npz").exists()]
    if not missing:
        return
    folder.mkdir(parents=True, exist_ok=True)
    task = json.loads((run / "config.json").read_text())["task"]
    env = VecEnv(VecEnvSpec(task, views=views, image_size=image_size, terminate_on_success=True), 1, processes=False)
    try:
        for k in tqdm(missing, desc=f"replay {run}", leave=False):
            actions = stored["actions"][starts[k] : starts[k + 1]]
            observation, info = env.reset([0], [int(rows[k]["seed"])])[0]
            frames, states, objects, truth = {v: [observation["images"][v]] for v in views}, [observation["state"]], [observation["object"]], [info["oracle_potential"]]
            for t, action in enumerate(actions, start=1):
                observation, _, _, _, info = env.step(action[None], render=[t % every == 0])[0]
                for v in views if t % every == 0 else ():
                    frames[v].append(observation["images"][v])
                states.append(observation["state"])
                objects.append(observation["object"])
                truth.append(info["oracle_potential"])
            recorded = stored["obs"][starts[k] + k : starts[k + 1] + k + 1][:, -len(objects[0]) :]
            if not np.allclose(np.stack(objects), recorded, atol=1e-4):
                raise SystemExit(f"{run}: episode {k} does not replay to its recorded states; the simulator or the run's settings changed")
            partial = folder / f".episode_{k:04d}.npz"
            np.savez_compressed(partial, **{f"frames.{v}": np.stack(frames[v]) for v in views}, state=np.stack(states),
                                truth=np.array(truth), success=bool(stored["success"][k]), every=every)
            partial.rename(folder / f"episode_{k:04d}.npz")
    finally:
        env.close()


def uniform_progress(phi: np.ndarray, proportions) -> np.ndarray:
    """A stage model's progress (stages weighted by the data's proportions) on the oracle's scale, where
    every stage spans 1 / stages: (stage + tau) / stages."""
    if not proportions:
        return phi
    bounds = np.concatenate([[0.0], np.cumsum(proportions)])
    stage = np.clip(np.searchsorted(bounds, phi, side="right") - 1, 0, len(proportions) - 1)
    tau = np.clip((phi - bounds[stage]) / np.asarray(proportions)[stage], 0.0, 1.0)
    return (stage + tau) / len(proportions)


def load_replays(folder: Path) -> list[dict]:
    """The replayed episodes of `folder`, every array read once: the rendered frames per view, states, true
    progress, success and the render stride."""
    episodes = []
    for path in sorted(folder.glob("episode_*.npz")):
        with np.load(path) as saved:
            frames = {key.removeprefix("frames."): saved[key] for key in saved.files if key.startswith("frames.")}
            episodes.append({"frames": frames, "state": saved["state"], "truth": saved["truth"], "success": bool(saved["success"]), "every": int(saved["every"])})
    return episodes


def score_replays(replays: list[dict], model, task: str) -> list[dict]:
    """Each replayed episode's true progress and `model`'s potential per frame (held between scored frames),
    on the oracle's scale."""
    episodes = []
    for replay in replays:
        length, every = len(replay["truth"]), replay["every"]
        images = {}
        for v in model.views:  # frames not rendered are never read: a blank stands in
            rendered = replay["frames"][v]
            images[v] = np.zeros((length, *rendered.shape[1:]), rendered.dtype)
            images[v][::every] = rendered
        phi = potential(model.score_episode(images, task, replay["state"]), finite=False)
        phi = uniform_progress(phi, getattr(getattr(model, "config", None), "stage_proportions", ()))
        episodes.append({"success": replay["success"], "truth": replay["truth"].tolist(),
                         "potential": phi[np.arange(length) // every * every].tolist()})
    return episodes


def summarise(episodes: list[dict], stage_start: float, first_stage_end: float, overshoot: float) -> dict:
    """One model's figures over replayed episodes (see the module docstring)."""
    failed = [e for e in episodes if not e["success"]]
    got_past = np.array([max(e["truth"]) > stage_start for e in episodes])
    errors = np.concatenate([np.abs(np.array(e["potential"]) - np.array(e["truth"])) for e in episodes])
    peaks = np.array([max(e["potential"]) for e in episodes])
    stuck = [max(e["potential"]) for e in failed if max(e["truth"]) < first_stage_end]
    return {
        "mae": float(errors.mean()),
        "false_high_rate": float(np.mean([max(e["potential"]) - max(e["truth"]) > overshoot for e in failed])) if failed else float("nan"),
        "peak_auroc": auroc(peaks, got_past) if 0 < got_past.sum() < len(got_past) else float("nan"),
        "mean_peak_first_stage_failures": float(np.mean(stuck)) if stuck else float("nan"),
        "first_stage_failures": len(stuck),
    }


def plot(peaks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], overshoot: float, path: Path) -> None:
    """Per model, each episode's potential peak against its true peak (failures and successes marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(peaks), figsize=(4.2 * len(peaks), 4.2), squeeze=False)
    for ax, (name, (truth, model, success)) in zip(axes[0], peaks.items()):
        ax.scatter(truth[~success], model[~success], s=14, color="tab:red", alpha=0.7, label="failed")
        ax.scatter(truth[success], model[success], s=14, color="tab:green", alpha=0.7, label="succeeded")
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
        ax.plot([0, 1 - overshoot], [overshoot, 1], color="grey", linestyle=":", linewidth=0.8)
        ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="true peak progress (simulator)", ylabel="model's peak potential", title=Path(name).name)
        ax.legend(fontsize=7, loc="lower right")
    figure.suptitle(f"reward models on the learner's own episodes\n(above the dotted line: false high > {overshoot})", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="`headway rl finetune` output folders (awr)")
    parser.add_argument("--models", nargs="+", required=True, help="reward model checkpoints; the first is the reference of the ratios")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-episodes", type=int, default=None, help="per run, the first N training episodes (default: all)")
    parser.add_argument("--stage", type=int, default=None, help="the stage whose start 'got past' is judged at (default: the middle stage)")
    parser.add_argument("--overshoot", type=float, default=0.3, help="a failed episode's potential peak this far above its true peak is a false high")
    args = parser.parse_args()
    set_torch_threads(1)
    from headway.policy.rl_potential import default_score_every
    from headway.reward.loading import load_reward_model
    from headway.sim.task import get_task

    started = time.time()
    models = [load_reward_model(m) for m in args.models]
    tasks = {json.loads((run / "config.json").read_text())["task"] for run in args.runs}
    if len(tasks) != 1:
        raise SystemExit(f"--runs mix tasks {sorted(tasks)}; bench one task at a time")
    task = get_task(tasks.pop())
    every = {default_score_every(m) for m in models}
    if len(every) != 1:
        raise SystemExit(f"the models score every {sorted(every)} frames; bench models of one frame stride together")
    every = every.pop()  # only those frames are rendered and read, as in the runner
    views = tuple(dict.fromkeys(v for m in models for v in m.views))
    sizes = {int(m.image_size) for m in models}
    replays = []
    for run in args.runs:
        folder = args.out / "replays" / str(run).strip("/").replace("/", "__")
        replay_run(run, folder, views, max(sizes), every, args.max_episodes)
        replays += load_replays(folder)
    count, failed = len(replays), sum(not r["success"] for r in replays)
    stages = len(task.stages)
    stage = stages // 2 if args.stage is None else args.stage
    rows, peaks = [], {}
    for name, model in zip(args.models, models):
        episodes = score_replays(replays, model, task.instruction)
        rows.append(summarise(episodes, stage / stages, 1 / stages, args.overshoot))
        peaks[name] = tuple(np.array(v) for v in zip(*((max(e["truth"]), max(e["potential"]), e["success"]) for e in episodes)))
    plot(peaks, args.overshoot, args.out / "onpolicy_reward.png")
    result = {"runs": [str(r) for r in args.runs], "episodes": count, "failed": failed,
              "stage": stage, "overshoot": args.overshoot, "models": dict(zip(args.models, rows)), "seconds": round(time.time() - started, 1)}
    atomic_write_json(args.out / "onpolicy_reward.json", result)
    lines = [f"{result['episodes']} replayed training episodes ({result['failed']} failed) of {len(args.runs)} runs; got past = true progress beyond stage {stage}'s start",
             "", "| model | MAE to true progress | false highs on failures | peak AUROC (got past) | mean peak, first-stage failures |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {r['mae']:.3f} | {r['false_high_rate']:.2f} | {r['peak_auroc']:.3f} | {r['mean_peak_first_stage_failures']:.2f} |" for m, r in zip(args.models, rows)]
    for m, r in list(zip(args.models, rows))[1:]:
        lines.append(f"\n{m} / {args.models[0]}: MAE x{r['mae'] / rows[0]['mae']:.2f}, false highs x{r['false_high_rate'] / max(rows[0]['false_high_rate'], 1e-9):.2f}")
    (args.out / "onpolicy_reward.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
