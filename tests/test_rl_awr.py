"""Advantage-weighted fine-tuning of a BC policy's own network (headway/policy/rl_awr.py, method awr of the runner)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from headway.errors import HeadwayError
from headway.policy.rl_awr import AWRConfig, AWRLearner, Episode, awr_weights, gae
from headway.policy.rl_runner import OnlineRLConfig, run_online_rl


# gradient steps on the current network after every episode (the mode before re-cloning became the default)
GRADIENT = dict(refit_every=0, successes_only=False, demo_ratio=0.0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_gae_bootstraps_through_truncation_not_termination():
    rewards = np.array([0.0, 0.0, 1.0])
    values = np.array([0.5, 0.5, 0.5, 2.0])
    gamma, lam = 0.9, 1.0
    terminated = gae(rewards, values, True, gamma, lam)
    truncated = gae(rewards, values, False, gamma, lam)
    assert terminated[-1] == pytest.approx(1.0 - 0.5)  # no value after a terminal step
    assert truncated[-1] == pytest.approx(1.0 + 0.9 * 2.0 - 0.5)
    assert terminated[0] == pytest.approx(0.81 * 1.0 - 0.5)  # lambda = 1: Monte Carlo return minus V


def test_the_value_sees_the_potential_only_when_asked():
    from headway.policy.rl_awr import ValueNet

    torch.manual_seed(0)
    obs, low, high = torch.randn(8, 5), torch.zeros(8), torch.ones(8)
    seeing, blind = ValueNet(5, 16), ValueNet(5, 16, sees_potential=False)
    assert not torch.allclose(seeing(obs, low), seeing(obs, high))
    assert torch.equal(blind(obs, low), blind(obs, high))


def test_awr_weights_do_not_depend_on_the_rewards_scale():
    advantages = np.random.default_rng(0).normal(size=100)
    weights = awr_weights(advantages, beta=1.0, max_weight=20.0)
    np.testing.assert_allclose(awr_weights(advantages * 37.0, 1.0, 20.0), weights)
    assert weights.max() <= 20.0 and weights[np.argmax(advantages)] == weights.max()
    np.testing.assert_array_equal(awr_weights(np.zeros(5), 1.0, 20.0), np.ones(5))  # no signal: plain imitation
    np.testing.assert_array_equal(awr_weights(np.array([-1.0, 0.0, 0.5]), 1.0, 20.0, "positive"), [0.0, 0.0, 1.0])


def test_an_update_moves_the_policy_toward_high_advantage_actions():
    from headway.policy.bc import BCNet

    torch.manual_seed(0)
    net = BCNet(state_dim=2, action_dim=1, chunk=1, hidden=32, layers=2)
    learner = AWRLearner(net, obs_dim=2, config=AWRConfig(batch_size=64, policy_lr=3e-3, lam=0.0, gamma=0.5, **GRADIENT), demos=None)
    rng = np.random.default_rng(0)
    for _ in range(20):  # one-step episodes from the same state: action +0.5 is rewarded, -0.5 is not
        a = rng.choice([-0.5, 0.5])
        learner.add_episode(Episode(obs=np.zeros((2, 2), np.float32), phi=np.zeros(2),
                                    actions=np.array([[a]], np.float32), rewards=np.array([float(a > 0)]), terminated=True))
    learner.update(300)
    with torch.no_grad():
        action = float(net.denormalise_actions(net(torch.zeros(1, 2)))[0, 0, 0])
    assert action > 0.25  # plain imitation of both would give about 0


def test_with_positive_weights_and_nothing_better_than_expected_the_policy_stays():
    from headway.policy.bc import BCNet

    torch.manual_seed(0)
    net = BCNet(state_dim=2, action_dim=1, chunk=2, hidden=16, layers=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    learner = AWRLearner(net, obs_dim=2, config=AWRConfig(batch_size=8, weighting="positive", value_lr=1e-12, lam=1.0, **GRADIENT), demos=None)
    with torch.no_grad():  # V = 1 everywhere and every return is 0: every advantage is negative
        learner.value.net[-1].weight.zero_()
        learner.value.net[-1].bias.fill_(1.0)
    learner.add_episode(Episode(obs=np.ones((6, 2), np.float32), phi=np.zeros(6),
                                actions=np.full((5, 1), 0.7, np.float32), rewards=np.zeros(5), terminated=True))
    assert learner.update(20)["mean_weight"] == 0.0
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_the_potential_as_baseline_imitates_what_made_progress():
    """baseline="potential": no value function; under pbrs the advantage telescopes to
    gamma^(T-t) Phi_T - Phi_t (+ the discounted task reward), so a failed episode's steps are imitated
    up to where progress was lost, and none after."""
    from headway.policy.bc import BCNet

    phi = np.array([0.0, 0.2, 0.5, 0.4, 0.3, 0.3])  # progress rises, then falls back
    gamma = 0.999
    shaped = gamma * phi[1:] - phi[:-1]
    learner = AWRLearner(BCNet(state_dim=1, action_dim=1, chunk=1, hidden=8, layers=1), obs_dim=1,
                         config=AWRConfig(baseline="potential", gamma=gamma, lam=0.5, margin=0.02, **GRADIENT), demos=None)
    learner.add_episode(Episode(obs=np.zeros((6, 1), np.float32), phi=phi, actions=np.zeros((5, 1), np.float32), rewards=shaped, terminated=False))
    data = learner._flat()
    advantages, _ = learner._advantages(data["all_obs"], data["all_phi"])
    expected = np.array([gamma ** (5 - t) * phi[5] - phi[t] for t in range(5)])
    np.testing.assert_allclose(advantages, expected, atol=1e-9)  # lambda is ignored: Monte Carlo
    np.testing.assert_array_equal(awr_weights(advantages, 1.0, 20.0, "positive", 0.02), [1.0, 1.0, 0.0, 0.0, 0.0])


def _demo_samples(state: float, action: float, n: int = 32):
    from types import SimpleNamespace

    return SimpleNamespace(state=np.full((n, 1), state, np.float32), actions=np.full((n, 1, 1), action, np.float32),
                           action_mask=np.ones((n, 1), bool))


def test_refit_waits_for_its_episodes_then_clones_demos_and_rewarded_steps_afresh():
    from headway.policy.bc import BCNet

    torch.manual_seed(0)
    net = BCNet(state_dim=1, action_dim=1, chunk=1, hidden=32, layers=2)
    config = AWRConfig(baseline="potential", refit_every=2, refit_steps=300, batch_size=64, successes_only=False, demo_ratio=0.0)
    learner = AWRLearner(net, obs_dim=1, config=config, demos=_demo_samples(state=-1.0, action=-0.5))
    before = {k: v.clone() for k, v in net.state_dict().items()}

    def episode(action: float, success: bool) -> Episode:  # one step from state +1 under a sparse reward
        return Episode(obs=np.ones((2, 1), np.float32), phi=np.zeros(2), actions=np.array([[action]], np.float32),
                       rewards=np.array([float(success)]), terminated=success)

    learner.add_episode(episode(0.8, True))
    assert learner.update(50)["policy_steps"] == 0  # one episode of two: nothing yet
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key])
    learner.add_episode(episode(-0.9, False))  # failed: weight 0, not imitated
    assert learner.update(50)["policy_steps"] == 300
    with torch.no_grad():
        actions = net.denormalise_actions(net(torch.tensor([[-1.0], [1.0]])))[:, 0, 0]
    assert float(actions[0]) == pytest.approx(-0.5, abs=0.1)  # the demonstrations are kept
    assert float(actions[1]) == pytest.approx(0.8, abs=0.15)  # the successful step is learned, the failed one is not


def test_successes_only_refits_only_when_a_new_success_arrives_and_imitates_only_successes():
    from headway.policy.bc import BCNet

    torch.manual_seed(0)
    net = BCNet(state_dim=1, action_dim=1, chunk=1, hidden=32, layers=2)
    config = AWRConfig(baseline="potential", refit_every=1, refit_steps=300, batch_size=64, successes_only=True)
    learner = AWRLearner(net, obs_dim=1, config=config, demos=_demo_samples(state=-1.0, action=-0.5))

    def episode(action: float, success: bool, progress: float) -> Episode:  # progress made although it failed
        return Episode(obs=np.ones((2, 1), np.float32), phi=np.array([0.0, progress]), actions=np.array([[action]], np.float32),
                       rewards=np.array([float(success) + progress]), terminated=success, success=success)

    learner.add_episode(episode(-0.9, False, 0.5))  # positive advantage, but no success: no re-cloning at all
    assert learner.update(50)["policy_steps"] == 0
    learner.add_episode(episode(0.8, True, 0.5))
    assert learner.update(50)["policy_steps"] == 300
    learner.add_episode(episode(-0.9, False, 0.5))
    assert learner.update(50)["policy_steps"] == 0  # nothing new to imitate: the policy is not redrawn
    with torch.no_grad():
        actions = net.denormalise_actions(net(torch.tensor([[-1.0], [1.0]])))[:, 0, 0]
    assert float(actions[1]) == pytest.approx(0.8, abs=0.15)  # the success is learned, the progressing failures are not
    patient = AWRLearner(BCNet(state_dim=1, action_dim=1, chunk=1, hidden=32, layers=2), obs_dim=1,
                         config=AWRConfig(baseline="potential", refit_every=1, refit_steps=10, batch_size=64, successes_only=True, refit_patience=2),
                         demos=_demo_samples(state=-1.0, action=-0.5))
    patient.add_episode(episode(0.8, True, 0.5))
    assert patient.update(5)["policy_steps"] == 10
    outcomes = []
    for _ in range(4):  # failures only: a new draw after every second one
        patient.add_episode(episode(-0.9, False, 0.0))
        outcomes.append(patient.update(5)["policy_steps"])
    assert outcomes == [0, 10, 0, 10]
    state = learner.state_dict()
    restored = AWRLearner(BCNet(state_dim=1, action_dim=1, chunk=1, hidden=32, layers=2), obs_dim=1, config=config, demos=_demo_samples(state=-1.0, action=-0.5))
    restored.load_state_dict(state)
    restored.load_episodes(learner.episodes_state())
    assert restored.refit_mark == (2, 1) and [e.success for e in restored.episodes] == [False, True, False]


def test_failure_peak_imitates_a_failure_up_to_a_high_potential_peak_and_not_after():
    from headway.policy.bc import BCNet

    torch.manual_seed(0)
    net = BCNet(state_dim=1, action_dim=1, chunk=1, hidden=32, layers=2)
    config = AWRConfig(baseline="potential", refit_every=1, refit_steps=300, batch_size=64, successes_only=True, failure_peak=0.6)
    learner = AWRLearner(net, obs_dim=1, config=config, demos=_demo_samples(state=-1.0, action=-0.5))

    def failure(peak: float) -> Episode:  # state 1 -> 2 makes progress up to `peak`, state 2 -> 3 loses it
        return Episode(obs=np.array([[1.0], [2.0], [3.0]], np.float32), phi=np.array([0.0, peak, 0.1]),
                       actions=np.array([[0.8], [-0.9]], np.float32), rewards=np.array([peak, 0.1 - peak]), terminated=False)

    learner.add_episode(failure(0.4))  # a low peak (an approach): nothing to imitate, no re-cloning
    assert learner.update(50)["policy_steps"] == 0
    learner.add_episode(failure(0.7))
    assert learner.update(50)["policy_steps"] == 300
    with torch.no_grad():
        actions = net.denormalise_actions(net(torch.tensor([[-1.0], [1.0], [2.0]])))[:, 0, 0]
    assert float(actions[0]) == pytest.approx(-0.5, abs=0.1)
    assert float(actions[1]) == pytest.approx(0.8, abs=0.15)  # the step up to the peak is learned
    assert float(actions[2]) > -0.5  # the step after it, which lost the progress, is not
    with pytest.raises(HeadwayError, match="failure peak"):
        AWRConfig(failure_peak=0.5, successes_only=False)


def test_a_training_episode_stalls_when_its_potential_stops_rising():
    from headway.policy.rl_runner import stalled

    rising = list(np.linspace(0.0, 1.0, 60))
    assert not stalled(rising, 20, 0.03)
    flat = [0.0] * 10 + [0.5] * 20  # a jump, then 19 steps without progress
    assert not stalled(flat, 20, 0.03)  # the jump is still inside the window
    assert stalled(flat + [0.5], 20, 0.03)
    assert stalled(flat + [0.52], 20, 0.03)  # 0.02 above the best so far is not progress
    assert not stalled(flat + [0.54], 20, 0.03)
    assert not stalled(flat + [0.5], 0, 0.03)  # window 0: off
    assert not stalled([0.5] * 10, 20, 0.03)  # shorter than the window


def test_correlated_exploration_noise_keeps_its_std_and_lingers():
    from headway.policy.rl_runner import ar1_noise

    draws = np.random.default_rng(0).normal(0.0, 0.05, size=(20_000, 2))
    first = draws[0]
    assert ar1_noise(np.ones(2), first, 0.0) is first  # white noise is the draw itself, as before the option
    for rho in (0.5, 0.9):
        noise, series = np.zeros(2), []
        for draw in draws:
            noise = ar1_noise(noise, draw, rho)
            series.append(noise[0])
        series = np.asarray(series[100:])
        assert abs(series.std() - 0.05) < 0.005  # the same per-step std as the white noise
        assert abs(np.corrcoef(series[:-1], series[1:])[0, 1] - rho) < 0.03
    with pytest.raises(HeadwayError, match="noise correlation"):
        AWRConfig(noise_correlation=1.0)


def test_early_reset_needs_a_potential(tiny_bc, tiny_dataset):
    with pytest.raises(HeadwayError, match="early reset"):
        _config(Path("unused"), tiny_bc, tiny_dataset, reward="sparse", early_reset=20)
    assert _config(Path("unused"), tiny_bc, tiny_dataset, reward="oracle", early_reset=20).early_reset == 20


def test_refit_without_demonstrations_is_refused():
    from headway.policy.bc import BCNet

    with pytest.raises(HeadwayError, match="demonstrations"):
        AWRLearner(BCNet(state_dim=1, action_dim=1, chunk=1, hidden=8, layers=1), obs_dim=1, config=AWRConfig(refit_every=2), demos=None)


# -- runs with a real (tiny) headway policy ------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_bc(tiny_dataset, tmp_path_factory) -> Path:
    from headway.policy.bc import BCConfig, train_bc

    out = tmp_path_factory.mktemp("bc") / "policy"
    torch.manual_seed(0)
    train_bc(BCConfig(dataset=tiny_dataset, out=out, steps=30, hidden=32, layers=2, episodes=(0,)), progress=False)
    return out


def _config(out: Path, init: Path, demos: Path, **overrides) -> OnlineRLConfig:
    settings = dict(task="lift", method="awr", init=init, demos=demos, out=out, steps=40, eval_every=20, eval_episodes=2, horizon=10,
                    num_envs=2, processes=False, progress=False, awr=AWRConfig(batch_size=16, updates_per_episode=3, hidden=16, **GRADIENT))
    settings.update(overrides)
    return OnlineRLConfig(**settings)


def test_awr_starts_as_the_init_policy_learns_and_writes_a_loadable_policy(tiny_bc, tiny_dataset, tmp_path):
    from headway.policy.evaluate import DEFAULT_EVAL_SEED, evaluate_policy
    from headway.policy.interface import load_policy

    summary = run_online_rl(_config(tmp_path / "run", tiny_bc, tiny_dataset, reward="oracle", awr=AWRConfig(batch_size=16, updates_per_episode=3, hidden=16, weighting="exp", **GRADIENT)))
    own = evaluate_policy(load_policy(tiny_bc), "lift", episodes=2, seed=DEFAULT_EVAL_SEED, horizon=10, progress=False)
    assert summary["eval_successes"][0] == [int(r["success"]) for r in own["per_episode"]]
    assert summary["method"] == "awr" and summary["eval_steps"] == [0, 20, 40]
    tuned = load_policy(tmp_path / "run" / "policy")
    before = load_policy(tiny_bc)
    observation = {"state": np.zeros(tuned.state_dim, np.float32), "object": np.zeros(tuned.object_dim, np.float32)}
    assert not np.allclose(tuned.predict_chunk(observation), before.predict_chunk(observation))  # it learned
    assert tuned.meta["finetuned"]["method"] == "awr"
    rows = (tmp_path / "run" / "train.csv").read_text().splitlines()
    assert len(rows) >= 5  # two envs x horizon 10 over 40 steps: four or more finished episodes
    successes = [float(row.split(",")[rows[0].split(",").index("success")]) > 0 for row in rows[1:]]
    assert summary["training_episodes"] == len(rows) - 1 and summary["training_successes"] == sum(successes)


def test_robosuite_dense_with_pbrs_is_a_potential_over_sparse_success(tiny_bc, tiny_dataset):
    """The fair dense baseline: robosuite's staged reward of each state is the potential (the reset
    state's included) and the task reward is success, so shaping cannot make hovering worth more."""
    from headway.policy.rl_runner import Rewards
    from headway.policy.vec_env import VecEnv, VecEnvSpec

    rewards = Rewards(_config(Path("unused"), tiny_bc, tiny_dataset, reward="robosuite-dense", shaping="pbrs"), 1)
    env = VecEnv(VecEnvSpec("lift", (), 84, 10), 1, processes=False)
    try:
        [(_, reset_info)] = env.reset([0], [5])
        [(_, _, terminated, _, info)] = env.step(np.zeros((1, 7), np.float32))
    finally:
        env.close()
    phi0, phi1 = rewards.potentials([0], [None], [reset_info], reset=True)[0], rewards.potentials([0], [None], [info], reset=False)[0]
    assert 0.0 < phi0 < 1.0 and phi1 == info["robosuite_dense_reward"]
    assert rewards.has_potential and rewards.task_reward(0.0, terminated, info) == 0.0  # not the dense value
    assert rewards.shaped(0.0, phi0, phi1, False) == pytest.approx(rewards.gamma * phi1 - phi0)
    plain = Rewards(_config(Path("unused"), tiny_bc, tiny_dataset, reward="robosuite-dense"), 1)
    assert not plain.has_potential and plain.task_reward(0.0, False, info) == info["robosuite_dense_reward"]


