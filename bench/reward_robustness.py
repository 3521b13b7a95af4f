"""Reward-model robustness bench (issue 26): a nominal and a randomised model, same budget, scored
on nominal and shifted held-out collections, with robosuite's dense reward and linear-in-time
baselines on the same episodes.

    MUJOCO_GL=egl uv run python bench/reward_robustness.py --out runs/robustness            # the protocol
    MUJOCO_GL=egl uv run python bench/reward_robustness.py --out runs/robust_reduced \\
        --train-episodes 24 --test-episodes 12 --steps 1000 --shifts camera,all --wordings 2   # reduced

Stages (each skipped when its output exists, so a killed run resumes):
1. collect: training sets (nominal; randomised at --train-randomize) with the same episode count
   and seed, and held-out sets with another seed: nominal, and each --shifts entry at strengths
   above the training ones (camera pose, lighting, surface colour/texture, all together);
2. train: the nominal model on the nominal set; the randomised model on the randomised set with
   colour jitter / rotation / crop and paraphrase training; the mixed model on both sets with those
   augmentations; the same steps and batch for all three;
3. score: both models on every held-out set plus the nominal set under other task wordings (a
   paraphrase, a reordering, synonyms, and a different task that must score low), frame steps
   (--fps: the same motion recorded at another rate), robot speeds (--speeds: faster or slower at the
   same rate) and image sizes (--sizes); one robustness report per model, and a comparison
   table (markdown, JSON, PNG) in OUT.

`--models` picks among nominal, randomized, randomized_plain (the randomised collection with the default
recipe, no added augmentation: what `headway demo` would train with `--train-randomize mild`), mixed and
worded (the nominal collection with paraphrase training only), warped (the nominal collection with
`--time-warp 1`: windows at robot speeds from 0.5x to 2x); `--text-encoders hashed,minilm` trains each once per task encoder
(`name+minilm`), and `--encoders conv,hf:/models/dinov2-small` once per image encoder (`name+hf-dinov2-small`; a
frozen tower's features are cached, so its models get the paraphrases but not the appearance augmentations).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from headway.run_dir import partial_dir
from headway.runtime import set_torch_threads

TRAIN_RANDOMIZE = "camera=1,lighting=1,texture=0.3,color=0.3"
# held-out shifts: every strength above the training one, drawn from a held-out seed
SHIFTS = {
    "camera": "camera=1.5",
    "lighting": "lighting=1.5",
    "surface": "texture=0.45,color=0.45",
    "all": "camera=1.5,lighting=1.5,texture=0.45,color=0.45",
}
# held out from training (none is in headway.reward.task_text.PARAPHRASES); the last is another task
WORDINGS = {
    "lift": (
        "pick the cube up",  # the measured paraphrase
        "lift it after picking up the red cube",  # reordered
        "grasp the crimson block and elevate it",  # synonyms
        "close the laptop lid",  # a different task: must score low
    ),
    "stack": (
        "put the red cube onto the green one",
        "on the green cube, stack the red cube",
        "pile the crimson block on the emerald block",
        "close the laptop lid",
    ),
}
AUGMENT = {"color_jitter": 0.25, "rotate_degrees": 3.0, "crop_scale": 0.08, "paraphrase_prob": 0.2}
# name -> (training collections, augmentations); "worded" isolates paraphrase training from image augmentation
MODELS = {
    "nominal": (("train_nominal",), {}),
    "randomized": (("train_randomized",), AUGMENT),
    "randomized_plain": (("train_randomized",), {}),  # the randomised collection with the default recipe, as `headway demo` trains
    "mixed": (("train_nominal", "train_randomized"), AUGMENT),  # both collections, same steps
    "worded": (("train_nominal",), {"paraphrase_prob": AUGMENT["paraphrase_prob"]}),
    "warped": (("train_nominal",), {"time_warp": 1.0}),  # the nominal collection at robot speeds from 0.5x to 2x
}
COMPARED = ("stage_accuracy", "progress_mae", "success_auroc", "kendall_tau", "succ_fail_gap", "voc")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--task", default="lift", choices=sorted(WORDINGS))
    parser.add_argument("--train-episodes", type=int, default=40)
    parser.add_argument("--test-episodes", type=int, default=20)
    parser.add_argument("--size", type=int, default=84)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--train-randomize", default=TRAIN_RANDOMIZE)
    parser.add_argument("--shifts", default=",".join(SHIFTS), help=f"held-out scene shifts to collect: {', '.join(SHIFTS)}")
    parser.add_argument("--wordings", type=int, default=4, help="how many of the held-out wordings to score (the last is another task)")
    parser.add_argument("--fps", default="10,15,30", help="comma-separated frame rates to record the nominal set at (empty: none)")
    parser.add_argument("--speeds", default="0.5,1.5", help="comma-separated robot speeds relative to the recording (empty: none)")
    parser.add_argument("--sizes", default="64,96,128", help="comma-separated image sizes (empty: none)")
    parser.add_argument("--data", type=Path, default=None, help="folder of the collections (default OUT/data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=",".join(MODELS), help=f"models to train and score: {', '.join(MODELS)}")
    parser.add_argument("--encoders", default="conv", help="image encoders, each model trained once per encoder (conv, hf:PATH to a local SigLIP/DINOv2 folder: frozen)")
    parser.add_argument("--text-encoders", default="hashed", help="task encoders, each model trained once per encoder (hashed, minilm, hf:PATH)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    return args


def _slug(encoder: str) -> str:
    """hf:/models/dinov2-small -> hf-dinov2-small (a hub id keeps its last part too)."""
    kind, _, where = encoder.partition(":")
    return f"{kind}-{Path(where).name}" if where else kind


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def _numbers(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


def collect_sets(args) -> dict[str, Path]:
    """Training and held-out collections, by the CLI (resumable; each skipped when it exists)."""
    from headway.sim.randomization import parse_randomization

    data = args.data or args.out / "data"
    shifts = [s for s in args.shifts.split(",") if s]
    unknown = [s for s in shifts if s not in SHIFTS]
    if unknown:
        raise SystemExit(f"unknown shifts {unknown}; choose from {', '.join(SHIFTS)}")
    parse_randomization(args.train_randomize)  # fail before any work
    needed = {c for m in args.models.split(",") for c in MODELS[m][0]}  # only the selected models' training sets
    plan = {
        **{name: (args.train_episodes, 100, randomize) for name, randomize in
           (("train_nominal", ""), ("train_randomized", args.train_randomize)) if name in needed},
        "test_nominal": (args.test_episodes, 200, ""),
        **{f"test_{name}": (args.test_episodes, 200, SHIFTS[name]) for name in shifts},
    }
    paths = {}
    for name, (episodes, seed, randomize) in plan.items():
        out = data / name
        paths[name] = out
        if (out / "meta" / "info.json").exists():
            continue
        command = [
            "headway", "sim", "collect", "--task", args.task, "--episodes", str(episodes), "--seed", str(seed),
            "--size", str(args.size), "--out", str(out),
        ]
        if randomize:
            command += ["--randomize", randomize]
        if partial_dir(out).exists():
            command.append("--resume")
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True)
    return paths


def train_models(args, sets: dict[str, Path]) -> dict[str, Path]:
    from headway.reward.train import TrainConfig, train_reward_model

    set_torch_threads(1)
    paths = {}
    for model in args.models.split(","):
        collections, augment = MODELS[model]
        for encoder, text in [(e, t) for e in args.encoders.split(",") for t in args.text_encoders.split(",")]:
            name = model + "".join(f"+{_slug(e)}" for e, default in ((encoder, "conv"), (text, "hashed")) if e != default)
            out = args.out / "models" / name
            paths[name] = out
            if (out / "training.json").exists():
                continue
            # a frozen tower's features are cached: appearance augmentations do not apply
            kept = augment if encoder == "conv" else {k: v for k, v in augment.items() if k == "paraphrase_prob"}
            config = TrainConfig(datasets=[sets[c] for c in collections], out=out, image_size=args.size, steps=args.steps,
                                 seed=args.seed, encoder=encoder, text_encoder=text, **kept)
            started = time.perf_counter()
            summary = train_reward_model(config, resume=out.exists())
            print(f"trained {name}: {summary['steps']} steps, loss {summary['final_loss']:.3f}, {time.perf_counter() - started:.0f} s", flush=True)
    return paths


def score_models(args, sets: dict[str, Path], models: dict[str, Path]) -> dict[str, dict]:
    from headway.reward.loading import load_reward_model
    from headway.reward.robustness import conditions_from, render_table, robustness_report, write_report

    set_torch_threads(1)
    tests = [name for name in sets if name.startswith("test_")]
    wordings = list(WORDINGS[args.task][: args.wordings])
    if args.wordings and WORDINGS[args.task][-1] not in wordings:
        wordings[-1] = WORDINGS[args.task][-1]  # always keep the different task
    reports = {}
    for name, path in models.items():
        target = args.out / f"report_{name}"
        if target.with_suffix(".json").exists():
            reports[name] = json.loads(target.with_suffix(".json").read_text())
            continue
        model = load_reward_model(path, device="cpu")
        conditions = conditions_from(
            [sets[t] for t in tests], [t.removeprefix("test_") for t in tests], None, wordings,
            _numbers(args.fps), _ints(args.sizes), _numbers(args.speeds),
        )
        report = robustness_report(model, conditions)
        training = json.loads((path / "training.json").read_text())
        report["model"] = {"name": name, "path": str(path), "training_seconds": training["seconds"], "training": training}
        write_report(report, target, title=f"{args.task}: {name} model")
        print(f"\n== {name} model ==\n{render_table(report)}", flush=True)
        reports[name] = report
    return reports


def compare(args, reports: dict[str, dict]) -> str:
    """One table: each condition, each model's value of each metric (with its change from nominal)."""
    names = list(reports)
    rows = reports[names[0]]["rows"]
    head = "| condition | " + " | ".join(f"{m} ({n})" for m in COMPARED for n in names) + " | final progress S/F | targets |"
    lines = [head, "|" + "---|" * (len(COMPARED) * len(names) + 3)]
    by_label = {n: {r["label"]: r for r in reports[n]["rows"]} for n in names}
    for index, row in enumerate(rows):
        cells = []
        for metric in COMPARED:
            for name in names:
                other = by_label[name].get(row["label"])
                value = other["metrics"][metric] if other else float("nan")
                cell = "n/a" if not math.isfinite(value) else f"{value:.3f}"
                if index and math.isfinite(value):
                    cell += f" ({other['change'][metric]:+.3f})"
                cells.append(cell)
        present = [n for n in names if row["label"] in by_label[n]]
        finals = "; ".join(
            f"{n}: {by_label[n][row['label']]['final_progress']['successes']:.2f}/{by_label[n][row['label']]['final_progress']['failures']:.2f}"
            for n in present
        )
        met = "; ".join(f"{n}: {_met(by_label[n][row['label']]['targets']['all'])}" for n in present)
        lines.append(f"| {row['label']} | " + " | ".join(cells) + f" | {finals} | {met} |")
    baseline_lines = ["", "Baselines on the same episodes (model-independent):", "",
                      "| condition | baseline | " + " | ".join(COMPARED) + " |", "|" + "---|" * (len(COMPARED) + 2)]
    shown = set()
    for row in rows:
        for baseline, values in row.get("baselines", {}).items():
            key = (baseline, tuple(round(values[m], 6) for m in COMPARED if math.isfinite(values[m])))
            if baseline.startswith("annotation") or key in shown:
                continue  # state-based baselines repeat on sets whose episodes are the same trajectories
            shown.add(key)
            baseline_lines.append(
                f"| {row['label']} | {baseline} | " + " | ".join("n/a" if not math.isfinite(values[m]) else f"{values[m]:.3f}" for m in COMPARED) + " |"
            )
    seconds = {n: reports[n].get("model", {}).get("training_seconds") for n in names}
    footer = ["", "Training time (s): " + ", ".join(f"{n} {'n/a' if s is None else f'{s:.0f}'}" for n, s in seconds.items())]
    return "\n".join(lines + baseline_lines + footer)


