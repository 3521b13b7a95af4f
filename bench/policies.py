"""Policies from labelled data: BC, RA-BC, success-filtered BC, IQL on headway labels and on sparse success.

    uv run python bench/policies.py --json runs/bench_policies/policies.json [--tasks lift] [--seeds 0,1] [--episodes 20]

The defaults are the headline protocol (issue 24); pass smaller settings for a reduced run and say so.
Per task (lift, stack, pick_place_can):
1. Dataset: 60 scripted episodes, half expert and half what real teleoperation adds (noisy, failed,
   recovering, hesitating, detouring: headway.datasets.collect.HARD_MIX), collected once into the work folder.
2. Reward model: a headway stage reward model trained on that dataset (once).
3. Labels: `headway label` of the dataset with that model (progress, success, shaped reward,
   LeRobot's sarm_progress.parquet), chunk size = the policies' chunk.
4. Eight policies with the same network (headway.policy.bc.BCNet, chunk 10), the same number of actor
   steps and batch size, once per training seed:
   bc           BC on every episode
   rabc         RA-BC on every episode (LeRobot's weights from the labels' progress)
   filtered_bc  BC on the episodes that succeeded
   iql          IQL on every episode, headway's shaped labels (potential-based, gamma of the labels)
   iql_sparse   IQL on every episode, the dataset's sparse success reward
   expert_bc    BC on the expert episodes only (the reference: perfect filtering)
   iql_progress IQL on every episode, the labels' progress of the next frame as the reward
   label_filtered_bc  BC on the episodes the labels call successful (success filtering without a recorded outcome)
5. Each rolled out on the same held-out seeds. Success: mean over training seeds of the success
   rate; low/high: a 95% interval from a two-level bootstrap (training seeds, then episodes); `minus_<row>`:
   paired differences on the same seeds and episodes (every row against BC, IQL against RA-BC and IQL sparse,
   RA-BC against success filtering); `failed_weight_share`: the failed episodes' share of a weighted row's weight.
Finished stages (datasets, models, labels, trained and evaluated policies) are reused on a rerun.
Writes the JSON (`{"tasks": {TASK: {row: {"success", "low", "high", ...}}}}`) and a PNG beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from headway.atomic import atomic_write_json
from headway.datasets.collect import HARD_MIX
from headway.datasets.reader import DatasetReader
from headway.policy.bc import (
    BCConfig,
    BCPolicy,
    sample_weights,
    train_bc,
    weight_shares,
)
from headway.policy.bc_data import load_bc_samples
from headway.policy.evaluate import evaluate_policy
from headway.policy.iql import IQLConfig, train_iql
from headway.policy.rl_stats import paired_difference
from headway.runtime import set_torch_threads

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import simulated_dataset, trained_reward_model  # noqa: E402

TASKS = ("lift", "stack", "pick_place_can")
# row -> (label, bar colour), in the order of the table and the plot
ROWS = {
    "bc": ("BC (all)", "0.6"),
    "rabc": ("RA-BC (all)", "tab:orange"),
    "filtered_bc": ("BC (successes)", "0.4"),
    "iql": ("IQL (headway shaped)", "tab:blue"),
    "iql_sparse": ("IQL (sparse success)", "tab:cyan"),
    "expert_bc": ("BC (experts only)", "tab:green"),
    "iql_progress": ("IQL (headway progress)", "tab:purple"),
    "label_filtered_bc": ("BC (labelled successes)", "tab:olive"),
}
IQL_REWARDS = {"iql": "shaped", "iql_sparse": "sparse", "iql_progress": "progress"}  # IQL rows -> IQLConfig.reward
IQL_SETTINGS_BEFORE = {"max_weight": 100.0, "critic_steps": 0}  # what rows run before these were options used


def ensure_labels(dataset: Path, model: Path, out: Path, chunk: int) -> Path:
    from headway.reward.labelling import LabelConfig, label_dataset

    if not (out / "labels.json").exists():
        summary = label_dataset(LabelConfig(dataset=dataset, model=model, out=out, chunk_size=chunk), resume=True, progress=False)
        print(summary.render(), flush=True)
    return out


RECORDED_OUTCOME = ("next.reward", "next.success", "next.done", "next.robosuite_dense_reward")


def without_recorded_outcome(dataset: Path, out: Path) -> Path:
    """A copy of `dataset` without the simulator's reward, success and done columns, as teleoperated data
    comes (lerobot's own `remove_feature`); headway's episode card is kept for the bench's bookkeeping."""
    if not (out / "meta" / "info.json").exists():
        import shutil

        from lerobot.datasets.dataset_tools import remove_feature
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        source = LeRobotDataset(repo_id=f"local/{dataset.name}", root=dataset, video_backend="pyav")
        remove_feature(source, [c for c in RECORDED_OUTCOME if c in source.meta.features], output_dir=partial, repo_id=f"local/{out.name}")
        shutil.copy2(dataset / "meta" / "headway.json", partial / "meta" / "headway.json")
        partial.rename(out)
    return out


def bootstrap_interval(per_seed: list[list[bool]], draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean success: resample training seeds, then episodes within each."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(s, dtype=float) for s in per_seed]
    means = np.empty(draws)
    for i in range(draws):
        chosen = rng.integers(0, len(arrays), len(arrays))
        means[i] = np.mean([rng.choice(arrays[c], len(arrays[c])).mean() for c in chosen])
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def run_task(task: str, args: argparse.Namespace) -> dict:
    work = args.work / task
    dataset = simulated_dataset(
        args.work / "data" / task, task=task, episodes=args.collect_episodes, mix=HARD_MIX, image_size=84, seed=args.data_seed
    )
    model = trained_reward_model(args.work / "reward" / task, [dataset], steps=args.reward_steps, seed=0)
    if args.no_recorded_reward:  # what the labels are worth on data with no reward of its own: policies learn from the copy
        dataset = without_recorded_outcome(dataset, args.work / "data" / f"{task}_no_reward")
        work = args.work / f"{task}_no_reward"
    labels = ensure_labels(dataset, model, args.work / "labels" / work.name, args.chunk)
    reader = DatasetReader(dataset)
    outcomes = {i: reader.outcome(i) for i in range(reader.num_episodes)}
    experts = tuple(i for i, o in outcomes.items() if o is not None and o.mode == "expert")
    successes = tuple(i for i, o in outcomes.items() if o is not None and o.success)
    failures = [i for i, o in outcomes.items() if o is not None and not o.success]
    modes: dict[str, list[int]] = {}
    for i, o in outcomes.items():
        modes.setdefault(o.mode if o else "unknown", []).append(i)
    print(f"{task}: {reader.num_episodes} episodes, {len(experts)} expert, {len(successes)} successful; modes "
          + ", ".join(f"{m} {len(v)} ({sum(outcomes[i].success for i in v)} ok)" for m, v in sorted(modes.items())), flush=True)

    samples = load_bc_samples(dataset, chunk=args.chunk, progress=False)
    rows: dict[str, list[dict]] = {name: [] for name in args.rows}
    for seed in args.seeds:
        for name in args.rows:
            out = work / f"{name}_s{seed}"
            report_path = out / "eval.json"
            if report_path.exists() and same_protocol(json.loads(report_path.read_text()).get("protocol", {}), protocol(args, name)):
                rows[name].append(json.loads(report_path.read_text()))
                continue
            common = dict(dataset=dataset, out=out, chunk=args.chunk, steps=args.steps, batch_size=args.batch_size, seed=seed)
            started = time.perf_counter()
            if name == "bc":
                summary = train_bc(BCConfig(**common), progress=False, samples=samples)
            elif name == "rabc":
                summary = train_bc(BCConfig(weights="rabc", labels=labels, **common), progress=False, samples=samples)
            elif name == "filtered_bc":
                summary = train_bc(BCConfig(episodes=successes, **common), progress=False)
            elif name == "label_filtered_bc":
                summary = train_bc(BCConfig(weights="success", labels=labels, **common), progress=False)
            elif name == "expert_bc":
                summary = train_bc(BCConfig(episodes=experts, **common), progress=False)
            else:
                summary = train_iql(IQLConfig(labels=labels, reward=IQL_REWARDS[name], expectile=args.expectile, temperature=args.temperature,
                                              max_weight=args.max_weight, critic_steps=args.critic_steps, **common), progress=False, samples=samples)
            policy = BCPolicy.load(out, task=task)
            report = evaluate_policy(policy, task, episodes=args.episodes, seed=args.eval_seed, progress=False)
            row = {"protocol": protocol(args, name), "seed": seed, "train_seconds": time.perf_counter() - started - report["seconds"],
                   "train": {k: v for k, v in summary.items() if k != "notes"}, "success_rate": report["success_rate"],
                   "mean_length": report["mean_length"], "per_episode": [bool(r["success"]) for r in report["per_episode"]]}
            atomic_write_json(report_path, row)
            rows[name].append(row)
            print(f"{task} seed {seed} {name}: success {100 * report['success_rate']:.0f}% over {args.episodes}, "
                  f"length {report['mean_length']:.1f}, train {row['train_seconds']:.0f} s", flush=True)
    result = {}
    for name, runs in rows.items():
        low, high = bootstrap_interval([r["per_episode"] for r in runs])
        result[name] = {"success": float(np.mean([r["success_rate"] for r in runs])), "low": low, "high": high,
                        "per_seed": [r["success_rate"] for r in runs], "mean_length": float(np.mean([r["mean_length"] for r in runs]))}
        if name in IQL_REWARDS and all("weight_share_by_episode" in r["train"] for r in runs):  # how much of the actor's weight the failures keep
            shares = [{int(e): v for e, v in r["train"]["weight_share_by_episode"].items()} for r in runs]  # keys are strings once read back
            result[name]["failed_weight_share"] = float(np.mean([sum(share[i] for i in failures) for share in shares]))
    # paired differences (same training seeds, same held-out episodes): every row against BC, the targets' pairs,
    # and RA-BC against success filtering (does per-frame weighting earn more than dropping failed episodes?)
    for name, other in [(name, "bc") for name in rows if name != "bc"] + [("iql", "rabc"), ("iql", "iql_sparse"), ("rabc", "filtered_bc")]:
        if name in rows and other in rows:
            difference = paired_difference(*(np.array([[r["per_episode"]] for r in rows[k]], dtype=float) for k in (name, other)))
            result[name][f"minus_{other}"] = {"mean": difference["mean"][0], "low": difference["low"][0], "high": difference["high"][0]}
    if "rabc" in result:  # RA-BC's weights depend on the labels alone, not on the training seed
        shares = weight_shares(sample_weights(samples, labels, args.chunk), samples.episode_index)
        result["rabc"] |= {"failed_weight_share": sum(shares["weight_share_by_episode"][i] for i in failures),
                           "effective_sample_share": shares["effective_sample_share"]}
    result["_data"] = {"episodes": reader.num_episodes, "expert": len(experts), "successful": len(successes),
                       "modes": {m: len(v) for m, v in modes.items()},
                       "failed_sample_share": float(np.isin(samples.episode_index, failures).mean())}
    return result


def protocol(args: argparse.Namespace, row: str | None = None) -> dict:
    """The settings a row's result depends on (a finished row is reused only under the same ones); IQL's own settings
    belong to IQL rows alone, and to the run's record (row None)."""
    settings = {"steps": args.steps, "chunk": args.chunk, "batch_size": args.batch_size, "episodes": args.episodes, "eval_seed": args.eval_seed}
    if row is None or row in IQL_REWARDS:
        settings |= {"expectile": args.expectile, "temperature": args.temperature, "max_weight": args.max_weight, "critic_steps": args.critic_steps}
    return settings


def same_protocol(stored: dict, current: dict) -> bool:
    """A finished row is reused when every setting it depends on agrees; settings added since it ran count at the
    value they had then."""
    return all(stored.get(k, IQL_SETTINGS_BEFORE.get(k)) == v for k, v in current.items())


def targets(task_rows: dict) -> dict:
    """The issue's targets, checked on what was measured."""
    bc, rabc, iql, sparse, expert = (task_rows[k]["success"] for k in ("bc", "rabc", "iql", "iql_sparse", "expert_bc"))
    gap = expert - bc
    return {
        "rabc_minus_bc_points": 100 * (rabc - bc),
        "rabc_at_least_bc_plus_20": rabc >= bc + 0.20,
        "iql_at_least_rabc": iql >= rabc,
        "iql_at_least_iql_sparse": iql >= sparse,
        "iql_gap_closed": (iql - bc) / gap if gap > 0 else None,
        "iql_closes_75_percent": (iql - bc) >= 0.75 * gap if gap > 0 else None,
    }


def plot(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results)
    figure, axes = plt.subplots(1, len(tasks), figsize=(max(4.5 * len(tasks), 5.5), 3.8), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        rows = [r for r in ROWS if r in results[task]]
        means = [100 * results[task][r]["success"] for r in rows]
        errors = [[100 * (results[task][r]["success"] - results[task][r]["low"]) for r in rows],
                  [100 * (results[task][r]["high"] - results[task][r]["success"]) for r in rows]]
        axis.bar(range(len(rows)), means, yerr=errors, capsize=3, color=[ROWS[r][1] for r in rows])
        axis.set_xticks(range(len(rows)), [ROWS[r][0] for r in rows], rotation=35, ha="right", fontsize=7)
        axis.set_ylim(0, 105)
        axis.set_ylabel("success (%)")
        axis.set_title(task, fontsize=9)
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True, help="where the results go (a PNG is written beside it)")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--rows", default=",".join(ROWS), help="which policies (default: all eight)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_policies"))
    parser.add_argument("--seeds", default="0,1,2", help="training seeds")
    parser.add_argument("--episodes", type=int, default=30, help="held-out evaluation episodes per policy and seed")
    parser.add_argument("--eval-seed", type=int, default=900_000)
    parser.add_argument("--steps", type=int, default=1500, help="actor steps, the same for every row")
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--expectile", type=float, default=0.7)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-weight", type=float, default=100.0, help="IQL's clip on exp(temperature * advantage)")
    parser.add_argument("--critic-steps", type=int, default=0, help="IQL's value and critic steps before its actor starts")
    parser.add_argument("--collect-episodes", type=int, default=60)
    parser.add_argument("--data-seed", type=int, default=3)
    parser.add_argument("--reward-steps", type=int, default=1500)
    parser.add_argument("--no-recorded-reward", action="store_true",
                        help="policies learn from a copy of the data without its recorded reward, success and done (as teleoperated data): "
                             "IQL's shaped reward is then the shaping alone and its sparse reward the labelled success")
    args = parser.parse_args()
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown or not args.seeds or len(set(args.seeds)) != len(args.seeds):
        parser.error(f"unknown rows {unknown} or empty/repeated --seeds")
    set_torch_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results, checks, data = {}, {}, {}
    for task in args.tasks:
        task_rows = run_task(task, args)
        data[task] = task_rows.pop("_data")
        results[task] = task_rows
        if all(k in task_rows for k in ("bc", "rabc", "iql", "iql_sparse", "expert_bc")):
            checks[task] = targets(task_rows)
    headline = args.seeds == [0, 1, 2] and args.episodes >= 30 and args.tasks == list(TASKS) and len(args.rows) == len(ROWS)
    command = "uv run python bench/policies.py " + " ".join(sys.argv[1:])
    payload = {"tasks": results, "targets": checks, "no_recorded_reward": args.no_recorded_reward, "data": data, "protocol": protocol(args) | {"seeds": args.seeds},
               "reduced": not headline, "command": command, "seconds": time.perf_counter() - started}
    atomic_write_json(args.json, payload)
    png = args.json.with_suffix(".png")
    label = ("" if headline else "REDUCED run: ") + ("data without a recorded reward; " if args.no_recorded_reward else "")
    plot(results, png, f"{label}training seeds {args.seeds}, {args.episodes} held-out episodes each,\n{args.steps} actor steps; bars: 95% bootstrap interval")
    print()
    for task, rows in results.items():
        print(f"| {task} | " + " | ".join(f"{ROWS[r][0]} {100 * v['success']:.0f}% [{100 * v['low']:.0f}, {100 * v['high']:.0f}]"
                                         for r, v in rows.items()) + " |")
        differences = [(r, key[6:], d) for r, v in rows.items() for key, d in v.items() if key.startswith("minus_")]
        print("  paired differences (95% interval): " + ", ".join(f"{ROWS[r][0]} - {ROWS[o][0]} {100 * d['mean']:+.1f} "
              f"[{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]" for r, o, d in differences))
        shares = {ROWS[r][0]: f"{100 * v['failed_weight_share']:.1f}%" for r, v in rows.items() if "failed_weight_share" in v}
        if shares:
            print(f"  failed episodes: {100 * data[task]['failed_sample_share']:.1f}% of the samples; their share of each weighted row's weight: {shares}")
        if task in checks:
            print(f"  targets: {checks[task]}")
    print(f"wrote {args.json} and {png} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