def test_awr_with_refits_runs_from_the_inits_own_demonstrations(tiny_bc, tiny_dataset, tmp_path):
    from headway.policy.interface import load_policy

    awr = AWRConfig(batch_size=16, baseline="potential", margin=0.0, refit_every=2, refit_steps=5, hidden=16, successes_only=False)
    summary = run_online_rl(_config(tmp_path / "run", tiny_bc, tiny_dataset, reward="oracle", awr=awr))
    assert summary["eval_steps"] == [0, 20, 40] and summary["last_policy_steps"] == 5  # a re-cloning happened
    observation = {"state": np.zeros(load_policy(tiny_bc).state_dim, np.float32), "object": np.zeros(load_policy(tiny_bc).object_dim, np.float32)}
    assert not np.allclose(load_policy(tmp_path / "run" / "policy").predict_chunk(observation), load_policy(tiny_bc).predict_chunk(observation))


def test_a_failed_start_is_tried_again_before_a_new_one_is_drawn(tiny_bc, tiny_dataset, tmp_path):
    import csv

    from headway.policy.evaluate import training_episode_seed

    awr = AWRConfig(batch_size=16, updates_per_episode=3, hidden=16, retries=2, **GRADIENT)
    run_online_rl(_config(tmp_path / "run", tiny_bc, tiny_dataset, steps=120, eval_every=120, awr=awr))
    rows = list(csv.DictReader((tmp_path / "run" / "train.csv").open()))
    assert len(rows) == 12 and not any(int(r["success"]) for r in rows)  # 120 steps over 2 envs at horizon 10, all failed
    seeds = [int(r["seed"]) for r in rows]
    assert sorted(set(seeds)) == [training_episode_seed(0, k) for k in range(4)]  # four starts, each tried three times
    assert all(seeds.count(s) == 3 for s in set(seeds))
    with pytest.raises(HeadwayError, match="retries"):
        AWRConfig(retries=-1)


