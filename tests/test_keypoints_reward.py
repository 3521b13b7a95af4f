"""The keypoint reward: Phi_kp in [0, 1] rising as the gripper nears the stage keypoint; fused potential
behind the RewardModel protocol; offline == online; checkpoints open with load_reward_model."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from headway.errors import HeadwayError
from headway.perception.keypoint_model import KeypointModel, KeypointModelConfig
from headway.reward.interface import RewardModel
from headway.reward.keypoint_reward import KeypointRewardModel, _Tracker, build_keypoint_reward
from headway.reward.loading import load_reward_model
from headway.reward.stage_model import StageModelConfig, StageRewardNet
from headway.reward.stage_reward import StageRewardModel

VIEWS = ("agentview", "sideview")
SIZE = 32
K = np.array([[38.6, 0.0, 16.0], [0.0, 38.6, 16.0], [0.0, 0.0, 1.0]])


def look_at(eye, target=(0.0, 0.0, 0.85)) -> np.ndarray:
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    pose[:3, 3] = eye
    return pose


LIFT_TARGETS = (("grasp", "gripper"), ("grasp", "gripper"), ("lift_target", "grasp"))
CAMERAS = {"agentview": {"intrinsics": K.tolist(), "pose": look_at((0.5, 0.0, 1.35)).tolist()},
           "sideview": {"intrinsics": K.tolist(), "pose": look_at((0.0, 1.2, 1.4)).tolist()}}  # fmt: skip


@pytest.fixture(scope="module")
def reward() -> KeypointRewardModel:
    torch.manual_seed(0)
    keypoints = KeypointModel.create(
        KeypointModelConfig(("gripper", "grasp", "lift_target"), VIEWS, task="lift", image_size=SIZE, width=4, stage_targets=LIFT_TARGETS),
        device="cpu",
    )
    stage_config = StageModelConfig(views=VIEWS, stage_names=("reach", "grasp", "lift"), stage_proportions=(0.5, 0.2, 0.3), image_size=SIZE, dim=32, window=4, ensemble=1)
    progress = StageRewardModel(StageRewardNet(stage_config), device="cpu")
    return build_keypoint_reward(keypoints, progress, CAMERAS, progress_weight=0.4, keypoint_weight=0.6)


def observe(model: KeypointRewardModel, points: np.ndarray) -> tuple[dict, dict]:
    """Perfect detections of `points` (K, 3) in every camera."""
    uv = {v: np.stack([model.cameras[v].project(p)[0] for p in points]) for v in model.keypoint_views}
    return uv, {v: np.ones(len(points)) for v in model.keypoint_views}


def test_phi_rises_as_the_gripper_approaches_the_stage_keypoint(reward):
    cube = np.array([0.02, -0.01, 0.83])
    lift_target = cube + [0, 0, 0.145]
    tracker = _Tracker(reward)
    phis = []
    for height in np.linspace(0.3, 0.0, 7):  # reach stage: the gripper comes down onto the grasp point
        gripper = cube + [0.0, 0.0, height]
        uv, confidence = observe(reward, np.stack([gripper, cube, lift_target]))
        phi, distance, points = tracker.step(0, uv, confidence, np.concatenate([gripper, np.zeros(6)]))
        phis.append(phi)
        assert distance == pytest.approx(height, abs=1e-6)
        np.testing.assert_allclose(points[1], cube, atol=1e-6)
    assert all(0.0 <= p <= 1.0 for p in phis)
    assert np.all(np.diff(phis) > 0) and phis[-1] == pytest.approx(1 / 3)
    # lift stage: the grasped object (grasp keypoint) is the mover; closer to the lift target scores higher
    lifted = []
    for rise in (0.0, 0.07, 0.145):
        moved = cube + [0, 0, rise]
        uv, confidence = observe(reward, np.stack([moved, moved, lift_target]))
        lifted.append(tracker.step(2, uv, confidence, None)[0])
    assert np.all(np.diff(lifted) > 0) and lifted[-1] == pytest.approx(1.0) and lifted[0] > 2 / 3


def test_an_unseen_target_keeps_its_last_position_and_never_seen_is_no_closeness(reward):
    cube = np.array([0.0, 0.0, 0.83])
    tracker = _Tracker(reward)
    uv, confidence = observe(reward, np.stack([cube + [0, 0, 0.1], cube, cube + [0, 0, 0.145]]))
    hidden = {v: np.zeros(3) for v in confidence}
    phi, distance, _ = tracker.step(1, uv, hidden, None)
    assert phi == pytest.approx(1 / 3) and np.isnan(distance)  # stage credit only
    tracker.step(1, uv, confidence, None)
    phi, distance, _ = tracker.step(1, uv, hidden, None)
    assert distance == pytest.approx(0.1, abs=1e-6) and 1 / 3 < phi < 2 / 3


def test_protocol_offline_equals_online_and_reload(reward, tmp_path):
    assert isinstance(reward, RewardModel)
    rng = np.random.default_rng(0)
    images = {v: rng.integers(0, 256, (6, SIZE, SIZE, 3), dtype=np.uint8) for v in VIEWS}
    state = np.tile(np.array([0.0, 0.0, 1.0, 0, 0, 0, 1, 0.02, -0.02], dtype=np.float32), (6, 1))
    offline = reward.score_episode(images, "pick up the red cube and lift it", state)
    assert len(offline) == 6 and np.all((offline.progress >= 0) & (offline.progress <= 1))
    scorer = reward.stream("pick up the red cube and lift it")
    online = np.concatenate([scorer.step({v: f[t] for v, f in images.items()}, state[t]).progress for t in range(6)])
    np.testing.assert_allclose(online, offline.progress, atol=1e-5)
    details = reward.score_details(images, "pick up the red cube and lift it", state)
    np.testing.assert_allclose(offline.progress, 0.4 * details["progress"].progress + 0.6 * details["phi_kp"], atol=1e-6)

    reward.save(tmp_path / "kp_reward")
    assert json.loads((tmp_path / "kp_reward" / "config.json").read_text())["format"] == "headway.keypoint_reward"
    loaded = load_reward_model(tmp_path / "kp_reward", device="cpu")
    assert isinstance(loaded, KeypointRewardModel)
    np.testing.assert_allclose(loaded.score_episode(images, "pick up the red cube and lift it", state).progress, offline.progress, atol=1e-6)


def test_keypoints_are_triangulated_in_the_calibrated_pixels_whatever_size_the_frames_arrive_at(reward, monkeypatch):
    """Frames at twice the calibrated size (RL renders at the progress model's size) give the same 3D points."""
    from headway.geometry import rescale_pixels
    from headway.perception.keypoint_model import KeypointPrediction

    cameras = {v: {**c, "image_size": [SIZE, SIZE]} for v, c in CAMERAS.items()}
    model = build_keypoint_reward(reward.keypoints, reward.progress, cameras)
    cube = np.array([0.02, -0.01, 0.83])
    truth = np.stack([cube + [0, 0, 0.05], cube, cube + [0, 0, 0.145]])

    def detector(frames, view, batch_size=128, output_size=None):  # a perfect keypoint model, pixels as asked
        uv = rescale_pixels(model.cameras[view].project(truth)[0], (SIZE, SIZE), output_size or frames.shape[1:3])
        return KeypointPrediction(np.repeat(uv[None], len(frames), 0), np.ones((len(frames), len(truth))))

    monkeypatch.setattr(model.keypoints, "predict", detector)
    state = np.tile(np.concatenate([truth[0], np.zeros(6)]), (3, 1))
    for size in (SIZE, 2 * SIZE, 84):
        images = {v: np.zeros((3, size, size, 3), np.uint8) for v in VIEWS}
        details = model.score_details(images, "pick up the red cube and lift it", state)
        np.testing.assert_allclose(details["points"][-1], truth, atol=1e-6)
    old = build_keypoint_reward(reward.keypoints, reward.progress, CAMERAS)  # no recorded size: frames taken as calibrated
    monkeypatch.setattr(old.keypoints, "predict", detector)
    details = old.score_details({v: np.zeros((3, 2 * SIZE, 2 * SIZE, 3), np.uint8) for v in VIEWS}, "lift", state)
    assert np.abs(details["points"][-1] - truth).max() > 0.05
    with pytest.raises(HeadwayError, match="image_size"):
        build_keypoint_reward(reward.keypoints, reward.progress, {**cameras, "sideview": {**cameras["sideview"], "image_size": [32]}})


def test_stage_targets_come_from_the_keypoint_model_or_are_given_without_a_simulator(reward, monkeypatch):
    for name in ["headway.sim", *[m for m in sys.modules if m.startswith("headway.sim.")]]:
        monkeypatch.setitem(sys.modules, name, None)  # any import of headway.sim now fails
    assert build_keypoint_reward(reward.keypoints, reward.progress, CAMERAS).config.stage_targets == list(LIFT_TARGETS)
    # a user's own task: the targets given explicitly win over the model's
    given = build_keypoint_reward(reward.keypoints, reward.progress, CAMERAS, stage_targets="grasp,lift_target:gripper,lift_target:grasp")
    assert given.config.stage_targets == [("grasp", "gripper"), ("lift_target", "gripper"), ("lift_target", "grasp")]
    with pytest.raises(HeadwayError, match="3 stages but the keypoint reward names targets for 2"):
        build_keypoint_reward(reward.keypoints, reward.progress, CAMERAS, stage_targets="grasp,lift_target:grasp")
    with pytest.raises(HeadwayError, match="'handle' is not one of the keypoints"):
        build_keypoint_reward(reward.keypoints, reward.progress, CAMERAS, stage_targets="grasp,grasp,handle")


def test_a_keypoint_model_without_stage_targets_names_the_fix(reward, tmp_path):
    """Checkpoints trained before the targets were stored: retrain, or pass them explicitly."""
    reward.keypoints.save(tmp_path / "kp")
    meta = json.loads((tmp_path / "kp" / "config.json").read_text())
    del meta["model"]["stage_targets"]
    (tmp_path / "kp" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(HeadwayError, match=r"kp does not record each stage's target.*headway keypoints train.*--stage-targets TARGET:MOVER"):
        build_keypoint_reward(tmp_path / "kp", reward.progress, CAMERAS, device="cpu")
    built = build_keypoint_reward(tmp_path / "kp", reward.progress, CAMERAS, device="cpu", stage_targets=LIFT_TARGETS)
    assert built.config.stage_targets == list(LIFT_TARGETS)


def test_a_stage_is_credited_with_the_rise_of_the_steps_that_start_in_it():
    from headway.reward.fusion_report import rise_by_stage

    values = np.array([0.0, 0.1, 0.3, 0.35, 0.9, 0.8])
    stages = np.array([0, 0, 1, 1, 2, 2])  # the jump 0.35 -> 0.9 leaves stage 1, so it is stage 1's
    np.testing.assert_allclose(rise_by_stage(values, stages, 4), [0.3, 0.6, -0.1, 0.0])


def test_bad_input_is_named(reward, tmp_path):
    with pytest.raises(HeadwayError, match="sideview.*missing"):
        reward.score_episode({"agentview": np.zeros((2, SIZE, SIZE, 3), np.uint8)}, "lift")
    with pytest.raises(HeadwayError, match="weights"):
        build_keypoint_reward(reward.keypoints, reward.progress, CAMERAS, progress_weight=0, keypoint_weight=0)
    with pytest.raises(HeadwayError, match="sideview.*intrinsics"):
        build_keypoint_reward(reward.keypoints, reward.progress, {**CAMERAS, "sideview": {"intrinsics": None, "pose": np.eye(4).tolist()}})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text(json.dumps({"format": "headway.keypoint_reward", "format_version": 1, "reward": {}}))
    with pytest.raises(HeadwayError, match="keypoints/ sub-model"):
        load_reward_model(tmp_path / "broken")
