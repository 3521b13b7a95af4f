"""Steering a finished awr run's policy with a Q-function learned from that run's own episodes.

    MUJOCO_GL=egl uv run python bench/value_steering.py --runs runs/s13/conf_r0/seed{2,3,4,5,6,7}/prm+pbrs \\
        --json runs/s14/steering.json

The awr learner copies its successes; it never asks which of its actions were better. This bench asks
whether the data it collected could tell: per run (a `headway rl finetune --method awr` output),
1. a small LayerNorm Q ensemble is regressed onto Monte Carlo returns of every stored training step
   (the last complete checkpoint's replay.npz), once per target:
   - `success`: gamma^(steps to go) on successful episodes, 0 on failed ones (the sparse reward);
   - `learned`: the run's own reward (with pbrs, the reward model's shaping), plus gamma^k Phi at the
     end of an episode that was cut off rather than terminated;
2. the checkpoint's policy acts as in evaluation, but each step executes the best of --candidates
   actions (its own action and candidates-1 draws of the run's exploration noise around it) by the
   ensemble's mean Q: one step of value-guided policy improvement (V-GPS-style steering);
3. the policy alone and each steered policy are rolled out on the same held-out episodes; the paired
   difference (steered minus alone) is bootstrapped over runs and episodes.
Writes --json (per run and pooled) and prints a table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from headway.atomic import atomic_write_json, latest_checkpoint, read_json
from headway.policy.bc import BCPolicy
from headway.policy.evaluate import DEFAULT_EVAL_SEED, evaluate_policy
from headway.policy.interface import load_policy
from headway.policy.rl_awr import Episode, episodes_from_arrays, gae
from headway.policy.rl_runner import obs_vector
from headway.policy.rl_stats import paired_difference, point_intervals
from headway.runtime import set_torch_threads

TARGETS = ("success", "learned")


def returns(episodes: list[Episode], target: str, gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(observations, executed actions, Monte Carlo return) of every stored step, under `target`: the
    learner's own `gae` with lambda 1 and no value but Phi at a cut-off episode's end."""
    targets = []
    for e in episodes:
        values = np.zeros(len(e.actions) + 1)
        if target == "success":
            rewards, terminated = np.zeros(len(e.actions)), True
            rewards[-1] = float(e.success)
        else:
            rewards, terminated, values[-1] = e.rewards, e.terminated, e.phi[-1]
        targets.append(gae(rewards, values, terminated, gamma, 1.0))
    obs = np.concatenate([e.obs[:-1] for e in episodes]).astype(np.float32)
    return obs, np.concatenate([e.actions for e in episodes]).astype(np.float32), np.concatenate(targets).astype(np.float32)


class QEnsemble(nn.Module):
    """Members Q(normalised obs, action), each a LayerNorm MLP on its own bootstrap of the batch."""

    def __init__(self, inputs: int, members: int, hidden: int = 256) -> None:
        super().__init__()
        block = lambda i, o: [nn.Linear(i, o), nn.LayerNorm(o), nn.ReLU()]
        self.members = nn.ModuleList(nn.Sequential(*block(inputs, hidden), *block(hidden, hidden), nn.Linear(hidden, 1)) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).squeeze(-1) for m in self.members])