def test_a_resumed_run_keeps_trying_the_starts_it_was_retrying(tiny_bc, tiny_dataset, tmp_path):
    """Stopped after each start's second try, the run resumes with the tries it had left, so its starts are
    the uninterrupted run's: each slot's first start tried four times, then the next ones."""
    import csv

    from headway.policy.evaluate import training_episode_seed

    awr = AWRConfig(batch_size=16, updates_per_episode=3, hidden=16, retries=3, **GRADIENT)

    def seeds(out: Path) -> list[int]:
        return [int(r["seed"]) for r in csv.DictReader((out / "train.csv").open())]

    run_online_rl(_config(tmp_path / "whole", tiny_bc, tiny_dataset, steps=120, eval_every=40, awr=awr))
    run_online_rl(_config(tmp_path / "split", tiny_bc, tiny_dataset, steps=40, eval_every=40, awr=awr))
    assert len(seeds(tmp_path / "split")) == 4
    run_online_rl(_config(tmp_path / "split", tiny_bc, tiny_dataset, steps=120, eval_every=40, awr=awr), resume=True)
    whole = seeds(tmp_path / "whole")
    first, second, third, fourth = (training_episode_seed(0, k) for k in range(4))
    assert whole == [first, second] * 4 + [third, fourth] * 2
    assert seeds(tmp_path / "split") == whole


