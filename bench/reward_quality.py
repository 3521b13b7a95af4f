"""Reward-model quality: train on a fixed simulated collection per task and print the eval table on
held-out seeds, against the linear-in-time and robosuite-dense baselines, plus the cost of dropping
each view at test time.

    uv run python bench/reward_quality.py [--tasks lift,stack] [--train 40] [--train-seeds 0,2,3,4] [--eval 20] [--steps 4000] [--prior dataset|equal] [--image-shift 2] [--stride 5] [--view-dropout 0.4]

Datasets and checkpoints are kept under --work (default runs/bench/reward_quality) and reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from headway.reward.evaluate import evaluate, render_table
from headway.reward.stage_reward import StageRewardModel
from headway.reward.train import TrainConfig
from fixtures import simulated_dataset, trained_reward_model  # bench/ is on sys.path

TARGETS = {
    "voc": ">= 0.95",
    "stage_accuracy": ">= 0.90",
    "progress_mae": "<= 0.08",
    "success_auroc": ">= 0.95",
    "kendall_tau": ">= 0.80",
    "succ_fail_gap": ">= 0.50",
}


def dataset(work: Path, task: str, split: str, episodes: int, seed: int) -> Path:
    return simulated_dataset(work / "data" / f"{task}_{split}", task=task, episodes=episodes, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="lift,stack")
    parser.add_argument("--train", type=int, default=40, help="episodes per training collection")
    parser.add_argument("--train-seeds", default="0,2,3,4", help="one training collection per seed (seed 1 is held out)")
    parser.add_argument("--eval", type=int, default=20, help="held-out episodes per task (seed 1)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--prior", default="dataset", choices=("dataset", "equal"), help="stage shares of progress")
    parser.add_argument("--image-shift", type=int, default=TrainConfig.image_shift, help="random-shift augmentation, pixels")
    parser.add_argument("--stride", type=int, default=TrainConfig.stride, help="frames between the causal window's recent frames")
    parser.add_argument("--view-dropout", type=float, default=TrainConfig.view_dropout, help="share of training segments shown a strict subset of views")
    parser.add_argument("--work", type=Path, default=Path("runs/bench/reward_quality"))
    args = parser.parse_args()

    seeds = [int(s) for s in args.train_seeds.split(",")]
    if 1 in seeds:
        parser.error("--train-seeds: seed 1 is the held-out evaluation collection")
    results = {}
    for task in args.tasks.split(","):
        train_dirs = [dataset(args.work, task, "train" if seed == 0 else f"train_s{seed}", args.train, seed=seed) for seed in seeds]
        eval_dir = dataset(args.work, task, "eval", args.eval, seed=1)
        name = f"{task}_{args.steps}_{args.prior}_seeds{'-'.join(map(str, seeds))}_shift{args.image_shift}_stride{args.stride}_dropout{args.view_dropout:g}"
        checkpoint = args.work / "models" / name
        trained_reward_model(checkpoint, train_dirs, steps=args.steps, prior=args.prior, image_shift=args.image_shift, stride=args.stride, view_dropout=args.view_dropout)
        model = StageRewardModel.load(checkpoint)
        report = evaluate(model, [eval_dir])
        print(f"\n== {task}: {report['episodes']} held-out episodes, views {', '.join(report['views'])}")
        print(render_table(report))
        drops = {}
        for view in model.views:
            single = evaluate(model, [eval_dir], views=[view], progress=False)
            drops[view] = report["metrics"]["voc"] - single["metrics"]["voc"]
            print(f"  only {view}: VOC {single['metrics']['voc']:.3f} (drop {drops[view]:+.3f}; target <= 0.05)")
        print("  targets: " + ", ".join(f"{k} {v}" for k, v in TARGETS.items()))
        results[task] = {"report": report, "voc_drop_by_missing_view": drops}
    out = args.work / "reward_quality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
