"""Reward-model quality: train on a fixed simulated collection per task and print the eval table on
held-out seeds, against the linear-in-time and robosuite-dense baselines, plus the cost of dropping
each view at test time.

    uv run python bench/reward_quality.py [--tasks lift,stack] [--train 40] [--train-seeds 0,2,3,4]
        [--failure-seeds 5] [--failures 40] [--stall-seeds 7] [--stalls 40] [--eval 20] [--steps 4000] [--model-seeds 0]
        [--prior dataset|equal] [--image-shift 2] [--shift-per segment|frame] [--stride 5] [--view-dropout 0.4]

Training data: one default-mix collection per --train-seeds seed; one collection of failed
episodes only per --failure-seeds seed (every failure kind, at random stages), so rare failure
states are covered; and one collection of stalls and aways only per --stall-seeds seed, each kind
striking every stage in turn, so that standing still is not read as a stage of its own. Several
--model-seeds train one model each on the same data and print every table, then each metric's
mean and range over the seeds and whether every seed meets its target.

Datasets and checkpoints are kept under --work (default runs/bench/reward_quality) and reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from headway.reward.evaluate import evaluate, render_table
from headway.reward.loading import load_reward_model
from headway.reward.stage_reward import StageRewardModel
from headway.reward.train import SHIFT_PER, TrainConfig
from fixtures import simulated_dataset, trained_reward_model  # bench/ is on sys.path

TARGETS = {
    "voc": (">=", 0.95),
    "stage_accuracy": (">=", 0.90),
    "progress_mae": ("<=", 0.08),
    "success_auroc": (">=", 0.95),
    "kendall_tau": (">=", 0.80),
    "succ_fail_gap": (">=", 0.50),
    "max_view_drop": ("<=", 0.05),  # VOC lost when only one view is given
}


def dataset(work: Path, task: str, split: str, episodes: int, seed: int, **settings) -> Path:
    return simulated_dataset(work / "data" / f"{task}_{split}", task=task, episodes=episodes, seed=seed, **settings)


def meets(metric: str, value: float) -> bool:
    sign, bound = TARGETS[metric]
    return value >= bound if sign == ">=" else value <= bound


def seed_summary(runs: list[dict]) -> str:
    """Each target metric's mean and range over the model seeds, and whether every seed meets it."""
    lines = [f"  over {len(runs)} model seeds: mean [min, max]"]
    for metric, (sign, bound) in TARGETS.items():
        values = [run[metric] for run in runs]
        verdict = "every seed meets it" if all(meets(metric, v) for v in values) else "MISSED by some seed"
        lines.append(f"    {metric:15} {sum(values) / len(values):.3f} [{min(values):.3f}, {max(values):.3f}]  target {sign} {bound}: {verdict}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="lift,stack")
    parser.add_argument("--train", type=int, default=40, help="episodes per training collection")
    parser.add_argument("--train-seeds", default="0,2,3,4", help="one training collection per seed (seed 1 is held out)")
    parser.add_argument("--failure-seeds", default="5", help="one failures-only training collection per seed ('' for none)")
    parser.add_argument("--failures", type=int, default=40, help="episodes per failures-only collection")
    parser.add_argument("--stall-seeds", default="7", help="one stall/away collection per seed, every stage in turn ('' for none)")
    parser.add_argument("--stalls", type=int, default=40, help="episodes per stall/away collection")
    parser.add_argument("--eval", type=int, default=20, help="held-out episodes per task (seed 1)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--model-seeds", default="0", help="train and evaluate one model per seed")
    parser.add_argument("--prior", default="dataset", choices=("dataset", "equal"), help="stage shares of progress")
    parser.add_argument("--image-shift", type=int, default=TrainConfig.image_shift, help="random-shift augmentation, pixels")
    parser.add_argument("--shift-per", default=TrainConfig.shift_per, choices=SHIFT_PER, help="one shift per segment and view, or per frame")
    parser.add_argument("--stride", type=int, default=TrainConfig.stride, help="frames between the causal window's recent frames")
    parser.add_argument("--view-dropout", type=float, default=TrainConfig.view_dropout, help="share of training segments shown a strict subset of views")
    parser.add_argument("--work", type=Path, default=Path("runs/bench/reward_quality"))
    parser.add_argument("--peer", action="append", default=[], metavar="SPEC",
                        help="another reward model scored on the same held-out episodes, e.g. lerobot:sarm:PATH or gvl:MODEL (repeatable)")
    args = parser.parse_args()

    seeds = [int(s) for s in args.train_seeds.split(",")]
    failure_seeds = [int(s) for s in args.failure_seeds.split(",") if s]
    stall_seeds = [int(s) for s in args.stall_seeds.split(",") if s]
    model_seeds = [int(s) for s in args.model_seeds.split(",")]
    if 1 in seeds + failure_seeds + stall_seeds:
        parser.error("--train-seeds/--failure-seeds/--stall-seeds: seed 1 is the held-out evaluation collection")
    results = {}
    for task in args.tasks.split(","):
        train_dirs = [dataset(args.work, task, "train" if seed == 0 else f"train_s{seed}", args.train, seed=seed) for seed in seeds]
        train_dirs += [dataset(args.work, task, f"failures_s{seed}", args.failures, seed=seed, mix={"fail": 1.0}) for seed in failure_seeds]
        train_dirs += [
            dataset(args.work, task, f"stalls_s{seed}", args.stalls, seed=seed, mix={"fail": 1.0}, failure_kinds=("stall", "away"), failure_stages="cycle")
            for seed in stall_seeds
        ]
        eval_dir = dataset(args.work, task, "eval", args.eval, seed=1)
        data_name = f"seeds{'-'.join(map(str, seeds))}" + (f"_failures{'-'.join(map(str, failure_seeds))}x{args.failures}" if failure_seeds else "")
        data_name += f"_stalls{'-'.join(map(str, stall_seeds))}x{args.stalls}" if stall_seeds else ""
        name = f"{task}_{args.steps}_{args.prior}_{data_name}_shift{args.image_shift}{'' if args.shift_per == 'frame' else 'per' + args.shift_per}_stride{args.stride}_dropout{args.view_dropout:g}"
        runs = []
        for model_seed in model_seeds:
            checkpoint = args.work / "models" / (name + (f"_seed{model_seed}" if model_seed else ""))
            trained_reward_model(
                checkpoint, train_dirs, steps=args.steps, prior=args.prior, image_shift=args.image_shift,
                shift_per=args.shift_per, stride=args.stride, view_dropout=args.view_dropout, seed=model_seed,
            )
            model = StageRewardModel.load(checkpoint)
            report = evaluate(model, [eval_dir])
            print(f"\n== {task}, model seed {model_seed}: {report['episodes']} held-out episodes, views {', '.join(report['views'])}")
            print(render_table(report))
            drops, (sign, bound) = {}, TARGETS["max_view_drop"]
            for view in model.views:
                single = evaluate(model, [eval_dir], views=[view], progress=False)
                drops[view] = report["metrics"]["voc"] - single["metrics"]["voc"]
                print(f"  only {view}: VOC {single['metrics']['voc']:.3f} (drop {drops[view]:+.3f}; target {sign} {bound})")
            run = {**report["metrics"], "max_view_drop": max(drops.values())}
            missed = [m for m in TARGETS if not meets(m, run[m])]
            print("  targets: " + ", ".join(f"{k} {sign} {bound}" for k, (sign, bound) in TARGETS.items()))
            print("  missed: " + (", ".join(missed) if missed else "none"))
            runs.append(run)
            results.setdefault(task, []).append({"model_seed": model_seed, "report": report, "voc_drop_by_missing_view": drops})
        if len(runs) > 1:
            print(seed_summary(runs))
        for spec in args.peer:
            peer = evaluate(load_reward_model(spec), [eval_dir])["metrics"]
            print(f"\n== {task}: {spec} on the same {report['episodes']} held-out episodes (headway model seed {model_seeds[-1]})")
            print(peer_table(report["metrics"], peer))
            results.setdefault(f"{task}_peers", []).append({"peer": spec, "metrics": peer})
    out = args.work / "reward_quality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


def peer_table(ours: dict, theirs: dict) -> str:
    """headway's metrics beside a peer's, with the ratio (NaN where the peer lacks the output)."""
    lines = [f"  {'metric':<18}{'headway':>10}{'peer':>10}{'ratio':>9}"]
    for name in ("voc", "stage_accuracy", "progress_mae", "success_auroc", "kendall_tau", "succ_fail_gap", "frames_per_second"):
        ratio = ours[name] / theirs[name] if theirs[name] not in (0.0,) and theirs[name] == theirs[name] else float("nan")
        lines.append(f"  {name:<18}{ours[name]:>10.3f}{theirs[name]:>10.3f}{ratio:>9.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
