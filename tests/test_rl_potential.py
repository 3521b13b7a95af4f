"""The RL potential scores all envs' frames in one batch and only the frames the model's windows read."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headway.errors import HeadwayError
from headway.policy.rl_potential import BatchedPotential
from headway.reward.stage_model import StageModelConfig, StageRewardNet
from headway.reward.stage_reward import StageRewardModel

VIEWS = ("agentview", "robot0_eye_in_hand")
SIZE = 32


@pytest.fixture(scope="module")
def stride3_model() -> StageRewardModel:
    torch.manual_seed(0)
    config = StageModelConfig(views=VIEWS, stage_names=("a", "b"), stage_proportions=(0.5, 0.5), image_size=SIZE, dim=32,
                              window=4, stride=3, ensemble=2)
    return StageRewardModel(StageRewardNet(config), device="cpu")


def episode(length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v: rng.integers(0, 256, (length, SIZE, SIZE, 3), dtype=np.uint8) for v in VIEWS}


def run(potential: BatchedPotential, episodes: list[dict], length: int) -> np.ndarray:
    """(length, envs) potentials; frames the potential does not ask for are handed over without images."""
    phis = []
    for t in range(length):
        due = [potential.due(i) for i in range(len(episodes))]
        observations = [{"images": {v: e[v][t] for v in VIEWS} if d else {}} for e, d in zip(episodes, due)]
        phis.append(potential.score(list(range(len(episodes))), observations))
    return np.stack(phis)


def test_scoring_every_stride_frames_equals_every_frame_scoring_where_scored(stride3_model):
    length, episodes = 14, [episode(14, 0), episode(14, 1)]
    offline = np.stack([stride3_model.score_episode(e, "lift").progress for e in episodes], axis=1)
    every_frame = run(BatchedPotential(stride3_model, "lift", 2, every=1), episodes, length)
    np.testing.assert_allclose(every_frame, offline, atol=1e-5)
    sparse = BatchedPotential(stride3_model, "lift", 2)
    assert sparse.every == 3, "the default is the model's frame stride"
    held = run(sparse, episodes, length)
    scored = np.arange(length) // 3 * 3
    np.testing.assert_allclose(held, offline[scored], atol=1e-5)  # exact at 0, 3, 6, ...; held in between
    assert not np.allclose(held, offline), "frames in between are not scored"


def test_a_reset_env_starts_scoring_again_from_its_first_frame(stride3_model):
    potential = BatchedPotential(stride3_model, "lift", 1)
    frames = episode(5, 2)
    run(potential, [frames], 4)
    potential.reset(0)
    assert potential.due(0)
    again = run(potential, [frames], 5)
    np.testing.assert_allclose(again[:, 0], stride3_model.score_episode(frames, "lift").progress[[0, 0, 0, 3, 3]], atol=1e-5)


def test_a_score_interval_the_stride_does_not_divide_is_refused(stride3_model):
    with pytest.raises(HeadwayError, match="use a divisor of 3"):
        BatchedPotential(stride3_model, "lift", 2, every=2)
    with pytest.raises(HeadwayError, match="k >= 1"):
        BatchedPotential(stride3_model, "lift", 2, every=0)


def test_the_runner_renders_only_the_frames_the_potential_scores(stride3_model, tmp_path):
    """Rewards asks the envs to render frames 0, 3, 6, ... only; the potential is the model's on those frames."""
    from headway.policy.rl_runner import OnlineRLConfig, Rewards
    from headway.policy.vec_env import VecEnv, VecEnvSpec

    stride3_model.save(tmp_path / "model")
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text("{}")
    rewards = Rewards(OnlineRLConfig(init=policy, out=tmp_path / "run", reward=f"prm:{tmp_path / 'model'}"), 1)
    with VecEnv(VecEnvSpec("lift", rewards.views, rewards.image_size), 1, processes=False) as env:
        [(observation, info)] = env.reset([0], [5])
        phis = [rewards.potentials([0], [observation], [info], reset=True)[0]]
        frames = {v: [observation["images"][v]] for v in VIEWS}
        rendered = []
        for _ in range(7):
            flags = rewards.render_flags([0])
            [(observation, _, _, _, info)] = env.step(np.zeros((1, 7), np.float32), render=flags)
            rendered.append(bool(observation["images"]))
            assert rendered[-1] == flags[0]
            phis.append(rewards.potentials([0], [observation], [info], reset=False)[0])
            for v in VIEWS:
                frames[v].append(observation["images"][v] if flags[0] else np.zeros_like(frames[v][0]))
    assert rendered == [False, False, True, False, False, True, False]  # frames 1..7: 3 and 6 are scored
    offline = stride3_model.score_episode({v: np.stack(f) for v, f in frames.items()}, "pick up the red cube and lift it").progress
    np.testing.assert_allclose(phis, offline[[0, 0, 0, 3, 3, 3, 6, 6]], atol=1e-5)  # unrendered frames are never read


def test_score_every_needs_a_reward_model_and_a_positive_interval(tmp_path):
    from headway.policy.rl_runner import OnlineRLConfig

    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text("{}")
    with pytest.raises(HeadwayError, match="score-every 5 needs a reward model"):
        OnlineRLConfig(init=policy, out=tmp_path / "run", reward="sparse", score_every=5)
    with pytest.raises(HeadwayError, match="score-every 0 needs"):
        OnlineRLConfig(init=policy, out=tmp_path / "run", reward=f"prm:{tmp_path}", score_every=0)
