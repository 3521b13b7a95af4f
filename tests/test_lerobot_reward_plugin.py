"""headway inside lerobot: the `headway` reward type, built and scored with lerobot's API alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from headway.errors import HeadwayError
from headway.reward.stage_model import StageModelConfig, StageRewardNet
from headway.reward.stage_reward import StageRewardModel

VIEWS = ("agentview", "robot0_eye_in_hand")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    config = StageModelConfig(
        views=VIEWS, stage_names=("reach", "grasp", "lift"), stage_proportions=(0.5, 0.2, 0.3),
        image_size=32, dim=32, window=4, stride=2, ensemble=2,
    )
    path = tmp_path_factory.mktemp("models") / "headway_tiny"
    StageRewardModel(StageRewardNet(config), device="cpu").save(path)
    return path


def test_plain_lerobot_session_scores_a_headway_dataset(checkpoint, tiny_dataset):
    """Only lerobot's API after `import headway`: config -> delta indices -> LeRobotDataset -> scores,
    equal to headway's own causal scoring of the same decoded frames."""
    script = f"""
import headway, torch
from lerobot.rewards import make_reward_model, make_reward_model_config
from lerobot.datasets.lerobot_dataset import LeRobotDataset
cfg = make_reward_model_config("headway", pretrained_path={str(checkpoint)!r}, device="cpu")
model = make_reward_model(cfg)
deltas = cfg.observation_delta_indices
ds = LeRobotDataset("headway/lift", root={str(tiny_dataset)!r}, video_backend="pyav",
    delta_timestamps={{f"observation.images.{{v}}": [d / 20 for d in deltas] for v in cfg.views}})
batch = torch.utils.data.default_collate([ds[i] for i in (0, 3, 9, 20)])
reward = model.compute_reward(batch)
print("DELTAS", deltas)
print("REWARD", reward.tolist())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("DELTAS", "REWARD")))
    assert eval(lines["DELTAS"]) == [-1_000_000, -6, -4, -2, 0]
    reward = np.array(eval(lines["REWARD"]))
    assert reward.shape == (4,) and np.all((reward >= 0) & (reward <= 1))

    from headway.datasets.reader import DatasetReader

    reader = DatasetReader(tiny_dataset)
    episode = reader.episode(0)
    ours = StageRewardModel.load(checkpoint, device="cpu").score_episode(
        {v: episode.images[v] for v in VIEWS}, episode.task
    ).progress[[0, 3, 9, 20]]
    assert np.allclose(reward, ours, atol=2e-3), (reward, ours)


def test_camera_keys_map_views_and_mismatches_list_both_sides(checkpoint):
    from lerobot.rewards import make_reward_model, make_reward_model_config

    cfg = make_reward_model_config("headway", pretrained_path=str(checkpoint), device="cpu",
                                   camera_keys={"agentview": "observation.images.front"})
    model = make_reward_model(cfg)
    frames = torch.rand(2, 5, 3, 48, 48)
    batch = {"observation.images.front": frames, "observation.images.robot0_eye_in_hand": frames,
             "frame_index": torch.tensor([0, 7]), "task": ["lift the cube", "lift the cube"]}
    scores = model.score(batch)
    assert scores["progress"].shape == (2,) and scores["stage_probs"].shape == (2, 3)
    assert torch.all((scores["success"] >= 0) & (scores["success"] <= 1))
    del batch["observation.images.front"]
    with pytest.raises(HeadwayError, match=r"observation.images.front.*model views.*batch cameras"):
        model.compute_reward(batch)
    # lerobot's factory re-raises config errors as "not available"; headway's message is the cause
    with pytest.raises(ValueError) as raised:
        make_reward_model_config("headway", pretrained_path=str(checkpoint), camera_keys={"wrist": "x"})
    assert "['wrist'] that the model does not have; its views: ['agentview'" in str(raised.value.__cause__)


def test_unknown_types_and_foreign_checkpoints_are_clear(checkpoint, tmp_path):
    from lerobot.rewards import make_reward_model_config

    with pytest.raises(ValueError, match="not available"):
        make_reward_model_config("no_such_reward")
    (tmp_path / "config.json").write_text('{"type": "sarm"}')
    with pytest.raises(ValueError) as raised:
        make_reward_model_config("headway", pretrained_path=str(tmp_path))
    assert "'sarm' checkpoint" in str(raised.value.__cause__)
