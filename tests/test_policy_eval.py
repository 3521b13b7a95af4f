"""The shared evaluation loops of headway/policy/evaluate.py: one env and vectorised envs give the same rows per seed."""

from __future__ import annotations

import numpy as np

from headway.policy.evaluate import DEFAULT_EVAL_SEED, run_eval_episode, run_vec_eval_episodes, summarize_episodes


class _Ramp:
    """A deterministic policy with per-episode state: a fixed random linear map plus a step ramp."""

    def __init__(self, obs_dim: int) -> None:
        self.w = np.random.default_rng(0).normal(0, 0.3, (7, obs_dim)).astype(np.float32)
        self.t = 0

    def reset(self) -> None:
        self.t = 0

    def act(self, observation: dict) -> np.ndarray:
        self.t += 1
        obs = np.concatenate([observation["state"], observation["object"]])
        return np.tanh(self.w @ obs + 0.05 * self.t).astype(np.float32)


def test_summary_figures_and_step_counters():
    rows = [
        {"seed": 5, "success": True, "return": 1.0, "dense_return": 3.0, "length": 4, "used": 1},
        {"seed": 6, "success": False, "return": 0.0, "dense_return": 1.0, "length": 6, "used": 4},
    ]
    figures = summarize_episodes(rows, counters=("used",))
    assert figures == {"success_rate": 0.5, "mean_return": 0.5, "mean_dense_return": 2.0, "mean_length": 5.0, "successes": [1, 0], "used": 0.5}


def test_vectorised_evaluation_gives_the_rows_of_one_env_per_seed():
    from headway.policy.vec_env import VecEnv, VecEnvSpec, make_env

    spec = VecEnvSpec("lift", horizon=8)
    single = make_env(spec)
    obs_dim = sum(int(single.observation_space[k].shape[0]) for k in ("state", "object"))
    policy = _Ramp(obs_dim)
    serial = [run_eval_episode(policy, single, DEFAULT_EVAL_SEED + i, record=False)[0] for i in range(3)]
    single.close()

    policies = [_Ramp(obs_dim), _Ramp(obs_dim)]  # one per slot: 3 episodes over 2 envs refill slot 0 or 1
    started = []

    def act(slots, observations):
        assert slots == sorted(slots)
        actions = np.stack([policies[s].act(o) for s, o in zip(slots, observations)])
        return actions, {"steps": np.ones(len(slots), bool)}

    with VecEnv(spec, 2, processes=False) as env:
        rows = run_vec_eval_episodes(act, env, 3, start=lambda slot: (started.append(slot), policies[slot].reset()))
    assert len(started) == 3 and sorted(started[:2]) == [0, 1]
    assert [r["seed"] for r in rows] == [DEFAULT_EVAL_SEED + i for i in range(3)]
    assert [{k: v for k, v in r.items() if k != "steps"} for r in rows] == serial  # same actions, same numbers
    assert [r["steps"] for r in rows] == [r["length"] for r in rows]
    assert summarize_episodes(rows, counters=("steps",))["steps"] == 1.0
