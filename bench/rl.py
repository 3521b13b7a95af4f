"""Online RL on lift or stack with different rewards, same budget, same seed, same start.

    uv run python bench/rl.py [--task lift|stack] [--model REWARD_CKPT] [--demos DATASET] [--fused-model FUSED_CKPT] [--steps 2000] [--seeds 0,1,2] [--jobs 2] [--out runs/bench_rl]

Variants: sparse, robosuite-dense, prm+pbrs, prm+delta, prm+keypoints (choose with --variants).
prm+keypoints is the fused potential (stage-aware progress + keypoint closeness, `headway keypoints
fuse`) with PBRS. Every run starts from the same initialisation (the actor cloned from the
successful demonstrations among the first --demo-episodes with the same seed, those demonstrations
in replay) and is evaluated on the same held-out seeds. On lift the default start (4 demo episodes,
1,000 cloning steps, seed 0) succeeds on 3 of the first 5 held-out seeds, so reaching 90% takes
learning; on stack a start needs more demonstrations (48 with --pretrain-steps 3000: 5 of 10 seeds).
Fine-tuning keeps the clone frozen and learns a residual correction of at most --residual per
action dimension (--residual 0 for plain SAC from the clone; --ibrl for IBRL, which did worse here,
see policy/rl_train.py; --actor-update awac --residual 0 for advantage-weighted imitation, which
with --hidden 512,512,512 --pretrain-lr 3e-4 kept the stack and lift starts where SAC lost them).
Without --model / --demos, a small dataset of the task (agentview, wrist and sideview
cameras) is collected and a small reward model trained first (fresh machine); without
--fused-model, a keypoint model is trained on the same demos (or --keypoint-model is used) and fused
with the reward model, triangulating from the static agentview and sideview cameras.
Also measures the PRM's share of an environment step with rendering (target <= 25%).
Prints final success, area under the success curve, steps to 90% success, prm+pbrs / sparse ratios
and prm+keypoints / prm+pbrs steps to 90%. `--seeds 0,1,2,3` trains every variant with each training
seed (its own clone start, shared by the variants) and pools them: the mean success curve over
seeds, where one lucky evaluation of a few episodes moves a point far less, its first step at 90%,
and on how many seeds the fused potential reaches 90% no later than the PRM alone. `--jobs 2` trains
two runs at once (one thread each: on two cores, half the wall time); runs already in --out are
resumed, not redone.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np

from headway.atomic import atomic_write_json
from headway.commands import config_from_args, integers_argument, names_argument
from fixtures import simulated_dataset, trained_keypoint_model, trained_reward_model  # bench/ is on sys.path
from headway.policy.rl_train import RLConfig, train_rl
from headway.policy.sac import ACTOR_UPDATES, EXPLORATIONS, SACConfig
from headway.reward.fusion_report import fusion_by_stage, render_fusion_report
from headway.reward.loading import load_reward_model

# variant -> (reward source, shaping); "fused" is the stage-aware PRM fused with keypoint closeness
VARIANTS = {
    "sparse": ("sparse", "none"),
    "prm+pbrs": ("prm", "pbrs"),
    "robosuite-dense": ("robosuite-dense", "none"),
    "prm+delta": ("prm", "delta"),
    "prm+keypoints": ("fused", "pbrs"),
}
PRM_VIEWS = ("agentview", "robot0_eye_in_hand")
KEYPOINT_VIEWS = ("agentview", "sideview")  # static cameras to triangulate from (the wrist camera moves)


def prepare(args: argparse.Namespace, fused: bool) -> tuple[Path, Path, Path | None]:
    """The demonstrations, the reward model and (when `fused`) the fused keypoint reward, made here when not given."""
    from headway.reward.keypoint_reward import build_keypoint_reward, static_cameras

    demos, model, fused_model = args.demos, args.model, args.fused_model
    if demos is None:
        views = tuple(dict.fromkeys(PRM_VIEWS + KEYPOINT_VIEWS))
        demos = simulated_dataset(args.out / "data" / args.task, task=args.task, episodes=args.collect_episodes, views=views, image_size=84, seed=0)
    if model is None:
        model = trained_reward_model(args.out / "reward_model", [Path(demos)], views=PRM_VIEWS, steps=args.reward_steps, seed=0)
    if fused and fused_model is None:
        keypoints = args.keypoint_model or trained_keypoint_model(
            args.out / "keypoint_model", [Path(demos)], views=KEYPOINT_VIEWS, steps=args.keypoint_steps, max_minutes=args.keypoint_minutes, seed=0
        )
        fused_model = args.out / "fused_model"
        if not (fused_model / "config.json").exists():  # written last by save
            cameras = static_cameras(Path(demos), list(KEYPOINT_VIEWS))
            build_keypoint_reward(keypoints, model, cameras, device="cpu").save(fused_model)
    return Path(demos), Path(model), None if fused_model is None else Path(fused_model)


def prm_cost(model_path: Path, task: str, steps: int = 40) -> dict:
    """Median wall time of an env step rendering the model's views, and of the streaming scorer's step."""
    from headway.sim.env import EnvConfig, HeadwayEnv
    from headway.sim.task import get_task

    model = load_reward_model(model_path, device="cpu")
    env = HeadwayEnv(EnvConfig(task, views=model.views, image_size=model.image_size, terminate_on_success=True))
    scorer = model.stream(get_task(task).instruction)
    obs, _ = env.reset(seed=123)
    rng = np.random.default_rng(0)
    env_times, model_times = [], []
    for _ in range(steps):
        start = time.perf_counter()
        obs, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 7).astype(np.float32))
        middle = time.perf_counter()
        scorer.step({v: obs["images"][v] for v in model.views})
        env_times.append(middle - start)
        model_times.append(time.perf_counter() - middle)
        if terminated or truncated:
            obs, _ = env.reset()
            scorer.reset()
    env.close()
    env_ms, model_ms = 1000 * float(np.median(env_times)), 1000 * float(np.median(model_times))
    return {"env_step_ms": env_ms, "prm_step_ms": model_ms, "prm_share_of_env_step": model_ms / env_ms}


def steps_to(steps: list[int], success_rates, level: float) -> int | None:
    """The first evaluation step whose success rate reaches `level`."""
    for step, success in zip(steps, success_rates):
        if success >= level:
            return step
    return None


def steps_to_90(run: dict) -> int | None:
    """A run's first evaluation at 90% success or more."""
    return steps_to(run["eval_steps"], run["eval_success"], 0.9)