def fit_q(obs: np.ndarray, actions: np.ndarray, y: np.ndarray, members: int, steps: int, seed: int) -> tuple[QEnsemble, np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean, std = obs.mean(0), np.maximum(obs.std(0), 1e-2)
    x = torch.from_numpy(np.concatenate([np.clip((obs - mean) / std, -10, 10), actions], 1)).float()
    target = torch.from_numpy(y).float()
    q = QEnsemble(x.shape[1], members)
    opt = torch.optim.Adam(q.parameters(), lr=3e-4)
    for _ in range(steps):
        index = torch.from_numpy(rng.integers(0, len(x), (members, 256)))
        predicted = torch.stack([m(x[i]).squeeze(-1) for m, i in zip(q.members, index)])
        loss = ((predicted - target[index]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return q.eval(), mean, std


class Steered(BCPolicy):
    """The BC policy, executing the best of `candidates` noisy variants of its own action by mean Q."""

    def __init__(self, base: BCPolicy, q: QEnsemble, mean: np.ndarray, std: np.ndarray, candidates: int, noise: float, seed: int) -> None:
        super().__init__(base.net, base.meta)
        self.q, self.mean, self.std, self.candidates, self.noise = q, mean, std, candidates, noise
        self.rng = np.random.default_rng(seed)

    def act(self, observation: dict) -> np.ndarray:
        own = super().act(observation)
        draws = self.rng.normal(0.0, self.noise, (self.candidates - 1, len(own)))
        options = np.clip(own[None] + np.concatenate([np.zeros((1, len(own))), draws]), -1.0, 1.0).astype(np.float32)
        x = np.clip((obs_vector(observation) - self.mean) / self.std, -10, 10).astype(np.float32)
        with torch.no_grad():
            values = self.q(torch.from_numpy(np.concatenate([np.repeat(x[None], len(options), 0), options], 1))).mean(0)
        return options[int(values.argmax())]


def score_run(run: Path, targets: list[str], args: argparse.Namespace) -> tuple[dict, dict[str, list[int]]]:
    """The run's policy alone and steered by each target's Q, on the same held-out episodes."""
    set_torch_threads(1)  # one run per worker process
    checkpoint = latest_checkpoint(run)
    config = read_json(run / "config.json")
    with np.load(checkpoint / "replay.npz") as archive:
        episodes = episodes_from_arrays({key: archive[key] for key in archive.files})
    base = load_policy(checkpoint / "policy", device="cpu")

    def rollout(policy) -> list[int]:
        result = evaluate_policy(policy, config["task"], episodes=args.episodes, seed=args.eval_seed, progress=False)
        return [int(r["success"]) for r in result["per_episode"]]

    results = {"alone": rollout(base)}
    for target in targets:
        q, mean, std = fit_q(*returns(episodes, target, config["awr"]["gamma"]), args.critics, args.fit_steps, config["seed"])
        results[target] = rollout(Steered(base, q, mean, std, args.candidates, config["awr"]["noise"], config["seed"]))
    row = {"episodes": len(episodes), "successes": sum(e.success for e in episodes), "checkpoint": checkpoint.name,
           **{name: float(np.mean(successes)) for name, successes in results.items()}}
    return row, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="finished `headway rl finetune --method awr` folders")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--eval-seed", type=int, default=DEFAULT_EVAL_SEED)
    parser.add_argument("--critics", type=int, default=5)
    parser.add_argument("--fit-steps", type=int, default=4000)
    parser.add_argument("--jobs", type=int, default=2, help="runs scored at once, one process each")
    args = parser.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    if unknown := set(targets) - set(TARGETS):
        raise SystemExit(f"--targets: unknown {sorted(unknown)}; choose from {list(TARGETS)}")
    if args.candidates < 2:
        raise SystemExit("--candidates must be at least 2 (the policy's own action and one alternative)")
    for run in args.runs:
        checkpoint = latest_checkpoint(run)
        if checkpoint is None or not (checkpoint / "replay.npz").exists() or read_json(run / "config.json").get("method") != "awr":
            raise SystemExit(f"{run} is not an awr run with a complete checkpoint (no checkpoints/*/replay.npz); pass `headway rl finetune --method awr` output folders")
    started = time.perf_counter()
    per_run, outcomes = {}, {name: [] for name in ("alone", *targets)}
    context = multiprocessing.get_context("spawn")  # MuJoCo's GL context and torch threads per worker
    with context.Pool(max(1, args.jobs)) as pool:
        jobs = pool.imap(partial(score_run, targets=targets, args=args), args.runs)
        for run, (row, results) in tqdm(zip(args.runs, jobs), total=len(args.runs), desc="runs", unit="run"):
            for name, successes in results.items():
                outcomes[name].append(successes)
            per_run[str(run)] = row
            tqdm.write(f"{run}: " + ", ".join(f"{name} {row[name]:.2f}" for name in results))
    alone = np.array(outcomes["alone"], float)[:, None, :]
    pooled = {"alone": {"success": float(alone.mean()), **{k: v[0] for k, v in point_intervals(alone).items() if k != "mean"}}}
    print(f"\n{len(args.runs)} runs x {args.episodes} held-out episodes; steering with {args.candidates} candidates")
    print(f"{'policy':<22}{'success':>9}  {'steered - alone (95% CI)':>28}")
    print(f"{'alone':<22}{alone.mean():>9.3f}")
    for target in targets:
        steered = np.array(outcomes[target], float)[:, None, :]
        difference = paired_difference(steered, alone)
        pooled[target] = {"success": float(steered.mean()), "minus_alone": difference["mean"][0],
                          "minus_alone_low": difference["low"][0], "minus_alone_high": difference["high"][0]}
        print(f"{'steered by Q(' + target + ')':<22}{steered.mean():>9.3f}  {difference['mean'][0]:+.3f} ({difference['low'][0]:+.3f} to {difference['high'][0]:+.3f})")
    atomic_write_json(args.json, {"runs": per_run, "pooled": pooled, "candidates": args.candidates, "episodes": args.episodes,
                                  "eval_seed": args.eval_seed, "wall_seconds": round(time.perf_counter() - started, 1)})
    print(f"wrote {args.json} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