def test_awr_anchors_on_the_episodes_the_init_was_cloned_from(tiny_bc, tiny_dataset):
    from headway.policy.interface import load_policy
    from headway.policy.rl_runner import awr_anchor

    policy = load_policy(tiny_bc)
    assert policy.meta["train"]["episode_ids"] == [0]
    anchor = awr_anchor(policy, _config(Path("unused"), tiny_bc, tiny_dataset))
    assert set(anchor.episode_index.tolist()) == {0}


def test_awr_refuses_a_policy_it_cannot_fine_tune(tiny_dataset, tmp_path):
    from headway.policy.scripted import ScriptedPolicy

    scripted = tmp_path / "scripted"
    ScriptedPolicy("lift").save(scripted)
    with pytest.raises(HeadwayError, match="not a `headway policy bc` checkpoint.*--method ibrl"):
        run_online_rl(_config(tmp_path / "run", scripted, tiny_dataset))
    with pytest.raises(HeadwayError, match="unknown RL method"):
        _config(tmp_path / "run", scripted, tiny_dataset, method="ppo")
    with pytest.raises(HeadwayError, match="exploration noise"):
        AWRConfig(noise=-0.1)


def test_awr_kill_9_then_resume_finishes_the_run(tiny_bc, tiny_dataset, tmp_path, script_run):
    out = tmp_path / "run"
    script = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from pathlib import Path\n"
        "from headway.policy.rl_awr import AWRConfig\n"
        "from headway.policy.rl_runner import OnlineRLConfig, run_online_rl\n"
        f"c = OnlineRLConfig(task='lift', method='awr', init=Path({str(tiny_bc)!r}), demos=Path({str(tiny_dataset)!r}), out=Path({str(out)!r}), steps=400,"
        " eval_every=20, eval_episodes=2, horizon=10, num_envs=2, processes=False, progress=False,"
        " awr=AWRConfig(batch_size=16, updates_per_episode=3, hidden=16))\n"
        "print(run_online_rl(c, resume=len(sys.argv) > 1)['steps'])\n"
    )
    killed_at = script_run.kill_at(script, out, 40)
    assert 40 <= killed_at < 400
    episodes_before = len(np.load(out / json.loads((out / "latest.json").read_text())["checkpoint"] / "replay.npz")["lengths"])
    assert episodes_before >= 2
    done = script_run.resume(script)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "400"
    steps = [int(line.split(",")[0]) for line in (out / "eval.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == 400
    assert (out / "policy" / "config.json").exists()