def report(name: str, summary: dict) -> None:
    print(
        f"{name}: success by step {dict(zip(summary['eval_steps'], summary['eval_success']))}, "
        f"final {summary['final_success_rate']:.2f}, AUC {summary['success_auc']:.3f}, {summary['seconds']:.0f} s",
        flush=True,
    )


def stop_with_parent() -> None:
    """Pool initializer: a worker whose bench process was killed exits too, instead of writing on into
    a run folder that a resumed bench would then share with it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_variants(configs: dict[str, RLConfig], jobs: int) -> dict[str, dict]:
    """Train every variant (resuming any that ran before), `jobs` at a time in separate processes
    of one thread each; the runs do not share anything but the read-only checkpoints."""
    if jobs == 1:
        results = {}
        for name, config in configs.items():
            print(f"--- {name} ({config.steps} env steps) ...", flush=True)
            results[name] = train_rl(config, resume=True)
            report(name, results[name])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    print(f"--- {', '.join(configs)} ({jobs} at a time) ...", flush=True)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=stop_with_parent) as pool:
        futures = {name: pool.submit(train_rl, config, True) for name, config in configs.items()}
        names = {future: name for name, future in futures.items()}
        for future in as_completed(names):
            report(names[future], future.result())
    return {name: future.result() for name, future in futures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="lift", choices=("lift", "stack"))
    parser.add_argument("--model", type=Path, default=None, help="reward-model checkpoint (default: train one)")
    parser.add_argument("--fused-model", type=Path, default=None, help="fused keypoint reward from `headway keypoints fuse` (default: build one)")
    parser.add_argument("--keypoint-model", type=Path, default=None, help="keypoint model fused with --model (default: train one)")
    parser.add_argument("--demos", type=Path, default=None, help="LeRobot dataset of the task (default: collect one)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_rl"))
    parser.add_argument("--steps", type=int, default=2000, help="environment steps per run")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--pretrain-steps", type=int, default=1000, help="actor cloned from successful demos first")
    parser.add_argument(
        "--demo-episodes", type=int, default=4, help="clone from (and replay) only the first N demo episodes (4: the clone starts below 90%%)"
    )
    parser.add_argument("--ibrl", action=argparse.BooleanOptionalAction, default=False, help="IBRL with the clone as frozen reference")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--critic-pretrain", type=int, default=500, help="critic-only updates on the demos first")
    parser.add_argument("--critic-warmup", type=int, default=0, help="online steps whose updates train the critics only (the actor stays the clone)")
    parser.add_argument("--bc-weight", type=float, default=10.0, help="BC term keeping the actor near the demos")
    parser.add_argument("--init-alpha", type=float, default=0.005)
    parser.add_argument("--actor-lr", type=float, default=1e-4)
    parser.add_argument("--pretrain-lr", type=float, default=None, help="learning rate of the cloning (default: --actor-lr)")
    parser.add_argument("--hidden", type=integers_argument, default=(256, 256), help="hidden layer widths of actor and critics")
    parser.add_argument("--residual", type=float, default=0.2, help="> 0: the actor corrects the frozen clone's action by at most this")
    parser.add_argument("--actor-update", default="sac", choices=ACTOR_UPDATES, help="awac: advantage-weighted imitation of replay actions (with --residual 0)")
    parser.add_argument("--awac-temperature", type=float, default=1.0)
    parser.add_argument("--exploration", default="learned", choices=EXPLORATIONS, help="held: explore with the clone's own spread, fixed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds", type=integers_argument, default=None,
        help="train every variant with each of these seeds, e.g. 0,1,2,3 (default: --seed); runs go to OUT/seed<S>/<variant> and the summary pools them",
    )
    parser.add_argument("--jobs", type=int, default=1, help="variants trained at once, each in its own one-thread process")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--collect-episodes", type=int, default=16)
    parser.add_argument("--reward-steps", type=int, default=1000)
    parser.add_argument("--keypoint-steps", type=int, default=1500)
    parser.add_argument("--keypoint-minutes", type=float, default=8.0, help="time budget of the keypoint model's training")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)  # small networks: one thread is fastest, and far faster on a busy machine
    names = list(names_argument(args.variants))
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.seeds is not None and (not args.seeds or len(set(args.seeds)) != len(args.seeds)):
        parser.error(f"--seeds must name distinct training seeds such as 0,1,2, got {args.seeds}")
    demos, model, fused_model = prepare(args, fused="prm+keypoints" in names)
    checkpoints = {"prm": model, "fused": fused_model}

    cost = prm_cost(model, args.task)
    print(
        f"PRM in the loop: env step with rendering {cost['env_step_ms']:.1f} ms, PRM step {cost['prm_step_ms']:.1f} ms "
        f"= {100 * cost['prm_share_of_env_step']:.0f}% of an env step (target <= 25%)"
    )
    rises = None
    if fused_model is not None:
        fusion = fusion_by_stage(load_reward_model(fused_model, device="cpu"), demos, episodes=8)
        print("\n" + render_fusion_report(fusion))
        rises = fusion["stages"]
    seeds = args.seeds or (args.seed,)
    sac = config_from_args(SACConfig, args)
    configs, labels = {}, {}
    for seed in seeds:
        for name in names:
            reward, shaping = VARIANTS[name]
            label, folder = run_place(args.out, name, seed, seeds)
            labels[name, seed] = label
            configs[label] = config_from_args(
                RLConfig,
                args,
                reward=f"prm:{checkpoints[reward]}" if reward in checkpoints else reward,
                shaping=shaping,
                demos=demos,
                out=folder,
                seed=seed,
                sac=sac,
                progress=False,
            )
    results = run_variants(configs, args.jobs)
    by_variant = {name: [results[labels[name, seed]] for seed in seeds] for name in names}

    print("\n| variant | seed | final success | area under success curve | steps to 90% | wall s |")
    print("|---|---|---|---|---|---|")
    for name, runs in by_variant.items():
        for seed, s in zip(seeds, runs):
            print(f"| {name} | {seed} | {s['final_success_rate']:.2f} | {s['success_auc']:.3f} | {reached_text(steps_to_90(s))} | {s['seconds']:.0f} |")
    pooled = {name: over_seeds(runs) for name, runs in by_variant.items()}
    if len(seeds) > 1:
        print(f"\nOver seeds {', '.join(map(str, seeds))} (mean success curve, {len(seeds)} x {args.eval_episodes} episodes per point):")
        print("| variant | mean success at each evaluation | mean area (std) | steps to 90% of the mean curve | seeds reaching 90% |")
        print("|---|---|---|---|---|")
        for name, p in pooled.items():
            curve = " ".join(f"{v:.2f}" for v in p["mean_success"])
            print(f"| {name} | {curve} | {p['mean_auc']:.3f} ({p['std_auc']:.3f}) | {reached_text(p['steps_to_90_of_mean'])} | {p['seeds_reaching_90']}/{len(seeds)} |")
    ratios = compare(by_variant, pooled)
    for key, value in ratios.items():
        print(f"{key}: {'undefined (denominator 0 or 90% not reached)' if value is None else f'{value:.2f}'}")
    plot_curves(by_variant, pooled, args, args.out / "curves.png")
    atomic_write_json(
        args.out / "bench.json",
        {"prm_cost": cost, "potential_by_stage": rises, "ratios": ratios, "over_seeds": pooled, "runs": results, "args": {k: str(v) for k, v in vars(args).items()}},
    )
    print(f"curves: {args.out / 'curves.png'}  figures: {args.out / 'bench.json'}")


def run_place(out: Path, variant: str, seed: int, seeds: tuple[int, ...]) -> tuple[str, Path]:
    """A run's label and folder: OUT/<variant> with one seed (so older run folders still resume), else
    OUT/seed<S>/<variant>."""
    if len(seeds) == 1:
        return variant, out / variant
    return f"{variant} seed {seed}", out / f"seed{seed}" / variant


def reached_text(reached: int | None) -> str:
    """A step to 90% as the tables print it."""
    return "not reached" if reached is None else str(reached)


def over_seeds(runs: list[dict]) -> dict:
    """One variant's runs pooled: the mean success curve (its points average seeds x episodes, so a
    single lucky evaluation moves it less), its first step at 90%, and the spread of the areas."""
    length = min(len(r["eval_steps"]) for r in runs)
    steps = runs[0]["eval_steps"][:length]
    curves = np.array([r["eval_success"][:length] for r in runs], dtype=float)
    mean = curves.mean(axis=0)
    areas = np.array([r["success_auc"] for r in runs], dtype=float)
    return {
        "eval_steps": steps,
        "mean_success": [round(float(v), 4) for v in mean],
        "std_success": [round(float(v), 4) for v in curves.std(axis=0)],
        "mean_auc": float(areas.mean()),
        "std_auc": float(areas.std()),
        "steps_to_90_of_mean": steps_to(steps, mean, 0.9),
        "seeds_reaching_90": sum(steps_to_90(r) is not None for r in runs),
    }


def no_later(first: int | None, second: int | None) -> bool | None:
    """Whether `first` reached the level no later than `second`; None when neither reached it."""
    if first is None and second is None:
        return None
    return first is not None and (second is None or first <= second)


def compare(by_variant: dict[str, list[dict]], pooled: dict[str, dict]) -> dict[str, float | None]:
    """The bench's ratios: learned reward against sparse and dense, and the fused potential against the PRM."""
    ratios: dict[str, float | None] = {}

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    if "prm+pbrs" in pooled and "sparse" in pooled:
        final = {n: float(np.mean([r["final_success_rate"] for r in by_variant[n]])) for n in ("prm+pbrs", "sparse")}
        ratios["prm+pbrs / sparse final success"] = ratio(final["prm+pbrs"], final["sparse"])
        ratios["prm+pbrs / sparse AUC"] = ratio(pooled["prm+pbrs"]["mean_auc"], pooled["sparse"]["mean_auc"])
    if "prm+pbrs" in pooled and "robosuite-dense" in pooled:
        ratios["prm+pbrs / robosuite-dense AUC"] = ratio(pooled["prm+pbrs"]["mean_auc"], pooled["robosuite-dense"]["mean_auc"])
    if "prm+keypoints" in pooled and "prm+pbrs" in pooled:
        fused, prm = by_variant["prm+keypoints"], by_variant["prm+pbrs"]
        of_mean = "" if len(fused) == 1 else " of the mean curve"
        ratios[f"prm+keypoints / prm+pbrs steps to 90%{of_mean}"] = ratio(
            pooled["prm+keypoints"]["steps_to_90_of_mean"], pooled["prm+pbrs"]["steps_to_90_of_mean"]
        )
        if len(fused) > 1:
            verdicts = [no_later(steps_to_90(f), steps_to_90(p)) for f, p in zip(fused, prm)]
            decided = [v for v in verdicts if v is not None]
            ratios["share of seeds where prm+keypoints reaches 90% no later than prm+pbrs (of seeds where one does)"] = (
                sum(decided) / len(decided) if decided else None
            )
        ratios["prm+keypoints / prm+pbrs mean AUC"] = ratio(pooled["prm+keypoints"]["mean_auc"], pooled["prm+pbrs"]["mean_auc"])
    return ratios


def plot_curves(by_variant: dict[str, list[dict]], pooled: dict[str, dict], args: argparse.Namespace, path: Path) -> None:
    """Success curves: one line per variant, or with several seeds their mean over a band of +- one std and the seeds faintly."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, runs in by_variant.items():
        p = pooled[name]
        if len(runs) == 1:
            ax.plot(p["eval_steps"], p["mean_success"], marker="o", label=name)
            continue
        mean, std = np.array(p["mean_success"]), np.array(p["std_success"])
        (line,) = ax.plot(p["eval_steps"], mean, marker="o", label=f"{name} (mean of {len(runs)} seeds)")
        ax.fill_between(p["eval_steps"], mean - std, mean + std, color=line.get_color(), alpha=0.15)
        for r in runs:
            ax.plot(r["eval_steps"], r["eval_success"], color=line.get_color(), alpha=0.25, linewidth=0.8)
    ax.axhline(0.9, color="grey", linestyle=":", linewidth=0.8)
    ax.set(xlabel="environment steps", ylabel=f"success rate ({args.eval_episodes} held-out seeds)", ylim=(-0.05, 1.05), title=f"{args.task}: online RL by reward source")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
