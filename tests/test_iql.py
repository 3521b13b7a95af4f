"""Offline RL (IQL) on reward labels: losses on problems with known answers, bad input, the CLI end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from headway.reward.labelling import LabelConfig, label_dataset
from headway.errors import HeadwayError
from headway.policy.bc import BCNet
from headway.policy.iql import (
    IQLConfig,
    IQLLearner,
    ValueNet,
    chunk_transitions,
    expectile_loss,
    train_iql,
)
from headway.reward.stage_model import StageModelConfig, StageRewardNet
from headway.reward.stage_reward import StageRewardModel

VIEWS = ("agentview", "robot0_eye_in_hand")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks: torch's intra-op threads only add contention on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _save_model(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    config = StageModelConfig(
        views=VIEWS, stage_names=("reach", "grasp", "lift"), stage_proportions=(0.5, 0.2, 0.3), image_size=32, dim=32, window=4, ensemble=2
    )
    StageRewardModel(StageRewardNet(config), device="cpu").save(path)
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return _save_model(tmp_path_factory.mktemp("iql_models") / "tiny", seed=0)


@pytest.fixture(scope="module")
def labels(tiny_dataset, model_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("iql_labels") / "labels"
    label_dataset(LabelConfig(dataset=tiny_dataset, model=model_path, out=out, gamma=0.95, chunk_size=3), progress=False)
    return out


def _tiny(tmp_path: Path, tiny_dataset: Path, labels: Path, **overrides) -> IQLConfig:
    settings = dict(dataset=tiny_dataset, labels=labels, out=tmp_path / "iql", chunk=3, steps=3, batch_size=16, hidden=16, layers=1)
    return IQLConfig(**(settings | overrides))


# -- losses on problems with a known answer ----------------------------------------------------------
def test_expectile_regression_recovers_the_known_upper_expectile():
    """X ~ Bernoulli(p): the tau-expectile e solves tau p (1 - e) = (1 - tau)(1 - p) e."""
    torch.manual_seed(0)
    p, tau = 0.3, 0.8
    expected = tau * p / (tau * p + (1 - tau) * (1 - p))  # 0.6316..., well above the mean 0.3
    value = ValueNet(2, hidden=16, layers=1)
    optimizer = torch.optim.Adam(value.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    state = torch.zeros(256, 2)
    for _ in range(400):
        target = (torch.rand(256, generator=generator) < p).float()
        loss = expectile_loss(target - value(state), tau).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert abs(float(value(state[:1]).detach()) - expected) < 0.03
    # tau = 0.5 is the mean: the loss is symmetric
    u = torch.tensor([-1.0, 1.0])
    assert torch.allclose(expectile_loss(u, 0.5), torch.tensor([0.5, 0.5]))


def test_advantage_weighting_prefers_the_better_action_on_a_one_step_mdp():
    """One state, half the data takes action -1 (reward 0), half +1 (reward 1); both end the episode.
    Q learns 0 and 1, V an upper expectile between them, and the weighted regression picks +1."""
    torch.manual_seed(0)
    config = IQLConfig(dataset=Path("."), labels=Path("."), out=Path("."), chunk=1, steps=400, hidden=32, layers=2, lr=3e-3, critic_lr=3e-3)
    actor = BCNet(1, 1, 1, hidden=32, layers=2)
    learner = IQLLearner(actor, 1, config, torch.device("cpu"))
    batch = 256
    state = torch.zeros(batch, 1)
    actions = torch.where(torch.arange(batch) % 2 == 0, 1.0, -1.0).view(batch, 1, 1)
    returns = (actions.view(-1) > 0).float()
    for _ in range(400):
        learner.update(state, state, actions, torch.ones(batch, 1), returns, torch.zeros(batch), state)
    with torch.no_grad():
        q_good = torch.min(*learner.critic(state[:1], torch.ones(1, 1, 1)))
        q_bad = torch.min(*learner.critic(state[:1], -torch.ones(1, 1, 1)))
        v = learner.value(state[:1])
        action = float(actor(state[:1]).view(-1))
    assert abs(float(q_good) - 1) < 0.1 and abs(float(q_bad)) < 0.1
    assert 0.5 < float(v) < 1.0  # the 0.7-expectile of {0, 1} with p = 1/2 is 0.7
    assert action > 0.8  # plain BC would regress to the median/mean of {-1, +1}, near 0


def test_critic_warm_up_leaves_the_actor_alone_and_lets_it_start_from_a_learned_value():
    """critic_steps: value and critics learn first with the actor untouched; then a short actor phase
    already extracts the better action of the one-step MDP above."""
    torch.manual_seed(0)
    config = IQLConfig(dataset=Path("."), labels=Path("."), out=Path("."), chunk=1, steps=150, critic_steps=400, hidden=32, layers=2,
                       lr=3e-3, critic_lr=3e-3)
    actor = BCNet(1, 1, 1, hidden=32, layers=2)
    learner = IQLLearner(actor, 1, config, torch.device("cpu"))
    before = [p.detach().clone() for p in actor.parameters()]
    batch = 256
    state = torch.zeros(batch, 1)
    actions = torch.where(torch.arange(batch) % 2 == 0, 1.0, -1.0).view(batch, 1, 1)
    returns = (actions.view(-1) > 0).float()
    for _ in range(config.critic_steps):
        logs = learner.update(state, state, actions, torch.ones(batch, 1), returns, torch.zeros(batch), state, actor=False)
    assert "actor_loss" not in logs
    assert all(torch.equal(a, b) for a, b in zip(before, actor.parameters()))
    assert learner.actor_schedule.last_epoch == 0  # the actor's schedule starts with the actor
    with torch.no_grad():
        assert abs(float(torch.min(*learner.critic(state[:1], torch.ones(1, 1, 1)))) - 1) < 0.1
    for _ in range(config.steps):
        learner.update(state, state, actions, torch.ones(batch, 1), returns, torch.zeros(batch), state)
    with torch.no_grad():
        assert float(actor(state[:1]).view(-1)) > 0.8
    with pytest.raises(HeadwayError, match="--critic-steps must be 0 or more"):
        IQLConfig(dataset=Path("."), labels=Path("."), out=Path("."), critic_steps=-1)


def test_chunk_transitions_bootstrap_truncations_and_stop_at_terminals():
    rewards = [np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0])]
    t = chunk_transitions(rewards, [True, False], chunk=2, gamma=0.5)
    np.testing.assert_allclose(t.returns, [1 + 0.5 * 2, 2 + 0.5 * 3, 3, 1.5, 1.5, 1.0])
    np.testing.assert_allclose(t.discount, [0.25, 0.0, 0.0, 0.25, 0.25, 0.5])
    assert t.next_index.tolist() == [2, 2, 2, 5, 5, 5]


# -- bad input --------------------------------------------------------------------------------------
def test_bad_settings_are_refused():
    for bad in (0.5, 1.0, 0.3, 1.2):
        with pytest.raises(HeadwayError, match=r"--expectile must be in \(0.5, 1\)"):
            IQLConfig(dataset=Path("."), labels=Path("."), out=Path("."), expectile=bad)
    with pytest.raises(HeadwayError, match="unknown reward"):
        IQLConfig(dataset=Path("."), labels=Path("."), out=Path("."), reward="dense")


def test_labels_of_another_dataset_or_model_are_refused_unless_forced(tiny_dataset, labels, model_path, tmp_path):
    other = tmp_path / "other_data"
    shutil.copytree(tiny_dataset, other)
    info = json.loads((other / "meta" / "info.json").read_text())
    (other / "meta" / "info.json").write_text(json.dumps(info | {"robot_type": "someone_else"}))
    with pytest.raises(HeadwayError, match=r"made from dataset .*fingerprint .*not from .*other_data.*--force"):
        train_iql(_tiny(tmp_path, other, labels), progress=False)
    summary = train_iql(_tiny(tmp_path, other, labels, force=True), progress=False)
    assert any("--force" in note for note in summary["notes"])
    other_model = _save_model(tmp_path / "other_model", seed=1)
    with pytest.raises(HeadwayError, match=r"made by model .*tiny.*not by .*other_model"):
        train_iql(_tiny(tmp_path, tiny_dataset, labels, model=other_model), progress=False)
    train_iql(_tiny(tmp_path, tiny_dataset, labels, model=model_path), progress=False)


def _copy_labels(labels: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / "labels_copy"
    shutil.copytree(labels, copy)
    table = pq.read_table(copy / "labels.parquet")
    frame = table.to_pandas()
    edit(frame)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(table.schema.metadata), copy / "labels.parquet")
    return copy


def test_nan_rewards_and_actions_name_the_episode_and_frame(tiny_dataset, labels, tmp_path):
    def poison(frame: pd.DataFrame) -> None:
        frame.loc[(frame.episode_index == 1) & (frame.frame_index == 7), "reward"] = np.nan

    bad_labels = _copy_labels(labels, tmp_path, poison)
    with pytest.raises(HeadwayError, match="episode 1 has a NaN or infinite reward label at frame 7"):
        train_iql(_tiny(tmp_path, tiny_dataset, bad_labels), progress=False)

    data = tmp_path / "nan_action"
    shutil.copytree(tiny_dataset, data)
    for file in (data / "data").rglob("*.parquet"):
        table = pq.read_table(file)
        frame = table.to_pandas()
        row = int(np.flatnonzero((frame.episode_index == 2).to_numpy() & (frame.frame_index == 4).to_numpy())[0])
        action = np.stack(frame["action"].to_numpy()).astype(np.float32)
        action[row, 0] = np.nan
        column = pa.array(list(action), type=table.schema.field("action").type)
        pq.write_table(table.set_column(table.schema.get_field_index("action"), "action", column), file)
    with pytest.raises(HeadwayError, match="episode 2 has a NaN or infinite action at frame 4"):
        train_iql(_tiny(tmp_path, data, labels, force=True), progress=False)


def test_dataset_without_action_is_refused(tiny_dataset, labels, tmp_path):
    data = tmp_path / "no_action"
    shutil.copytree(tiny_dataset, data)
    info = json.loads((data / "meta" / "info.json").read_text())
    info["features"].pop("action")
    (data / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(HeadwayError, match="has no 'action' feature"):
        train_iql(_tiny(tmp_path, data, labels, force=True), progress=False)


# -- end to end --------------------------------------------------------------------------------------
def test_cli_trains_iql_and_eval_loads_it(tiny_dataset, labels, tmp_path, capsys):
    from headway.cli import main

    out = tmp_path / "cli_iql"
    assert main(["policy", "iql", "--dataset", str(tiny_dataset), "--labels", str(labels), "--out", str(out),
                 "--steps", "3", "--critic-steps", "2", "--chunk", "3", "--batch-size", "32", "--reward", "shaped"]) == 0
    printed = capsys.readouterr().out
    assert "IQL on shaped rewards, gamma 0.95" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "headway.bc" and config["train"]["algorithm"] == "iql" and config["train"]["critic_steps"] == 2
    assert (out / "critic" / "model.safetensors").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert "warmup_critic_loss" in summary and "actor_loss" not in {k.removeprefix("warmup_") for k in summary if k.startswith("warmup_")}
    shares = summary["weight_share_by_episode"]
    assert sorted(int(e) for e in shares) == list(range(summary["episodes"])) and abs(sum(shares.values()) - 1) < 1e-6
    assert 0 < summary["effective_sample_share"] <= 1
    report = tmp_path / "eval.json"
    assert main(["policy", "eval", "--task", "lift", "--policy", str(out), "--episodes", "1", "--horizon", "4", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["mean_length"] == 4
    assert main(["policy", "iql", "--dataset", str(tiny_dataset), "--labels", str(labels), "--out", str(tmp_path / "sparse"),
                 "--steps", "2", "--chunk", "3", "--reward", "sparse"]) == 0
    capsys.readouterr()
    assert main(["policy", "iql", "--dataset", str(tiny_dataset), "--labels", str(labels), "--out", str(tmp_path / "x"),
                 "--expectile", "0.4"]) == 2
    assert "--expectile must be in (0.5, 1)" in capsys.readouterr().err


# -- the harder data regime: recoveries, hesitations, detours -----------------------------------------
def test_new_rollout_modes_are_deterministic_succeed_and_annotate_the_successful_attempt():
    import dataclasses

    from headway.datasets.collect import HARD_MIX, CollectConfig, plan_episodes
    from headway.sim.env import EnvConfig, HeadwayEnv
    from headway.sim.expert import Behaviour, sample_behaviour
    from headway.sim.rollout import annotate, run_episode
    from headway.sim.task import get_task

    task = get_task("lift")
    plan = plan_episodes(CollectConfig(task="lift", episodes=40, mix=HARD_MIX, seed=3))
    assert plan == plan_episodes(CollectConfig(task="lift", episodes=40, mix=HARD_MIX, seed=3))
    assert {p.behaviour.mode for p in plan} == set(HARD_MIX)
    # the default mix plans exactly as before the new modes existed (their share is 0)
    assert [p.behaviour.mode for p in plan_episodes(CollectConfig(episodes=10, seed=0))].count("recover") == 0
    with pytest.raises(HeadwayError, match="error kind is given exactly when mode is 'recover'"):
        Behaviour("recover")
    # a recovery's abandoned attempt belongs to the stage that had to be redone
    subtasks = annotate(("a", "b", "c"), np.array([0, 0, 1, 1, 0, 0, 1, 1, 2, 2]), [True, True, True], 9)
    assert [(s.name, s.start, s.end) for s in subtasks] == [("a", 0, 5), ("b", 6, 7), ("c", 8, 9)]

    env = HeadwayEnv(EnvConfig(task="lift", views=("agentview",), image_size=32))
    try:
        behaviour = dataclasses.replace(sample_behaviour("recover", task, np.random.default_rng([7, 0, 2])), error="miss")
        for mode in ("recover", "hesitate", "detour"):  # behaviours are a function of the seed (the simulator is deterministic too)
            assert sample_behaviour(mode, task, np.random.default_rng([7, 1, 2])) == sample_behaviour(mode, task, np.random.default_rng([7, 1, 2]))
        first = run_episode(env, behaviour, 2000)
        assert first.success and (np.diff(first.expert_stage) < 0).any()  # it went back and redid the reach
        assert [s.name for s in first.subtasks] == list(task.stages)
        assert all(a.end + 1 == b.start for a, b in zip(first.subtasks, first.subtasks[1:]))
        # the grasp range is the attempt that held: the missed grasp lies inside the reach range
        missed = int(np.flatnonzero(first.expert_stage == 1)[0])
        assert first.subtasks[0].start <= missed <= first.subtasks[0].end
        hesitant = run_episode(env, sample_behaviour("hesitate", task, np.random.default_rng([7, 0, 2])), 2000)
        still = np.abs(hesitant.action[:, :3]).max(axis=1) < 0.05  # holding position
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, still.astype(int), 0])))[::2]
        assert hesitant.success and hesitant.mode == "hesitate" and runs.max() >= 5
        detour = run_episode(env, sample_behaviour("detour", task, np.random.default_rng([7, 0, 2])), 2000)
        assert detour.success and detour.mode == "detour" and [s.name for s in detour.subtasks] == list(task.stages)
    finally:
        env.close()
