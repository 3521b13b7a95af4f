"""Online RL on lift with different rewards, same budget, same seed, same start.

    uv run python bench/rl.py [--model REWARD_CKPT] [--demos DATASET] [--steps 1500] [--out runs/bench_rl]

Variants: sparse, robosuite-dense, prm+pbrs, prm+delta (choose with --variants). Every run starts
from the same initialisation (the actor cloned from the successful demonstrations with the same
seed, the demonstrations in replay) and is evaluated on the same held-out seeds. Without --model /
--demos, a small lift dataset is collected and a small reward model trained first (fresh machine).
Also measures the PRM's share of an environment step with rendering (target <= 25%).
Prints final success, area under the success curve, steps to 90% success, and prm+pbrs / sparse ratios.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from headway.atomic import atomic_write_json
from fixtures import simulated_dataset, trained_reward_model  # bench/ is on sys.path
from headway.policy.rl_train import RLConfig, train_rl
from headway.policy.sac import SACConfig

VARIANTS = {
    "sparse": ("sparse", "none"),
    "prm+pbrs": ("prm", "pbrs"),
    "robosuite-dense": ("robosuite-dense", "none"),
    "prm+delta": ("prm", "delta"),
}


def prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    """The demonstrations and the reward model, made here when not given."""
    demos, model = args.demos, args.model
    if demos is None:
        demos = simulated_dataset(args.out / "data" / "lift", task="lift", episodes=args.collect_episodes, image_size=84, seed=0)
    if model is None:
        model = trained_reward_model(args.out / "reward_model", [Path(demos)], steps=args.reward_steps, seed=0)
    return Path(demos), Path(model)


def prm_cost(model_path: Path, steps: int = 40) -> dict:
    """Median wall time of an env step rendering the model's views, and of the streaming scorer's step."""
    from headway.reward.loading import load_reward_model
    from headway.sim.env import EnvConfig, HeadwayEnv
    from headway.sim.task import get_task

    model = load_reward_model(model_path, device="cpu")
    env = HeadwayEnv(EnvConfig("lift", views=model.views, image_size=model.image_size, terminate_on_success=True))
    scorer = model.stream(get_task("lift").instruction)
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


def steps_to(summary: dict, level: float) -> int | None:
    for step, success in zip(summary["eval_steps"], summary["eval_success"]):
        if success >= level:
            return step
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="reward-model checkpoint (default: train one)")
    parser.add_argument("--demos", type=Path, default=None, help="lift LeRobot dataset (default: collect one)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_rl"))
    parser.add_argument("--steps", type=int, default=1000, help="environment steps per run")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--pretrain-steps", type=int, default=1000, help="actor cloned from successful demos first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--critic-pretrain", type=int, default=500, help="critic-only updates on the demos first")
    parser.add_argument("--bc-weight", type=float, default=10.0, help="BC term keeping the actor near the demos")
    parser.add_argument("--init-alpha", type=float, default=0.005)
    parser.add_argument("--actor-lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--collect-episodes", type=int, default=16)
    parser.add_argument("--reward-steps", type=int, default=1000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)  # small networks: one thread is fastest, and far faster on a busy machine
    demos, model = prepare(args)

    cost = prm_cost(model)
    print(
        f"PRM in the loop: env step with rendering {cost['env_step_ms']:.1f} ms, PRM step {cost['prm_step_ms']:.1f} ms "
        f"= {100 * cost['prm_share_of_env_step']:.0f}% of an env step (target <= 25%)"
    )
    results = {}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        reward, shaping = VARIANTS[name]
        config = RLConfig(
            task="lift",
            reward=f"prm:{model}" if reward == "prm" else reward,
            shaping=shaping,
            demos=demos,
            steps=args.steps,
            out=args.out / name,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            seed=args.seed,
            batch_size=args.batch_size,
            pretrain_steps=args.pretrain_steps,
            critic_pretrain=args.critic_pretrain,
            critic_warmup=0,
            sac=SACConfig(bc_weight=args.bc_weight, init_alpha=args.init_alpha, actor_lr=args.actor_lr),
            progress=False,
        )
        print(f"--- {name} ({args.steps} env steps) ...", flush=True)
        summary = train_rl(config, resume=True)
        results[name] = summary
        print(
            f"{name}: success by step {dict(zip(summary['eval_steps'], summary['eval_success']))}, "
            f"final {summary['final_success_rate']:.2f}, AUC {summary['success_auc']:.3f}, {summary['seconds']:.0f} s",
            flush=True,
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, summary in results.items():
        ax.plot(summary["eval_steps"], summary["eval_success"], marker="o", label=name)
    ax.set(xlabel="environment steps", ylabel=f"success rate ({args.eval_episodes} held-out seeds)", ylim=(-0.05, 1.05), title="lift: online RL by reward source")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=110)

    print(f"\n| variant | final success | area under success curve | steps to 90% | wall s |")
    print("|---|---|---|---|---|")
    for name, s in results.items():
        reached = steps_to(s, 0.9)
        print(f"| {name} | {s['final_success_rate']:.2f} | {s['success_auc']:.3f} | {reached if reached is not None else 'not reached'} | {s['seconds']:.0f} |")
    ratios = {}
    if "prm+pbrs" in results and "sparse" in results:
        p, s = results["prm+pbrs"], results["sparse"]
        ratios["prm+pbrs / sparse final success"] = p["final_success_rate"] / s["final_success_rate"] if s["final_success_rate"] else None
        ratios["prm+pbrs / sparse AUC"] = p["success_auc"] / s["success_auc"] if s["success_auc"] else None
    if "prm+pbrs" in results and "robosuite-dense" in results:
        p, d = results["prm+pbrs"], results["robosuite-dense"]
        ratios["prm+pbrs / robosuite-dense AUC"] = p["success_auc"] / d["success_auc"] if d["success_auc"] else None
    for key, value in ratios.items():
        print(f"{key}: {'undefined (denominator 0)' if value is None else f'{value:.2f}'}")
    atomic_write_json(args.out / "bench.json", {"prm_cost": cost, "ratios": ratios, "runs": results, "args": {k: str(v) for k, v in vars(args).items()}})
    print(f"curves: {args.out / 'curves.png'}  figures: {args.out / 'bench.json'}")


if __name__ == "__main__":
    main()
