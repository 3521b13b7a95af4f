"""Online RL from a weak headway policy: which reward gets it to 90% success fastest, and does it keep its start.

    uv run python bench/rl.py --task lift --seeds 2,3 --json PATH [--variants sparse,robosuite-dense,oracle+pbrs,prm+pbrs]
        [--steps 3000] [--eval-every 750] [--eval-episodes 20] [--method awr|ibrl] [--model REWARD_CKPT] [--demos DATASET] [--out runs/bench_rl]

Per training seed the start is a deliberately weak BC policy (`headway policy bc` on --init-episodes
demonstration episodes, --init-steps steps, that seed), shared by every variant (paired comparison).
Its own success is measured with `headway policy eval`'s evaluator on the same held-out seeds the
runs evaluate on, and printed beside each run's first evaluation (they must agree: step 0 is that
policy). Every run uses headway/policy/rl_runner.py with --method: awr (default) fine-tunes the start's own
network by advantage-weighted regression on noisy rollouts, anchored on the start's own demonstration
episodes (headway/policy/rl_awr.py); ibrl acts through the frozen start with an RL actor chosen by a critic
ensemble (headway/policy/rl_algo.py). Two envs in worker processes per run. The defaults are the headline
protocol; its settings were chosen on seeds 0 and 1 and the headline seeds are 2-6.

Variants (reward, shaping):
- sparse: 1 on success, episode ends on success.
- robosuite-dense: robosuite's shaped reward with success ABSORBING (the success step pays r/(1-gamma),
  what staying successful forever is worth), so its optimum is success, not hovering below it.
- oracle+pbrs: sparse + pbrs with the simulator's true progress as potential (tells "shaping does not
  help this learner" from "the reward model's potential is inadequate").
- prm+pbrs: sparse + pbrs with the reward model's potential (all envs' frames scored in one batch).
- prm+pbrs-unc: the same with Phi -= --uncertainty-penalty * the model's ensemble uncertainty.
- prm+delta: Phi(s') - Phi(s) alone (not policy-invariant), for comparison.

Statistics: each point pools seeds x episodes; 95% percentile-bootstrap intervals resample seeds and,
within them, episodes (headway/policy/rl_stats.py); steps-to-90% gets an interval from the same replicates.
rliable's stratified bootstrap (over seeds) of the final success's mean and IQM is printed beside them.
prm+pbrs against each other arm is also compared paired (same seeds, same held-out episodes, one draw for
both): the difference per point and averaged over the points after the start, with 95% intervals;
`--against DIR` pairs every arm with DIR's --against-variant runs of the same seeds (link DIR/init into
--out so the starts are the same).
`--json PATH` writes {"task", "seeds", "eval_episodes", "wall_seconds", "variants": {NAME: {"start_success",
"final_success", "worst_drop", "steps_to_90", "curve_steps", "curve_mean", "curve_low", "curve_high"}}};
OUT/bench_details.json adds intervals of steps-to-90, paired differences, throughput, the init policies'
own success and the reward-hacking flags; OUT/curves.png plots the means with their bands.
Runs already in --out are resumed, not redone. Without --model / --demos, a 16-episode dataset is
collected and a reward model trained first (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fixtures import simulated_dataset, trained_reward_model  # bench/ is on sys.path
from headway.atomic import atomic_write_json
from headway.commands import integers_argument, names_argument
from headway.policy.rl_stats import paired_difference, point_intervals, steps_to_threshold, worst_drop
from headway.runtime import set_torch_threads

VARIANTS = {  # name -> (reward, shaping, uncertainty penalty used)
    "sparse": ("sparse", "none", False),
    "robosuite-dense": ("robosuite-dense", "none", False),
    "robosuite-dense+pbrs": ("robosuite-dense", "pbrs", False),  # robosuite's dense reward as the potential, sparse success as the reward
    "oracle+pbrs": ("oracle", "pbrs", False),
    "prm+pbrs": ("prm", "pbrs", False),
    "prm+pbrs-unc": ("prm", "pbrs", True),
    "prm+delta": ("prm", "delta", False),
}
DEFAULT_VARIANTS = "sparse,robosuite-dense,oracle+pbrs,prm+pbrs"
PRM_VIEWS = ("agentview", "robot0_eye_in_hand")


def init_policy(args: argparse.Namespace, demos: Path, seed: int) -> Path:
    """The weak start of `seed`: BC on a few demonstration episodes (made once)."""
    from headway.policy.bc import BCConfig, train_bc

    out = args.out / "init" / f"seed{seed}"
    if not (out / "config.json").exists():
        episodes = tuple((seed * args.init_episodes + k) % args.init_pool for k in range(args.init_episodes))
        train_bc(BCConfig(dataset=demos, out=out, steps=args.init_steps, episodes=episodes, seed=seed), progress=False)
    return out


def init_success(args: argparse.Namespace, policy: Path, seed: int) -> dict:
    """The init policy's own success with `headway policy eval`'s evaluator on the runs' held-out seeds."""
    from headway.executors import ray_settings
    from headway.policy.evaluate import DEFAULT_EVAL_SEED, evaluate_policy
    from headway.policy.interface import load_policy

    cache = args.out / "init" / f"seed{seed}_eval.json"
    if cache.exists():
        return json.loads(cache.read_text())
    ray = ray_settings(args.executor, args.address, args.workers)
    report = evaluate_policy(load_policy(policy), args.task, episodes=args.eval_episodes, seed=DEFAULT_EVAL_SEED, horizon=args.horizon, progress=False, ray=ray)
    result = {"success_rate": report["success_rate"], "successes": [int(r["success"]) for r in report["per_episode"]]}
    atomic_write_json(cache, result)
    return result


