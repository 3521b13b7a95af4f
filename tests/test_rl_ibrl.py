"""Online RL through a frozen headway policy (headway/policy/rl_algo.py, headway/policy/rl_runner.py, headway/policy/vec_env.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from headway.errors import HeadwayError
from headway.policy.rl_algo import CLAMP, STD_FLOOR, Agent, AgentConfig, Buffer, NStep, Normaliser, mixed_batch
from headway.policy.rl_runner import OnlineRLConfig, run_online_rl
from headway.policy.rl_stats import paired_difference, point_intervals, steps_to_threshold, worst_drop

OBS, ACT = 6, 3


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_normalisation_floors_degenerate_dimensions_and_clamps():
    normaliser = Normaliser(3)
    demos = np.zeros((50, 3))
    demos[:, 0] = np.linspace(-1, 1, 50)  # varies
    demos[:, 1] = 0.7  # constant (a quaternion component in demonstrations)
    demos[:, 2] = 0.7 + 1e-4 * np.sin(np.arange(50))  # nearly constant
    normaliser.fit(demos)
    assert normaliser.std[1] == pytest.approx(STD_FLOOR) and normaliser.std[2] == pytest.approx(STD_FLOOR)
    online = torch.tensor([[0.0, 0.71, 0.5], [5.0, 100.0, -100.0]])
    out = normaliser(online)
    assert out[0, 1] == pytest.approx(0.01 / STD_FLOOR, rel=1e-4)  # a small online change stays small
    assert out.abs().max() <= CLAMP and torch.isfinite(out).all()
    with pytest.raises(HeadwayError):
        normaliser.fit(np.full((3, 3), np.nan))


def test_n_step_returns_bootstrap_through_truncation_not_termination():
    gamma = 0.9

    def row(r):
        return {"obs": np.full(OBS, r), "action": np.zeros(ACT), "reward": r, "next_obs": np.full(OBS, r + 1), "ref_action": np.zeros(ACT),
                "next_ref_action": np.zeros(ACT), "phi": 0.0, "next_phi": 0.0}

    nstep = NStep(3, gamma)
    assert nstep.push(row(1.0), False, False) == [] and nstep.push(row(2.0), False, False) == []
    (first,) = nstep.push(row(3.0), False, False)
    assert first["reward"] == pytest.approx(1 + 0.9 * 2 + 0.81 * 3) and first["discount"] == pytest.approx(0.729)
    assert first["next_obs"][0] == 4.0
    ended = nstep.push(row(4.0), True, False)  # success: 3 transitions flushed, none bootstraps
    assert [t["discount"] for t in ended] == [0.0, 0.0, 0.0]
    assert ended[0]["reward"] == pytest.approx(2 + 0.9 * 3 + 0.81 * 4)
    nstep.clear()
    nstep.push(row(1.0), False, False)
    (cut,) = nstep.push(row(2.0), False, True)[:1]  # time limit: bootstrap with gamma^k
    assert cut["discount"] == pytest.approx(0.81)


def _agent(**overrides) -> Agent:
    agent = Agent(OBS, ACT, AgentConfig(hidden=(32, 32), critics=4, **overrides), seed=0)
    agent.normaliser.fit(np.random.default_rng(0).normal(size=(100, OBS)))
    return agent


def _buffer(n: int = 256, seed: int = 0, scale: float = 1.0) -> Buffer:
    rng = np.random.default_rng(seed)
    buffer = Buffer(n, OBS, ACT)
    for _ in range(n):
        buffer.add({"obs": rng.normal(size=OBS), "action": rng.uniform(-1, 1, ACT), "reward": scale * rng.normal(), "next_obs": rng.normal(size=OBS),
                    "discount": 0.99, "ref_action": rng.uniform(-1, 1, ACT), "next_ref_action": rng.uniform(-1, 1, ACT), "phi": 0.0, "next_phi": 0.0})
    return buffer


def test_agent_acts_exactly_as_the_reference_until_its_actor_trains():
    agent = _agent()
    rng = np.random.default_rng(0)
    obs, ref = rng.normal(size=(5, OBS)).astype(np.float32), rng.uniform(-1, 1, (5, ACT)).astype(np.float32)
    action, used = agent.act(obs, ref, explore=False)
    np.testing.assert_array_equal(action, ref)
    assert not used.any()
    buffer = _buffer()
    for _ in range(10):  # critic-only updates (warm-up) keep it the reference
        agent.update(mixed_batch(buffer, None, 64, rng, 0.5, "cpu"), train_actor=False)
    np.testing.assert_array_equal(agent.act(obs, ref, explore=False)[0], ref)
    for _ in range(4):
        agent.update(mixed_batch(buffer, None, 64, rng, 0.5, "cpu"), train_actor=True)
    action, used = agent.act(obs, ref, explore=False)
    q = agent.critics(agent.normaliser(torch.as_tensor(obs)), torch.as_tensor(action))
    q_ref = agent.critics(agent.normaliser(torch.as_tensor(obs)), torch.as_tensor(ref))
    replaced = ~np.isclose(action, ref).all(1)
    assert (q.min(0).values[replaced] > q_ref.max(0).values[replaced]).all()  # only where every critic prefers it


def test_actor_gradient_does_not_depend_on_the_rewards_scale():
    grads = []
    for scale in (1.0, 100.0):
        torch.manual_seed(0)
        agent = _agent(bc_weight=1.0)
        agent.critics.load_state_dict(_agent().critics.state_dict())
        rng = np.random.default_rng(1)
        with torch.no_grad():  # critics of a reward `scale` times larger
            agent.critics.out.weight.mul_(scale)
            agent.critics.out.bias.mul_(scale)
        agent.target_scale = scale
        obs = agent.normaliser(torch.as_tensor(rng.normal(size=(32, OBS)), dtype=torch.float32))
        ref = torch.as_tensor(rng.uniform(-1, 1, (32, ACT)), dtype=torch.float32)
        agent.actor_opt.zero_grad()
        action = agent.actor(obs)
        loss = -agent.critics(obs, action).mean(0).mean() / agent.target_scale + ((action - ref) ** 2).sum(-1).mean()
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in agent.actor.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_bad_agent_and_run_settings_are_refused(tmp_path):
    for bad in ({"critics": 1}, {"critics": 50}, {"target_subset": 9}, {"n_step": 0}, {"critic_potential": "x"}):
        with pytest.raises(HeadwayError):
            AgentConfig(**bad)
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text("{}")
    for bad in ({"utd": 0}, {"utd": 100}, {"reward": "magic"}, {"reward": "prm"}, {"reward": "sparse", "shaping": "pbrs"}, {"demo_ratio": 1.0}):
        with pytest.raises(HeadwayError):
            OnlineRLConfig(init=policy, out=tmp_path / "run", **bad)
    with pytest.raises(HeadwayError, match="--init"):
        OnlineRLConfig(out=tmp_path / "run")


def test_bootstrap_intervals_cover_the_mean_and_shrink_with_more_episodes():
    rng = np.random.default_rng(0)
    few = (rng.random((2, 3, 5)) < 0.5).astype(float)
    many = (rng.random((5, 3, 40)) < 0.5).astype(float)
    a, b = point_intervals(few, 1000), point_intervals(many, 1000)
    for result, data in ((a, few), (b, many)):
        for m, lo, hi in zip(result["mean"], result["low"], result["high"]):
            assert lo <= m <= hi
    assert np.mean(np.subtract(b["high"], b["low"])) < np.mean(np.subtract(a["high"], a["low"]))
    sure = np.ones((3, 4, 20))
    sure[:, 0] = 0
    result = steps_to_threshold([0, 100, 200, 300], sure, 0.9, 500)
    assert result == {"steps": 100, "low": 100, "high": 100, "share_reaching": 1.0}
    never = np.zeros((2, 2, 10))
    assert steps_to_threshold([0, 100], never, 0.9, 200)["steps"] is None
    assert worst_drop([0.5, 0.6, 0.3, 0.7]) == pytest.approx(0.2)
    with pytest.raises(HeadwayError):
        point_intervals(np.zeros((2, 3)))


def test_with_one_episode_per_seed_the_intervals_are_rliables_stratified_bootstrap():
    from rliable import library as rly, metrics

    rng = np.random.default_rng(2)
    per_seed = rng.random((30, 1))  # a success rate per training seed, one episode standing for it
    ours = point_intervals(per_seed[:, :, None], 4000)
    np.random.seed(0)
    point, interval = rly.get_interval_estimates({"arm": per_seed}, lambda x: np.array([metrics.aggregate_mean(x)]), reps=4000)
    assert ours["mean"][0] == pytest.approx(point["arm"][0])
    assert ours["low"][0] == pytest.approx(interval["arm"][0, 0], abs=0.02)
    assert ours["high"][0] == pytest.approx(interval["arm"][1, 0], abs=0.02)


def test_paired_difference_keeps_the_pairing_and_averages_the_points_after_the_start():
    rng = np.random.default_rng(1)
    base = (rng.random((6, 4, 20)) < 0.5).astype(float)
    same = paired_difference(base, base, 500)
    assert same["after_start"] == 0.0 and same["after_start_low"] == 0.0 and same["after_start_high"] == 0.0  # paired: no spread
    better = base.copy()
    better[:, 1:, :10] = 1.0  # the same start, more successes at every later point
    result = paired_difference(better, base, 500)
    assert result["mean"][0] == 0.0 and result["low"][0] == result["high"][0] == 0.0
    expected = (better - base)[:, 1:].mean()
    assert result["after_start"] == pytest.approx(expected)
    assert 0.0 < result["after_start_low"] <= expected <= result["after_start_high"]
    swapped = paired_difference(base, better, 500)
    assert swapped["after_start"] == pytest.approx(-expected) and swapped["after_start_high"] < 0.0
    with pytest.raises(HeadwayError, match="same"):
        paired_difference(base, base[:, :3], 100)


def test_training_seeds_beyond_eight_skip_the_held_out_block():
    from headway.policy.evaluate import DEFAULT_EVAL_SEED, training_episode_seed

    assert training_episode_seed(3, 7) == 300_007  # runs 0-8 keep the seeds they always had
    assert training_episode_seed(8, 100_003) == 800_003
    held_out = range(DEFAULT_EVAL_SEED, DEFAULT_EVAL_SEED + 100_000)
    used = {training_episode_seed(run, index) for run in range(0, 40) for index in (0, 1, 99_999)}
    assert not used & set(held_out)
    assert training_episode_seed(9, 0) == 1_000_000 and training_episode_seed(10, 0) == 1_100_000
    with pytest.raises(HeadwayError, match="training seed"):
        training_episode_seed(-1, 0)


def test_vectorised_rollouts_equal_single_env_rollouts_per_seed():
    from headway.policy.vec_env import OracleProgress, VecEnv, VecEnvSpec, make_env

    spec = VecEnvSpec("lift", horizon=12)
    seeds = [11, 12]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (12, 2, 7)).astype(np.float32)
    with VecEnv(spec, 2, processes=True) as env:
        vec = [np.concatenate([o["state"], o["object"]]) for o, _ in env.reset([0, 1], seeds)]
        vec_rows = [vec]
        for t in range(12):
            vec_rows.append([np.concatenate([r[0]["state"], r[0]["object"], [r[4]["oracle_potential"]]]) for r in env.step(actions[t])])
    for i, seed in enumerate(seeds):
        single = make_env(spec)
        oracle = OracleProgress(single)
        o, _ = single.reset(seed=seed)
        oracle()  # the vectorised env scores the first frame too (it fixes the stage's start distance)
        np.testing.assert_array_equal(np.concatenate([o["state"], o["object"]]), vec_rows[0][i])
        for t in range(12):
            o, *_ = single.step(actions[t, i])
            np.testing.assert_allclose(np.concatenate([o["state"], o["object"], [oracle()]]), vec_rows[t + 1][i], rtol=0, atol=1e-6)
        single.close()


# -- runs with a real (tiny) headway policy ------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_bc(tiny_dataset, tmp_path_factory) -> Path:
    from headway.policy.bc import BCConfig, train_bc

    out = tmp_path_factory.mktemp("bc") / "policy"
    torch.manual_seed(0)
    train_bc(BCConfig(dataset=tiny_dataset, out=out, steps=30, hidden=32, layers=2), progress=False)
    return out


def _run_config(out: Path, init: Path, demos: Path, **overrides) -> OnlineRLConfig:
    settings = dict(
        task="lift", method="ibrl", init=init, demos=demos, out=out, steps=40, eval_every=20, eval_episodes=2, horizon=10, batch_size=16, warmup_steps=20,
        actor_pretrain=5, num_envs=2, processes=False, progress=False, agent=AgentConfig(hidden=(16, 16), critics=2),
    )
    settings.update(overrides)
    return OnlineRLConfig(**settings)


def test_first_evaluation_equals_the_init_policys_own_success_on_the_same_seeds(tiny_bc, tiny_dataset, tmp_path):
    from headway.policy.evaluate import DEFAULT_EVAL_SEED, evaluate_policy
    from headway.policy.interface import load_policy

    summary = run_online_rl(_run_config(tmp_path / "run", tiny_bc, tiny_dataset, steps=20, eval_every=20, reward="oracle"))
    own = evaluate_policy(load_policy(tiny_bc), "lift", episodes=2, seed=DEFAULT_EVAL_SEED, horizon=10, progress=False)
    assert summary["eval_successes"][0] == [int(r["success"]) for r in own["per_episode"]]
    assert summary["start_success"] == own["success_rate"]
    rows = (tmp_path / "run" / "eval.csv").read_text().splitlines()
    assert len(rows) == 3 and (tmp_path / "run" / "summary.json").exists()


def test_init_policy_for_another_task_is_refused(tiny_bc, tiny_dataset, tmp_path):
    with pytest.raises(HeadwayError, match="task"):
        run_online_rl(_run_config(tmp_path / "run", tiny_bc, tiny_dataset, task="stack"))


def test_nan_from_the_reward_stops_naming_the_step_and_keeps_the_last_checkpoint(tiny_bc, tiny_dataset, tmp_path, monkeypatch):
    from headway.policy import rl_runner
    from headway.policy.reward_sources import RewardNaNError

    calls = {"n": 0}
    original = rl_runner.Rewards.potentials

    def poisoned(self, indices, observations, infos, reset):
        calls["n"] += 1
        values = original(self, indices, observations, infos, reset)
        return values * np.nan if calls["n"] > 15 else values

    monkeypatch.setattr(rl_runner.Rewards, "potentials", poisoned)
    with pytest.raises(RewardNaNError, match=r"env step \d+.*last good checkpoint \(step \d+\)") as caught:
        run_online_rl(_run_config(tmp_path / "run", tiny_bc, tiny_dataset, reward="oracle"))
    import re

    nan_step = int(re.search(r"env step (\d+)", str(caught.value)).group(1))
    kept = int(re.search(r"checkpoint \(step (\d+)\)", str(caught.value)).group(1))
    assert kept < nan_step and json.loads((tmp_path / "run" / "latest.json").read_text())["step"] == kept


def test_kill_9_then_resume_finishes_the_run(tiny_bc, tiny_dataset, tmp_path, script_run):
    out = tmp_path / "run"
    script = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from pathlib import Path\n"
        "from headway.policy.rl_algo import AgentConfig\n"
        "from headway.policy.rl_runner import OnlineRLConfig, run_online_rl\n"
        f"c = OnlineRLConfig(task='lift', method='ibrl', init=Path({str(tiny_bc)!r}), demos=Path({str(tiny_dataset)!r}), out=Path({str(out)!r}), steps=400, eval_every=20,"
        " eval_episodes=2, horizon=10, batch_size=16, warmup_steps=20, actor_pretrain=5, num_envs=2, processes=False, progress=False,"
        " agent=AgentConfig(hidden=(16, 16), critics=2))\n"
        "print(run_online_rl(c, resume=len(sys.argv) > 1)['steps'])\n"
    )
    killed_at = script_run.kill_at(script, out, 40)
    assert 40 <= killed_at < 400
    done = script_run.resume(script)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "400"
    steps = [int(line.split(",")[0]) for line in (out / "eval.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == 400


def test_a_reward_model_whose_views_the_simulator_cannot_render_is_refused(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from headway.policy import rl_runner

    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text("{}")
    monkeypatch.setattr(rl_runner, "load_reward_model", lambda path, device=None: SimpleNamespace(views=("agentview", "ceiling_cam"), image_size=84))
    config = OnlineRLConfig(init=policy, out=tmp_path / "run", reward=f"prm:{tmp_path}")
    with pytest.raises(HeadwayError, match="ceiling_cam.*cannot render"):
        rl_runner.Rewards(config, 2)