def plot_compare(reports: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(reports)
    rows = reports[names[0]]["rows"]
    by_label = {n: {r["label"]: r for r in reports[n]["rows"]} for n in names}
    figure, axes = plt.subplots(1, len(COMPARED), figsize=(3.0 * len(COMPARED), 4.2))
    x = np.arange(len(rows))
    width = 0.8 / len(names)
    for axis, metric in zip(axes, COMPARED):
        for k, name in enumerate(names):
            values = [by_label[name][r["label"]]["metrics"][metric] if r["label"] in by_label[name] else float("nan") for r in rows]
            axis.bar(x + k * width, [v if math.isfinite(v) else 0 for v in values], width, label=name)
        axis.set_title(metric, fontsize=8)
        axis.set_xticks(x + width * (len(names) - 1) / 2)
        axis.set_xticklabels([r["label"] for r in rows], rotation=70, fontsize=6, ha="right")
        axis.tick_params(axis="y", labelsize=7)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _met(value) -> str:
    return "n/a" if value is None else "met" if value else "missed"


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sets = collect_sets(args)
    models = train_models(args, sets)
    reports = score_models(args, sets, models)
    table = compare(args, reports)
    (args.out / "comparison.md").write_text(table + "\n")
    (args.out / "comparison.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "reports": reports}, indent=1, default=str)
    )
    plot_compare(reports, args.out / "comparison.png")
    print("\n" + table)
    print(f"\nbench done in {time.perf_counter() - started:.0f} s; {args.out}/comparison.md, .json, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