def run_config(args: argparse.Namespace, variant: str, seed: int, init: Path, demos: Path, model: Path | None):
    from headway.policy.rl_algo import AgentConfig
    from headway.policy.rl_awr import AWRConfig
    from headway.policy.rl_runner import OnlineRLConfig

    reward, shaping, uncertain = VARIANTS[variant]
    return OnlineRLConfig(
        task=args.task,
        init=init,
        method=args.method,
        reward=f"prm:{model}" if reward == "prm" else reward,
        shaping=shaping,
        demos=demos,
        demo_episodes=args.demo_episodes,
        steps=args.steps,
        out=args.out / f"seed{seed}" / variant,
        seed=seed,
        num_envs=args.envs,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        utd=args.utd,
        warmup_steps=args.warmup_steps,
        horizon=args.horizon,
        uncertainty_penalty=args.uncertainty_penalty if uncertain else 0.0,
        score_every=args.score_every if reward == "prm" else None,
        early_reset=args.early_reset if shaping != "none" else 0,
        early_reset_gain=args.early_reset_gain,
        agent=AgentConfig(critics=args.critics, n_step=args.n_step, bc_weight=args.bc_weight, residual=args.residual),
        awr=AWRConfig(noise=args.noise, noise_correlation=args.noise_correlation, retries=args.retries, weighting=args.weighting, beta=args.beta, gamma=args.gamma, lam=args.lam, updates_per_episode=args.updates_per_episode,
                       demo_ratio=args.anchor, baseline=args.baseline, margin=args.margin,
                       refit_every=args.refit_every, refit_steps=args.refit_steps, successes_only=args.successes_only,
                       refit_from=args.refit_from, refit_lr=args.refit_lr, refit_patience=args.refit_patience,
                       value_sees_potential=args.value_sees_potential,
                       failure_peak=args.failure_peak if shaping != "none" else 0.0),
        progress=True,
    )


