"""Online RL: SAC updates, terminal handling, reward sources and shaping, the training loop, resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pytest
import torch

from headway.errors import HeadwayError
from headway.policy.interface import POLICY_FORMATS, load_policy
from headway.policy.replay import DemoEpisode, ReplayBuffer, demo_transitions, fill_demo_buffer, mixed_batch, read_demo_episodes
from headway.policy.reward_sources import (
    REWARD_SOURCES,
    ModelSource,
    OnlineReward,
    RewardNaNError,
    RewardSource,
    check_shaping,
    make_reward_source,
)
from headway.policy.rl_train import RLConfig, train_rl
from headway.policy.sac import SACAgent, SACConfig, SACPolicy, SACPolicyConfig, select_actions, td_targets
from headway.reward.shaping import potential_based_rewards
from headway.reward.stage_model import StageModelConfig, StageRewardNet
from headway.reward.stage_reward import StageRewardModel
from headway.sim.env import EnvConfig, HeadwayEnv
from headway.sim.task import get_task

TINY = SACConfig(hidden=(32, 32))
VIEWS = ("agentview", "robot0_eye_in_hand")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small networks run fastest on one thread, and far faster than two on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(n: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(n, 5, generator=g),
        "action": torch.rand(n, 2, generator=g) * 2 - 1,
        "reward": torch.rand(n, generator=g),
        "next_obs": torch.randn(n, 5, generator=g),
        "terminated": (torch.rand(n, generator=g) < 0.2).float(),
    }


def test_sac_update_reduces_critic_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    agent = SACAgent(5, 2, SACConfig(hidden=(32, 32), critic_lr=2e-3))
    batch = _batch()
    first = agent.update(batch)["critic_loss"]
    for _ in range(100):
        last = agent.update(batch)
    assert last["critic_loss"] < 0.5 * first
    assert np.isfinite(last["actor_loss"]) and last["alpha"] > 0


def test_targets_bootstrap_through_truncation_only():
    reward = torch.tensor([1.0, 1.0])
    next_q = torch.tensor([[5.0, 5.0], [3.0, 3.0]])  # (critics, batch): min is 3
    log_prob = torch.tensor([0.0, 0.0])
    terminated = torch.tensor([1.0, 0.0])  # a true terminal, then a time-limit truncation (stored as not terminal)
    target = td_targets(reward, terminated, next_q, log_prob, alpha=0.1, gamma=0.9)
    assert target[0].item() == pytest.approx(1.0)
    assert target[1].item() == pytest.approx(1.0 + 0.9 * 3.0)


def test_demonstrations_end_at_their_first_success_and_drop_an_unstored_next_state():
    obs = np.arange(12, dtype=np.float32).reshape(6, 2)
    success = np.array([0, 0, 1, 1, 0, 0], bool)
    won = DemoEpisode(obs, np.zeros((6, 1), np.float32), success, None, "lift", 0)
    frames, terminated = demo_transitions(won)
    assert frames.tolist() == [0, 1, 2] and terminated.tolist() == [False, False, True]
    lost = DemoEpisode(obs, np.zeros((6, 1), np.float32), np.zeros(6, bool), None, "lift", 1)
    frames, terminated = demo_transitions(lost)
    assert frames.tolist() == [0, 1, 2, 3, 4] and not terminated.any()
    buffer = fill_demo_buffer([won, lost], lambda e, f, d: e.success[f].astype(np.float32))
    assert len(buffer) == 8 and buffer.terminated.sum() == 1
    assert buffer.cloneable.tolist() == [True] * 3 + [False] * 5
    np.testing.assert_array_equal(buffer.next_obs[0], obs[1])


def test_batches_draw_half_from_demonstrations():
    online, demos = ReplayBuffer(10, 3, 1), ReplayBuffer(10, 3, 1)
    for i in range(10):
        online.add(np.zeros(3), np.zeros(1), 0.0, np.zeros(3), False)
        demos.add(np.ones(3), np.ones(1), 1.0, np.ones(3), False)
    batch, mask = mixed_batch(online, demos, 32, np.random.default_rng(0))
    assert mask.sum().item() == 16
    assert torch.all(batch["reward"][mask] == 1) and torch.all(batch["reward"][~mask] == 0)
    demos.cloneable = np.arange(10) < 5  # a BC term imitates only transitions of successful episodes
    demos.action[:, 0] = np.arange(10)
    batch, mask = mixed_batch(online, demos, 64, np.random.default_rng(1))
    assert 0 < mask.sum().item() < 32
    assert torch.all(batch["action"][mask, 0] < 5) and torch.all(batch["action"][32:][~mask[32:], 0] >= 5)


# -- reward sources ------------------------------------------------------------------------------------
def test_unknown_reward_sources_and_shapings_list_the_valid_names():
    with pytest.raises(HeadwayError, match="prm:CKPT, robosuite-dense, sparse"):
        make_reward_source("dense", "lift")
    with pytest.raises(HeadwayError, match="valid shapings: delta, kagi, none, pbrs"):
        check_shaping("potential", make_reward_source("sparse", "lift"))
    with pytest.raises(HeadwayError, match="needs a potential from a reward model"):
        check_shaping("pbrs", make_reward_source("sparse", "lift"))
    with pytest.raises(HeadwayError, match="needs a checkpoint"):
        make_reward_source("prm", "lift")
    with pytest.raises(HeadwayError, match="does not exist"):
        make_reward_source("prm:/no/such/model", "lift")
    with pytest.raises(HeadwayError, match="success weight.*has none"):
        make_reward_source("sparse", "lift", success_weight=0.5)
    with pytest.raises(HeadwayError, match="unknown reward source"):
        RLConfig(reward="bogus", steps=1)  # the config checks names before any work
    with pytest.raises(HeadwayError, match="valid shapings"):
        RLConfig(reward="sparse", shaping="bogus", steps=1)


def test_sparse_reward_is_task_success_and_dense_is_robosuites(tiny_dataset):
    sparse = OnlineReward(make_reward_source("sparse", "lift"), "none", 0.99)
    for success in (False, True):
        info = {"success": success, "robosuite_dense_reward": 0.37}
        assert sparse.step(float(success), {}, success, info)[0] == float(success)
    dense = OnlineReward(make_reward_source("robosuite-dense", "lift"), "none", 0.99)
    assert dense.step(0.0, {}, False, {"success": False, "robosuite_dense_reward": 0.37})[0] == pytest.approx(0.37)
    episodes = read_demo_episodes(tiny_dataset)
    for episode in episodes:
        frames, terminated = demo_transitions(episode)
        np.testing.assert_array_equal(sparse.demo_rewards(episode, frames, terminated), episode.success[frames].astype(np.float32))
        np.testing.assert_allclose(dense.demo_rewards(episode, frames, terminated), episode.dense[frames])


@pytest.fixture(scope="module")
def tiny_model() -> StageRewardModel:
    torch.manual_seed(0)
    config = StageModelConfig(
        views=VIEWS, stage_names=("reach", "grasp", "lift"), stage_proportions=(0.5, 0.2, 0.3), image_size=32, dim=32, window=4, ensemble=2
    )
    return StageRewardModel(StageRewardNet(config), device="cpu")


def test_prm_pbrs_rewards_online_match_potential_based_rewards_over_the_episode(tiny_model):
    task = get_task("lift").instruction
    source = ModelSource(tiny_model, task)
    online = OnlineReward(source, "pbrs", gamma=0.9)
    env = HeadwayEnv(EnvConfig("lift", views=source.views, image_size=source.image_size, horizon=10, terminate_on_success=True))
    rng = np.random.default_rng(0)
    try:
        observation, _ = env.reset(seed=3)
        online.reset(observation)
        frames, rewards, task_rewards, done = [observation["images"]], [], [], False
        while not done:
            observation, env_reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 7).astype(np.float32))
            reward, task_reward, _ = online.step(env_reward, observation, terminated, info)
            frames.append(observation["images"])
            rewards.append(reward)
            task_rewards.append(task_reward)
            done = terminated or truncated
    finally:
        env.close()
    assert truncated and len(rewards) == 10
    stacked = {v: np.stack([f[v] for f in frames]) for v in VIEWS}
    phi = tiny_model.score_episode(stacked, task).progress  # Phi of every stored frame, offline
    expected = potential_based_rewards(phi, np.append(task_rewards, 0.0), gamma=0.9, terminated=False)[:-1]
    np.testing.assert_allclose(rewards, expected, atol=1e-5)
    assert not np.allclose(rewards, task_rewards), "the potential shapes the reward"


def test_prm_rewards_of_demonstrations_match_potential_based_rewards(tiny_model, tiny_dataset):
    task = get_task("lift").instruction
    online = OnlineReward(ModelSource(tiny_model, task), "pbrs", gamma=0.95)
    for episode in read_demo_episodes(tiny_dataset, VIEWS):
        frames, terminated = demo_transitions(episode)
        got = online.demo_rewards(episode, frames, terminated)
        phi = tiny_model.score_episode(episode.images, task).progress
        stop = len(frames)
        if terminated.any():
            expected = potential_based_rewards(phi[:stop], episode.success[:stop].astype(float), 0.95, terminated=True)
        else:
            expected = potential_based_rewards(phi, episode.success.astype(float), 0.95, terminated=False)[:stop]
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert any(demo_transitions(e)[1].any() for e in read_demo_episodes(tiny_dataset)), "the expert episode terminates"


def test_demonstration_potentials_are_scored_with_the_state_like_online_ones(tiny_dataset):
    class _Recorder:  # a reward model that remembers the state it was given
        views, image_size = VIEWS, 32

        def stream(self, task):
            return None

        def score_episode(self, images, task, state=None, batch_size=256):
            self.state = state
            return SimpleNamespace(progress=np.zeros(len(state)), success=np.zeros(len(state)))

    model = _Recorder()
    episode = read_demo_episodes(tiny_dataset, VIEWS, 1)[0]
    ModelSource(model, get_task("lift").instruction).demo_potentials(episode)
    np.testing.assert_array_equal(model.state, episode.obs[:, :9])  # observation.state, as `potential` passes it online


# -- the loop ------------------------------------------------------------------------------------------
def _config(out: Path, **overrides) -> RLConfig:
    settings = dict(
        task="lift", reward="sparse", steps=100, out=out, eval_every=50, eval_episodes=1, horizon=20, batch_size=32,
        random_steps=40, sac=TINY, progress=False,
    )
    settings.update(overrides)
    return RLConfig(**settings)


def test_a_short_run_writes_logs_checkpoint_curve_and_a_loadable_policy(tmp_path):
    summary = train_rl(_config(tmp_path / "run"))
    out = tmp_path / "run"
    assert summary["steps"] == 100 and summary["episodes"] == 5
    train_rows = (out / "train.csv").read_text().splitlines()
    eval_rows = (out / "eval.csv").read_text().splitlines()
    assert len(train_rows) == 6 and [r.split(",")[0] for r in eval_rows[1:]] == ["0", "50", "100"]
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert (out / "learning_curve.png").stat().st_size > 1000 and summary["learning_curve"] == str(out / "learning_curve.png")
    assert json.loads((out / "latest.json").read_text())["step"] == 100
    with np.load(out / "checkpoints" / "step_000000100" / "replay.npz") as replay:
        assert int(replay["meta"][3]) == 100
        assert replay["terminated"].sum() == 0, "time-limit truncations are stored as non-terminal"
    policy = load_policy(out / "policy")
    assert isinstance(policy, SACPolicy) and policy.task == "lift" and policy.views == ()
    env = HeadwayEnv(EnvConfig("lift", views=(), horizon=5))
    try:
        action = policy.act(env.reset(seed=0)[0])
    finally:
        env.close()
    assert action.shape == (7,) and np.all(np.abs(action) <= 1)
    with pytest.raises(HeadwayError, match="--resume"):
        train_rl(_config(out))


def test_kill_9_then_resume_continues_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    command = [
        str(Path(sys.executable).parent / "headway"), "rl", "train", "--task", "lift", "--reward", "sparse", "--steps", "160",
        "--eval-every", "40", "--eval-episodes", "1", "--horizon", "10", "--batch-size", "16", "--hidden", "48,48", "--out", str(out),
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        latest = out / "latest.json"
        if latest.exists() and json.loads(latest.read_text())["step"] >= 80:
            break
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = json.loads((out / "latest.json").read_text())["step"]
    assert 80 <= killed_at < 160
    subprocess.run(command + ["--resume"], cwd=tmp_path, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 160 and summary["resumed_from"] >= killed_at
    steps = [int(line.split(",")[0]) for line in (out / "eval.csv").read_text().splitlines()[1:]]
    assert steps == list(range(0, 161, 40)), "evaluations are neither lost nor repeated across the kill"
    eval_seconds = [float(line.split(",")[-1]) for line in (out / "eval.csv").read_text().splitlines()[1:]]
    assert eval_seconds == sorted(eval_seconds) and summary["seconds"] >= eval_seconds[-1], "times count the whole run"
    train_steps = [int(line.split(",")[0]) for line in (out / "train.csv").read_text().splitlines()[1:]]
    assert train_steps == sorted(train_steps) and train_steps[-1] == 160
    assert load_policy(out / "policy").actor.net[0].out_features == 48, "--hidden sets the layer widths"


class _NaNAfter(RewardSource):
    """A model-like source whose potential turns NaN after a few calls."""

    name = "nan-after"
    has_potential = True
    calls = 0

    def potential(self, observation: dict) -> float:
        _NaNAfter.calls += 1
        return float("nan") if _NaNAfter.calls > 26 - 1 else 0.1 * _NaNAfter.calls


def test_a_nan_reward_stops_with_the_step_named_and_keeps_the_last_good_checkpoint(tmp_path):
    if "nan-after" not in REWARD_SOURCES:
        REWARD_SOURCES.register("nan-after", lambda argument, task, device: _NaNAfter())
    _NaNAfter.calls = 0
    out = tmp_path / "run"
    with pytest.raises(RewardNaNError, match=r"potential is nan at env step 25.*last good checkpoint \(step 20\)"):
        train_rl(_config(out, reward="nan-after", shaping="pbrs", eval_every=10, horizon=30, random_steps=100))
    assert json.loads((out / "latest.json").read_text())["step"] == 20
    assert load_policy(out / "policy").action_dim == 7


# -- initialisation from another policy -----------------------------------------------------------------
@dataclass
class _LinearPolicy:
    """A tiny state-only policy of its own format, to distil into the SAC actor."""

    weight: np.ndarray
    task: str = "lift"
    views: tuple = ()
    state_dim: int = 9
    action_dim: int = 7

    def reset(self) -> None:
        pass

    def act(self, observation) -> np.ndarray:
        x = np.concatenate([observation["state"], observation["object"]])
        return np.tanh(self.weight @ x).astype(np.float32)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"format": "test.linear", "task": self.task}))
        np.save(path / "weight.npy", self.weight)


def _load_linear(path: Path, device=None) -> _LinearPolicy:
    meta = json.loads((path / "config.json").read_text())
    return _LinearPolicy(np.load(path / "weight.npy"), task=meta["task"])


def test_init_distils_any_policy_into_the_actor_and_refuses_another_task(tmp_path, tiny_dataset):
    if "test.linear" not in POLICY_FORMATS:
        POLICY_FORMATS.register("test.linear", _load_linear)
    teacher = _LinearPolicy(np.random.default_rng(0).normal(0, 0.5, (7, 19)))
    teacher.save(tmp_path / "teacher")
    summary = train_rl(_config(tmp_path / "run", init=tmp_path / "teacher", demos=tiny_dataset, distill_steps=400, steps=20, eval_every=20, sac=SACConfig(hidden=(64, 64), actor_lr=3e-3)))
    assert summary["distill_states"] > 100 and summary["demo_transitions"] > 100
    student = load_policy(tmp_path / "run" / "policy")  # the actor is frozen during critic warm-up: still the distilled one
    episode = read_demo_episodes(tiny_dataset)[0]
    errors = [np.abs(student.act(o) - teacher.act(o)).mean() for o in ({"state": x[:9], "object": x[9:]} for x in episode.obs[::5])]
    baseline = np.mean([np.abs(teacher.act({"state": x[:9], "object": x[9:]})).mean() for x in episode.obs[::5]])
    assert np.mean(errors) < 0.3 * baseline
    _LinearPolicy(teacher.weight, task="stack").save(tmp_path / "stack_teacher")
    with pytest.raises(HeadwayError, match="policy for task 'stack', not 'lift'"):
        train_rl(_config(tmp_path / "run2", init=tmp_path / "stack_teacher", demos=tiny_dataset))


# -- IBRL: a frozen reference actor ---------------------------------------------------------------------
def test_ibrl_selection_picks_the_action_with_the_higher_q():
    def critics(obs, action):  # two heads: Q = a0 and Q = a1
        return torch.stack([action[:, 0], action[:, 1]])

    obs = torch.zeros(2, 3)
    first = torch.tensor([[0.5, 0.5], [0.9, -0.9]])
    second = torch.tensor([[0.1, 0.2], [0.2, 0.1]])
    chosen, which = select_actions(critics, obs, [first, second], "min")
    assert which.tolist() == [0, 1] and torch.equal(chosen, torch.stack([first[0], second[1]]))
    _, which = select_actions(critics, obs, [first, second], "mean")  # mean 0.0 vs 0.15 in row 1
    assert which.tolist() == [0, 1]
    _, which = select_actions(critics, obs, [second, first], "mean")
    assert which.tolist() == [1, 0]

    torch.manual_seed(0)
    agent = SACAgent(5, 2, SACConfig(hidden=(16, 16), ibrl=True))
    agent.freeze_reference()
    with torch.no_grad():  # the actor now differs from its frozen reference
        agent.actor.net[-1].bias.add_(0.7)
    for obs_np in np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32):
        x = torch.as_tensor(obs_np)[None]
        candidates = [agent.reference.deterministic(x), agent.actor.deterministic(x)]
        values = [agent.critics(x, a).min(0).values.item() for a in candidates]
        expected = candidates[int(np.argmax(values))][0].detach().numpy()
        np.testing.assert_allclose(agent.act(obs_np, deterministic=True), expected, atol=1e-6)


def test_ibrl_target_bootstraps_through_the_better_next_action():
    reward, terminated = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 0.0, 1.0])
    next_q = torch.tensor([[2.0, 2.0, 2.0], [3.0, 3.0, 3.0]])  # the actor's next action: min 2
    reference_q = torch.tensor([[5.0, 1.0, 9.0], [4.0, 1.0, 9.0]])  # the reference's: min 4, 1, 9
    target = td_targets(reward, terminated, next_q, torch.zeros(3), alpha=0.5, gamma=0.5, reference_q=reference_q)
    assert target.tolist() == pytest.approx([0.5 * 4.0, 0.5 * 2.0, 1.0])  # max(4, 2), max(1, 2), terminal


def test_a_residual_actor_starts_at_its_reference_stays_within_its_bound_and_exports_the_same_behaviour():
    torch.manual_seed(0)
    config = SACConfig(hidden=(16, 16), residual=0.2)
    agent = SACAgent(5, 2, config)
    agent.freeze_reference()
    observations = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    reference = agent.reference.deterministic(torch.as_tensor(observations)).numpy()
    np.testing.assert_allclose([agent.act(o, deterministic=True) for o in observations], reference, atol=1e-6)
    for _ in range(20):
        metrics = agent.update(_batch())
    assert np.isfinite(metrics["actor_loss"])
    with torch.no_grad():
        agent.actor.net[-1].bias.add_(5.0)  # a saturated correction
    acted = np.array([agent.act(o, deterministic=True) for o in observations])
    assert np.abs(acted - reference).max() <= 0.2 + 1e-6 and np.abs(acted - reference).max() > 0.1
    policy = SACPolicy.from_agent(agent, SACPolicyConfig("lift", 3, 2, 2, (16, 16), residual=0.2))
    np.testing.assert_allclose([policy.act({"state": o[:3], "object": o[3:]}) for o in observations], acted, atol=1e-6)


def test_ibrl_settings_are_checked():
    with pytest.raises(HeadwayError, match="ibrl_q must be one of min, mean"):
        SACConfig(ibrl_q="max")
    with pytest.raises(HeadwayError, match="residual must be in"):
        SACConfig(residual=-0.1)
    with pytest.raises(HeadwayError, match="initialise it with --init or pretrain steps"):
        RLConfig(steps=1, sac=SACConfig(residual=0.2))
    with pytest.raises(HeadwayError, match="initialise it with --init or pretrain steps"):
        RLConfig(steps=1, sac=SACConfig(ibrl=True))
    with pytest.raises(HeadwayError, match="freeze_reference"):
        SACAgent(5, 2, SACConfig(hidden=(8,), ibrl=True)).act(np.zeros(5, np.float32))


def test_an_ibrl_run_resumes_with_its_frozen_reference_and_exports_a_policy_that_acts_like_its_evaluation(tmp_path, tiny_dataset):
    settings = dict(demos=tiny_dataset, pretrain_steps=50, critic_pretrain=20, random_steps=0, eval_every=40, sac=SACConfig(hidden=(32, 32), ibrl=True))
    out = tmp_path / "run"
    train_rl(_config(out, steps=40, **settings))
    first = torch.load(out / "checkpoints" / "step_000000040" / "train_state.pt", weights_only=False)["agent"]
    summary = train_rl(_config(out, steps=80, **settings), resume=True)  # an extended run continues from step 40
    assert summary["resumed_from"] == 40 and summary["steps"] == 80
    assert [int(line.split(",")[0]) for line in (out / "eval.csv").read_text().splitlines()[1:]] == [0, 40, 80]
    state = torch.load(out / "checkpoints" / "step_000000080" / "train_state.pt", weights_only=False)["agent"]
    for key, value in first["reference"].items():
        assert torch.equal(value, state["reference"][key]), "the reference stays frozen across the resume"
    assert state["updates"] > first["updates"]

    policy = load_policy(out / "policy")
    assert isinstance(policy, SACPolicy) and policy.config.ibrl
    agent = SACAgent(19, 7, settings["sac"])
    agent.load_state_dict(state)
    for key, value in state["reference"].items():
        assert torch.equal(policy.nets["reference"].state_dict()[key], value)
    for x in read_demo_episodes(tiny_dataset)[0].obs[::4]:
        np.testing.assert_allclose(policy.act({"state": x[:9], "object": x[9:]}), agent.act(x, deterministic=True), atol=1e-6)


def test_a_policy_of_the_old_format_is_refused_with_a_fix(tmp_path):
    policy = SACPolicy(SACPolicyConfig("lift", 9, 10, 7, (8,)))
    policy.save(tmp_path / "policy")
    config = json.loads((tmp_path / "policy" / "config.json").read_text())
    (tmp_path / "policy" / "config.json").write_text(json.dumps({**config, "format_version": 1}))
    with pytest.raises(HeadwayError, match="format 1.*Retrain it with `headway rl train`"):
        load_policy(tmp_path / "policy")


# -- AWAC: advantage-weighted imitation of replay actions -------------------------------------------------
def test_awac_moves_the_actor_toward_the_replay_action_the_critics_value_more():
    torch.manual_seed(0)
    n = 128
    good = torch.arange(n) % 2 == 0
    batch = {  # a bandit: two actions in replay, only +0.6 is rewarded
        "obs": torch.zeros(n, 3),
        "action": torch.where(good, 0.6, -0.6)[:, None],
        "reward": good.float(),
        "next_obs": torch.zeros(n, 3),
        "terminated": torch.ones(n),
    }
    agent = SACAgent(3, 1, SACConfig(hidden=(32, 32), actor_update="awac", actor_lr=3e-3, critic_lr=3e-3))
    for _ in range(300):
        metrics = agent.update(batch)
    # plain likelihood (equal weights) would settle between the two actions, at about 0
    assert agent.act(np.zeros(3, np.float32), deterministic=True)[0] > 0.4
    assert metrics["awac_max_weight"] > 1.0 and "entropy" not in metrics  # no temperature tuning under AWAC


def test_awac_settings_are_checked():
    with pytest.raises(HeadwayError, match="actor_update must be one of sac, awac"):
        SACConfig(actor_update="ppo")
    with pytest.raises(HeadwayError, match="awac_temperature must be positive"):
        SACConfig(actor_update="awac", awac_temperature=0.0)
    with pytest.raises(HeadwayError, match="does not combine with ibrl or residual"):
        SACConfig(actor_update="awac", residual=0.2)


def test_a_run_saved_before_a_setting_existed_resumes_and_a_changed_setting_is_named(tmp_path):
    out = tmp_path / "run"
    train_rl(_config(out, steps=40, eval_every=40))
    saved = json.loads((out / "config.json").read_text())
    del saved["sac"]["actor_update"], saved["success_weight"]  # as written before these settings existed
    (out / "config.json").write_text(json.dumps(saved))
    assert train_rl(_config(out, steps=60, eval_every=20), resume=True)["steps"] == 60
    changed = _config(out, steps=20, eval_every=20, sac=SACConfig(hidden=(32, 32), actor_update="awac"))
    with pytest.raises(HeadwayError, match=r"other settings \(sac: "):
        train_rl(changed, resume=True)
    assert train_rl(changed, overwrite=True)["steps"] == 20  # --overwrite starts over with the new settings
    assert json.loads((out / "config.json").read_text())["sac"]["actor_update"] == "awac"


# -- cloning at its own learning rate ---------------------------------------------------------------------
def test_cloning_runs_at_its_own_learning_rate_and_fine_tuning_then_at_the_actors():
    obs, actions = torch.randn(256, 4), torch.full((256, 2), 0.5)

    def cloned_error(lr: float | None) -> tuple[float, list[float]]:
        torch.manual_seed(0)
        agent = SACAgent(4, 2, SACConfig(hidden=(32, 32), actor_lr=1e-7))
        agent.pretrain_actor(obs, actions, steps=200, batch_size=64, lr=lr)
        error = (agent.actor.deterministic(obs) - actions).abs().mean().item()
        return error, [group["lr"] for group in agent.actor_opt.param_groups]

    at_actor_rate, _ = cloned_error(None)
    at_own_rate, rates_after = cloned_error(3e-3)
    assert at_own_rate < 0.05 < at_actor_rate, "1e-7 barely moves the actor; 3e-3 clones the constant action"
    assert rates_after == [1e-7], "fine-tuning goes on at the actor's learning rate"
    with pytest.raises(HeadwayError, match="pretrain learning rate must be positive"):
        _config(Path("unused"), pretrain_lr=0.0)


def test_integer_lists_are_parsed_or_refused_with_an_example():
    import argparse

    from headway.commands import integers_argument

    assert integers_argument("512, 512,512") == (512, 512, 512)
    with pytest.raises(argparse.ArgumentTypeError, match="integers such as 256,256"):
        integers_argument("512x2")


# -- exploration held at the clone's spread ---------------------------------------------------------------
def test_held_exploration_keeps_a_certain_clones_spread_where_sac_widens_it():
    obs = torch.randn(256, 4)
    batch = {"obs": obs, "action": torch.zeros(256, 2), "reward": torch.zeros(256), "next_obs": obs, "terminated": torch.ones(256)}

    def spread_before_and_after(exploration: str) -> tuple[float, float, SACAgent]:
        torch.manual_seed(0)
        agent = SACAgent(4, 2, SACConfig(hidden=(32, 32), actor_lr=1e-3, init_alpha=0.005, exploration=exploration))
        agent.pretrain_actor(obs, torch.full((256, 2), 0.3), steps=300, batch_size=64)  # a certain clone
        if exploration == "held":
            agent.hold_spread(obs)

        def spread() -> float:
            with torch.no_grad():
                return float((torch.atanh(agent._sample(obs)[0].clamp(-0.999, 0.999)) - agent.actor(obs)[0]).std())

        before = spread()
        for _ in range(300):
            metrics = agent.update(batch)
        return before, spread(), agent, metrics

    before, after, _, metrics = spread_before_and_after("learned")
    assert after > 5 * before and "entropy" in metrics, "SAC's entropy target widens the clone"
    before, after, agent, metrics = spread_before_and_after("held")
    assert after == pytest.approx(before, rel=0.1) and "entropy" not in metrics and metrics["alpha"] == 0.0
    restored = SACAgent(4, 2, agent.config)
    restored.load_state_dict(agent.state_dict())
    assert torch.equal(restored.held_log_std, agent.held_log_std), "a resumed run keeps the held spread"
    with pytest.raises(HeadwayError, match="exploration must be one of learned, held"):
        SACConfig(exploration="fixed")
    with pytest.raises(HeadwayError, match="call hold_spread"):
        SACAgent(4, 2, SACConfig(hidden=(8,), exploration="held")).act(np.zeros(4, np.float32))
    with pytest.raises(HeadwayError, match="initialise it with --init or pretrain steps"):
        _config(Path("unused"), sac=SACConfig(hidden=(32, 32), exploration="held"))
