"""BC against reward-aligned BC (RA-BC) on a mixed-quality lift dataset, evaluated in simulation.

    uv run python bench/rabc.py [--dataset DIR] [--model REWARD_CKPT] [--work DIR]

1. Dataset: `--dataset`, else collect 50 lift episodes (50% expert, 25% noisy, 25% failed) into the work folder.
2. Reward model: `--model`, else train a small headway stage reward model on that dataset.
3. Score every frame with the reward model and write `<work>/labels/sarm_progress.parquet` (LeRobot's schema).
4. Train, with the same network, seed, batch sampling and number of steps (once per training seed,
   three by default): BC on every episode,
   RA-BC on every episode (LeRobot's weights from those labels), and BC on the expert episodes only
   (a reference: what perfect filtering would give).
5. Roll each out on the same held-out seeds; print success rate (mean and spread over training seeds),
   mean return, mean episode length, and the RA-BC / BC ratio. Everything is written to `<work>/report.json`. Finished stages are reused on a rerun.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from headway.atomic import atomic_write_json
from headway.datasets.reader import DatasetReader
from headway.policy.bc import BCConfig, BCPolicy, sample_weights, train_bc, weight_summary
from headway.policy.bc_data import load_bc_samples, write_progress
from headway.policy.evaluate import evaluate_policy
from fixtures import simulated_dataset, trained_reward_model  # bench/ is on sys.path

MIX = {"expert": 0.5, "noisy": 0.25, "fail": 0.25}


def ensure_dataset(args: argparse.Namespace) -> Path:
    if args.dataset:
        return Path(args.dataset)
    out = args.work / "data" / "lift_mixed"
    return simulated_dataset(out, task="lift", episodes=args.collect_episodes, mix=MIX, image_size=84, seed=args.data_seed)


def ensure_model(args: argparse.Namespace, dataset: Path) -> Path:
    if args.model:
        return Path(args.model)
    return trained_reward_model(args.work / "reward", [dataset], steps=args.reward_steps, seed=args.seed)


def ensure_labels(args: argparse.Namespace, dataset: Path, model_path: Path) -> Path:
    from headway.reward.evaluate import score_dataset
    from headway.reward.loading import load_reward_model

    path = args.work / "labels" / "sarm_progress.parquet"
    if path.exists() and not args.relabel:
        return path
    model = load_reward_model(model_path)
    scored, seconds = score_dataset(model, dataset)
    reader = DatasetReader(dataset)
    lengths = {i: int(reader.episode(i, decode=False).length) for i in range(reader.num_episodes)}
    write_progress(path, {s.index: np.asarray(s.output.progress) for s in scored}, lengths)
    finals = {True: [], False: []}
    for s in scored:
        finals[s.success].append(float(s.output.progress[-1]))
    print(
        f"labelled {len(scored)} episodes in {seconds:.0f} s: final progress successes {np.mean(finals[True]):.3f}, "
        f"failures {np.mean(finals[False]) if finals[False] else float('nan'):.3f}"
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=None, help="mixed-quality lift dataset (default: collect one)")
    parser.add_argument("--model", type=Path, default=None, help="headway reward checkpoint (default: train one)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_rabc"))
    parser.add_argument("--steps", type=int, default=1500, help="BC training steps, the same for every row")
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=30, help="evaluation episodes per policy")
    parser.add_argument("--eval-seed", type=int, default=900_000)
    parser.add_argument("--seed", type=int, default=0, help="training seed (when --seeds is not given)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds; every row is trained once per seed")
    parser.add_argument("--videos", type=int, default=1, help="rollout videos per policy")
    parser.add_argument("--collect-episodes", type=int, default=50)
    parser.add_argument("--data-seed", type=int, default=3)
    parser.add_argument("--reward-steps", type=int, default=1500)
    parser.add_argument("--relabel", action="store_true", help="score the dataset again even if labels exist")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    dataset = ensure_dataset(args)
    model = ensure_model(args, dataset)
    labels = ensure_labels(args, dataset, model)
    reader = DatasetReader(dataset)
    modes = {i: (reader.outcome(i).mode if reader.outcome(i) else "unknown") for i in range(reader.num_episodes)}
    successes = {i: bool(reader.outcome(i) and reader.outcome(i).success) for i in range(reader.num_episodes)}
    experts = [i for i, m in modes.items() if m == "expert"]
    print(
        f"dataset {dataset}: {reader.num_episodes} episodes ({len(experts)} expert, "
        f"{sum(m == 'noisy' for m in modes.values())} noisy, {sum(m not in ('expert', 'noisy') for m in modes.values())} failed), "
        f"{sum(successes.values())} successful"
    )

    samples = load_bc_samples(dataset, chunk=args.chunk, progress=False)
    weights = sample_weights(samples, labels, args.chunk)
    by_mode = {}
    for mode in ("expert", "noisy", "fail"):
        chosen = np.array([(modes[e] == mode) if mode != "fail" else modes[e] not in ("expert", "noisy") for e in samples.episode_index])
        if chosen.any():
            by_mode[mode] = float(weights[chosen].mean())
    print("RA-BC weights:", {k: round(v, 3) for k, v in weight_summary(weights).items()}, "mean by mode:", {k: round(v, 3) for k, v in by_mode.items()})

    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    names = ("BC (all episodes)", "RA-BC (all episodes)", "BC (expert episodes only)")
    rows: dict[str, list[dict]] = {name: [] for name in names}
    for seed in seeds:
        common = dict(dataset=dataset, chunk=args.chunk, steps=args.steps, seed=seed)
        runs = {
            names[0]: BCConfig(out=args.work / f"bc_s{seed}", **common),
            names[1]: BCConfig(out=args.work / f"rabc_s{seed}", weights="rabc", labels=labels, **common),
            names[2]: BCConfig(out=args.work / f"bc_expert_s{seed}", episodes=tuple(experts), **common),
        }
        for name, config in runs.items():
            summary_path = config.out / "summary.json"
            previous = json.loads(summary_path.read_text()) if summary_path.exists() else None
            if previous and previous["steps"] == args.steps and (config.out / "config.json").exists():
                summary = previous  # trained by an earlier run with the same settings
            else:
                summary = train_bc(config, samples=samples if config.episodes is None else None)
            policy = BCPolicy.load(config.out, task="lift")
            report = evaluate_policy(
                policy, "lift", episodes=args.episodes, seed=args.eval_seed, videos=args.videos, video_dir=config.out / "videos"
            )
            rows[name].append({"seed": seed, "train": summary, "eval": {k: v for k, v in report.items() if k != "per_episode"},
                               "per_episode": report["per_episode"]})
            print(
                f"seed {seed} {name}: success {100 * report['success_rate']:.0f}%, mean return {report['mean_return']:.3f}, "
                f"length {report['mean_length']:.1f} (train {summary['seconds']:.0f} s, loss {summary['final_loss']:.3f})"
            )

    def stat(name: str, key: str) -> tuple[float, float]:
        values = np.array([r["eval"][key] for r in rows[name]])
        return float(values.mean()), float(values.std())

    print()
    print(f"lift, {reader.num_episodes} training episodes ({len(experts)} expert), {args.steps} steps, chunk {args.chunk}, "
          f"training seeds {seeds}; {args.episodes} held-out episodes per policy (seeds {args.eval_seed}-{args.eval_seed + args.episodes - 1})")
    print("| policy | success rate (mean ± std over seeds) | per seed | mean return | mean length (steps) |")
    print("|---|---|---|---|---|")
    for name in names:
        success, spread = stat(name, "success_rate")
        per_seed = ", ".join(f"{100 * r['eval']['success_rate']:.0f}%" for r in rows[name])
        print(f"| {name} | {100 * success:.1f}% ± {100 * spread:.1f} | {per_seed} | {stat(name, 'mean_return')[0]:.3f} | "
              f"{stat(name, 'mean_length')[0]:.1f} |")
    bc, rabc = stat(names[0], "success_rate")[0], stat(names[1], "success_rate")[0]
    ratio = rabc / bc if bc else float("inf")
    points = 100 * (rabc - bc)
    print(f"RA-BC / BC success: {ratio:.2f}x ({points:+.1f} points; target +20); {time.perf_counter() - started:.0f} s")
    print("(episodes end at success, so return = success and a shorter length means a faster success)")
    atomic_write_json(
        args.work / "report.json",
        {"dataset": str(dataset), "model": str(model), "labels": str(labels), "args": {k: str(v) for k, v in vars(args).items()},
         "weights": weight_summary(weights), "weights_by_mode": by_mode, "rows": rows, "success_ratio": ratio, "success_points": points},
    )
    print(f"wrote {args.work / 'report.json'}")


if __name__ == "__main__":
    main()