def train_one(config) -> dict:
    from headway.csvlog import read_rows
    from headway.policy.rl_runner import run_online_rl, saved_identity, training_outcomes

    set_torch_threads(1)
    done = config.out / "summary.json"
    if done.exists() and (config.out / "config.json").exists():  # finished earlier with these settings: reuse it
        summary = json.loads(done.read_text())
        if summary.get("steps", 0) >= config.steps and saved_identity(config.out) == config.identity():
            return training_outcomes(read_rows(config.out / "train.csv", summary["steps"])) | summary  # runs from before these counts
    return run_online_rl(config, resume=True)


def outcome_array(runs: list[dict], episodes: int, length: int) -> np.ndarray:
    """(seeds, points, episodes) 0/1 outcomes of one variant's runs, cut to the first `length` points."""
    return np.array([[r["eval_successes"][p][:episodes] for p in range(length)] for r in runs], dtype=float)


def earlier_runs(out: Path, variant: str, seeds) -> list[dict]:
    """The finished `variant` runs of an earlier bench/rl.py `--out`, one per seed."""
    paths = [out / f"seed{seed}" / variant / "summary.json" for seed in seeds]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"--against {out}: no finished {variant} run for {', '.join(missing)}; run bench/rl.py with the same seeds there first")
    return [json.loads(p.read_text()) for p in paths]


def paired_report(name: str, runs: list[dict], other: str, others: list[dict], episodes: int, replicates: int) -> dict:
    """Prints and returns `name` minus `other` on the same seeds: final success per seed, and the paired bootstrap per point and after the start."""
    diffs = [a["final_success"] - b["final_success"] for a, b in zip(runs, others)]
    print(f"paired final-success difference {name} - {other} per seed: {', '.join(f'{d:+.2f}' for d in diffs)}")
    length = min(len(r["eval_steps"]) for r in runs + others)
    d = paired_difference(outcome_array(runs, episodes, length), outcome_array(others, episodes, length), replicates)
    print(f"paired {name} - {other}, mean success over the points after the start: {d['after_start']:+.3f} "
          f"(95% CI {d['after_start_low']:+.3f} to {d['after_start_high']:+.3f}); per point: "
          + " ".join(f"{m:+.2f}({lo:+.2f},{hi:+.2f})" for m, lo, hi in zip(d["mean"], d["low"], d["high"])))
    return {f"{name} - {other} final success per seed": diffs, f"{name} - {other} paired bootstrap": d}


def pooled(runs: list[dict], episodes: int, replicates: int) -> dict:
    """One variant over seeds: mean curve with bootstrap bands, steps to 90% with its interval."""
    length = min(len(r["eval_steps"]) for r in runs)
    steps = runs[0]["eval_steps"][:length]
    outcomes = outcome_array(runs, episodes, length)
    bands = point_intervals(outcomes, replicates)
    reach = steps_to_threshold(steps, outcomes, 0.9, replicates)
    return {
        "start_success": bands["mean"][0],
        "final_success": bands["mean"][-1],
        "worst_drop": worst_drop(bands["mean"]),
        "steps_to_90": reach["steps"],
        "curve_steps": steps,
        "curve_mean": bands["mean"],
        "curve_low": bands["low"],
        "curve_high": bands["high"],
        "_steps_to_90_interval": [reach["low"], reach["high"]],
        "_share_of_replicates_reaching_90": reach["share_reaching"],
    }


def rliable_final(runs: list[dict], episodes: int, replicates: int) -> dict:
    """rliable's own estimate beside ours: mean and IQM of the per-seed final success rates, with its
    stratified-bootstrap 95% intervals (over seeds only; rl_stats also resamples episodes)."""
    from rliable import library as rly, metrics

    length = min(len(r["eval_steps"]) for r in runs)
    finals = outcome_array(runs, episodes, length)[:, -1, :].mean(axis=1)[:, None]  # (seeds, 1 task)
    np.random.seed(0)
    point, interval = rly.get_interval_estimates(
        {"final": finals}, lambda x: np.array([metrics.aggregate_mean(x), metrics.aggregate_iqm(x)]), reps=replicates
    )
    (mean, iqm), bounds = point["final"], interval["final"]
    return {"mean": float(mean), "mean_interval": bounds[:, 0].tolist(), "iqm": float(iqm), "iqm_interval": bounds[:, 1].tolist()}


def plot(variants: dict[str, dict], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, v in variants.items():
        (line,) = ax.plot(v["curve_steps"], v["curve_mean"], marker="o", label=name)
        ax.fill_between(v["curve_steps"], v["curve_low"], v["curve_high"], color=line.get_color(), alpha=0.15)
    ax.axhline(0.9, color="grey", linestyle=":", linewidth=0.8)
    ax.set(xlabel="environment steps", ylabel=f"success ({len(args.seeds)} seeds x {args.eval_episodes} held-out episodes)", ylim=(-0.05, 1.05),
           title=f"{args.task}: online RL from a weak BC start (95% bootstrap bands)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="lift", choices=("lift", "stack", "pick_place_can"))
    parser.add_argument("--seeds", type=integers_argument, default=(2, 3, 4, 5, 6), help="training seeds (settings were chosen on 0 and 1)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS)
    parser.add_argument("--method", default="awr", choices=("awr", "ibrl"))
    parser.add_argument("--steps", type=int, default=4_500)
    parser.add_argument("--eval-every", type=int, default=750)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--noise", type=float, default=0.05, help="awr: exploration noise on executed actions")
    parser.add_argument("--noise-correlation", type=float, default=0.0, help="awr: AR(1) coefficient of that noise within an episode (0: white)")
    parser.add_argument("--retries", type=int, default=0, help="awr: try a failed training start again (fresh noise) up to this many times before drawing a new one")
    parser.add_argument("--anchor", type=float, default=0.5, help="awr: share of each policy batch (re-cloning: of its weight) from the start's own demonstrations (0: none)")
    parser.add_argument("--weighting", default="positive", choices=("exp", "positive"), help="awr: advantage weighting")
    parser.add_argument("--beta", type=float, default=1.0, help="awr: temperature in advantage standard deviations")
    parser.add_argument("--gamma", type=float, default=0.99, help="awr: discount (of the return and of the potential's shaping)")
    parser.add_argument("--lam", type=float, default=0.95, help="awr: GAE lambda")
    parser.add_argument("--baseline", default="value", choices=("value", "potential"), help="awr: learned V(s, Phi) with GAE, or the potential itself (shaped Monte Carlo return)")
    parser.add_argument("--value-sees-potential", action=argparse.BooleanOptionalAction, default=True, help="awr: the value function sees the potential as an input (V(s, Phi)) or the state alone (V(s))")
    parser.add_argument("--margin", type=float, default=0.0, help="awr positive weighting: imitate steps with advantage above this")
    parser.add_argument("--refit-every", type=int, default=1, help="awr: re-clone the policy afresh every N episodes (0: gradient steps after each)")
    parser.add_argument("--refit-steps", type=int, default=600, help="awr: BC steps of each re-cloning")
    parser.add_argument("--refit-from", default="fresh", choices=("fresh", "current"), help="awr re-cloning: new random weights or the current ones")
    parser.add_argument("--refit-lr", type=float, default=1e-3, help="awr: learning rate of each re-cloning (decayed to a tenth)")
    parser.add_argument("--failure-peak", type=float, default=0.0, help="awr, variants with a potential: also imitate failed training episodes up to their potential's peak when it reaches this (0: off)")
    parser.add_argument("--refit-patience", type=int, default=6, help="awr with --successes-only: re-clone after this many failed training episodes in a row (0: off)")
    parser.add_argument("--successes-only", action=argparse.BooleanOptionalAction, default=True, help="awr: imitate only steps of successful episodes")
    parser.add_argument("--early-reset", type=int, default=30, help="awr, variants with a potential: end a training episode once its potential stalls this many steps (0: off)")
    parser.add_argument("--early-reset-gain", type=float, default=0.03, help="the rise that counts as progress for --early-reset")
    parser.add_argument("--updates-per-episode", type=int, default=50, help="awr: gradient steps per finished episode")
    parser.add_argument("--utd", type=int, default=2)
    parser.add_argument("--critics", type=int, default=5)
    parser.add_argument("--n-step", type=int, default=3)
    parser.add_argument("--bc-weight", type=float, default=0.0)
    parser.add_argument("--residual", type=float, default=0.3, help="bound of the RL actor's correction of the BC action (0: a free actor)")
    parser.add_argument("--warmup-steps", type=int, default=1_000)
    parser.add_argument("--envs", type=int, default=2, help="envs per run, each in its own worker process")
    parser.add_argument("--horizon", type=int, default=None)
    parser.add_argument("--uncertainty-penalty", type=float, default=1.0)
    parser.add_argument("--score-every", type=int, default=None, help="prm variants: score (and render) every k-th frame (default: the model's frame stride; 1: every frame)")
    parser.add_argument("--model", type=Path, default=None, help="reward model checkpoint (default: train one)")
    parser.add_argument("--demos", type=Path, default=None, help="LeRobot dataset of the task (default: collect 16 episodes)")
    parser.add_argument("--demo-episodes", type=int, default=None, help="demonstration episodes in replay (default: all)")
    parser.add_argument("--init-episodes", type=int, default=3, help="episodes the weak BC start is cloned from")
    parser.add_argument("--init-pool", type=int, default=10, help="seed s clones episodes s*k .. s*k+k-1 modulo this")
    parser.add_argument("--init-steps", type=int, default=600)
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_rl"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--against", type=Path, default=None, help="also pair every variant with the --against-variant runs of an earlier --out on the same seeds and starts (e.g. the recipe without the option under test)")
    parser.add_argument("--against-variant", default="prm+pbrs", help="the variant of --against's runs the pairs are made with")
    parser.add_argument("--executor", default="local", choices=("local", "ray"), help="the start policies' own evaluations on Ray workers (headway policy eval's helper)")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start Ray here)")
    parser.add_argument("--workers", type=int, default=None, help="Ray workers for those evaluations")
    args = parser.parse_args()
    started = time.perf_counter()
    names = list(names_argument(args.variants))
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct, got {args.seeds}")
    args.out.mkdir(parents=True, exist_ok=True)
    set_torch_threads(1)
    demos = args.demos or simulated_dataset(args.out / "data" / args.task, task=args.task, episodes=16, views=PRM_VIEWS, image_size=84, seed=0)
    model = None
    if any(VARIANTS[n][0] == "prm" for n in names):
        model = args.model or trained_reward_model(args.out / "reward_model", [Path(demos)], views=PRM_VIEWS, steps=1000, seed=0)

    results: dict[str, list[dict]] = {n: [] for n in names}
    inits = {}
    for seed in args.seeds:
        init = init_policy(args, Path(demos), seed)
        inits[seed] = init_success(args, init, seed)
        print(f"seed {seed}: init policy {init} succeeds on {inits[seed]['success_rate']:.2f} of {args.eval_episodes} held-out episodes (headway policy eval)", flush=True)
        for name in names:
            summary = train_one(run_config(args, name, seed, init, Path(demos), model))
            same = summary["eval_successes"][0] == inits[seed]["successes"]
            print(f"  {name}: start {summary['start_success']:.2f} (init's own {inits[seed]['success_rate']:.2f}, same episodes: {same}) -> "
                  f"{' '.join(f'{v:.2f}' for v in summary['eval_success'])}; {summary['training_episodes']} training episodes "
                  f"({summary['training_successes']} succeeded); {summary['env_steps_per_s']:.0f} env steps/s, "
                  f"{summary['updates_per_s']:.0f} updates/s, {summary['seconds']:.0f} s", flush=True)
            results[name].append(summary)

    variants = {name: pooled(runs, args.eval_episodes, args.bootstrap) for name, runs in results.items()}
    public = {name: {k: v for k, v in p.items() if not k.startswith("_")} for name, p in variants.items()}
    wall = time.perf_counter() - started
    print("\nrobosuite-dense is compared with success absorbing (the success step pays r/(1-gamma)); sparse and pbrs variants end on success.")
    print(f"\n| variant | start | final | worst drop | steps to 90% [95% CI] | mean curve [{args.eval_episodes} eps x {len(args.seeds)} seeds per point] |")
    print("|---|---|---|---|---|---|")
    for name, p in variants.items():
        low, high = p["_steps_to_90_interval"]
        reach = "not reached" if p["steps_to_90"] is None else str(p["steps_to_90"])
        interval = f"[{low if low is not None else '>' + str(args.steps)}, {high if high is not None else '>' + str(args.steps)}]"
        curve = " ".join(f"{m:.2f}({lo:.2f}-{hi:.2f})" for m, lo, hi in zip(p["curve_mean"], p["curve_low"], p["curve_high"]))
        print(f"| {name} | {p['start_success']:.2f} | {p['final_success']:.2f} | {p['worst_drop']:.2f} | {reach} {interval} | {curve} |")
    by_rliable = {name: rliable_final(runs, args.eval_episodes, args.bootstrap) for name, runs in results.items()}
    for name, r in by_rliable.items():
        print(f"rliable, final success over {len(args.seeds)} seeds: {name} mean {r['mean']:.2f} [{r['mean_interval'][0]:.2f}, {r['mean_interval'][1]:.2f}], "
              f"IQM {r['iqm']:.2f} [{r['iqm_interval'][0]:.2f}, {r['iqm_interval'][1]:.2f}]")
    paired = {}
    if "prm+pbrs" in results:
        for other in names:
            if other != "prm+pbrs":
                paired.update(paired_report("prm+pbrs", results["prm+pbrs"], other, results[other], args.eval_episodes, args.bootstrap))
    if args.against is not None:
        earlier = earlier_runs(args.against, args.against_variant, args.seeds)
        for name in names:
            paired.update(paired_report(name, results[name], f"{args.against_variant} of {args.against}", earlier, args.eval_episodes, args.bootstrap))
    throughput = {name: {"env_steps_per_s": float(np.mean([r["env_steps_per_s"] for r in runs])), "updates_per_s": float(np.mean([r["updates_per_s"] for r in runs])),
                         "run_seconds": float(np.mean([r["seconds"] for r in runs]))} for name, runs in results.items()}
    for name, t in throughput.items():
        print(f"throughput {name}: {t['env_steps_per_s']:.0f} env steps/s, {t['updates_per_s']:.0f} updates/s, {t['run_seconds']:.0f} s per run")
    hacking = {name: [bool(r["reward_hacking_flag"]) for r in runs] for name, runs in results.items()}
    report = {"task": args.task, "seeds": list(args.seeds), "eval_episodes": args.eval_episodes, "wall_seconds": round(wall, 1), "variants": public}
    details = {
        "steps_to_90_interval": {n: p["_steps_to_90_interval"] for n, p in variants.items()},
        "share_of_bootstrap_replicates_reaching_90": {n: p["_share_of_replicates_reaching_90"] for n, p in variants.items()},
        "paired_differences": paired, "rliable_final_success": by_rliable, "throughput": throughput, "init_success": {str(s): v for s, v in inits.items()},
        "reward_hacking_flags": hacking, "args": {k: str(v) for k, v in vars(args).items()},
        "runs": {n: [{k: r[k] for k in ("seed", "eval_steps", "eval_success", "start_success", "final_success", "training_episodes", "training_successes", "seconds")} for r in runs] for n, runs in results.items()},
    }
    atomic_write_json(args.out / "bench_details.json", details)
    plot(public, args, args.out / "curves.png")
    if args.json is not None:
        atomic_write_json(args.json, report)
    print(f"wall {wall:.0f} s; curves: {args.out / 'curves.png'}; details: {args.out / 'bench_details.json'}" + (f"; json: {args.json}" if args.json else ""))


if __name__ == "__main__":
    main()
