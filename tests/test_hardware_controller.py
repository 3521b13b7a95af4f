"""The rollout controller end to end: episodes end by themselves, every fault ends held with a valid dataset, resume keeps episodes."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
from test_hardware_fakes import SIZE, FakeArm, FakePolicy, ScriptedRewardModel, tiny_reward_model

from headway.errors import HeadwayError
from headway.hardware.controller import RolloutConfig, RolloutController
from headway.hardware.safety import REASONS, SafetyConfig
from headway.run_dir import partial_dir

INSTRUCTION = "pick up the red cube and lift it"


def config(tmp_path, **overrides) -> RolloutConfig:
    settings = dict(
        robot="sim:lift",
        record=tmp_path / "rec",
        episodes=2,
        fps=50.0,
        max_seconds=0.6,
        stall_seconds=10.0,
        reset="auto",
        video=False,
        progress=False,
        safety=SafetyConfig(watchdog_timeout=2.0, watchdog_grace=0.0),
    )
    settings.update(overrides)
    return RolloutConfig(**settings)


def load(root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset("headway/rollout_lift", root=root, video_backend="pyav")


def scalar(value) -> int:
    return int(np.asarray(value).reshape(-1)[0])


def episodes_meta(root) -> pd.DataFrame:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files]).sort_values("episode_index")


def assert_held_and_closed(arm: FakeArm) -> None:
    command, measured = arm.received[-1]
    np.testing.assert_allclose(command[:3], measured[:3], atol=1e-6)  # the last command held the joints
    assert not arm.connected and arm.disconnects == arm.connects


def test_episodes_end_on_success_and_are_recorded_with_the_action_sent(tmp_path):
    arm = FakeArm()
    summary = RolloutController(arm, FakePolicy(), ScriptedRewardModel(success_at=5), config(tmp_path), INSTRUCTION).run()
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0 and summary["complete"]
    assert summary["outcomes"] == {"success": 2}
    assert summary["interventions"]["step"] > 0  # the policy asks for 1.5 rad at once
    assert summary["loop"]["ticks"] > 0 and summary["loop"]["mean_period_ms"] > 0
    dataset = load(tmp_path / "rec")
    assert dataset.num_episodes == 2 and len(dataset) == 2 * 7  # success at step 5, held for 3 steps
    frame = dataset[3]
    for key in ("reward.progress", "reward.stage", "reward.success", "safety.interventions", "safety.reasons", "action"):
        assert key in frame
    assert tuple(frame["observation.images.agentview"].shape) == (3, SIZE, SIZE)
    sent = np.stack([command for command, _ in arm.received])
    actions = np.stack(dataset.hf_dataset["action"])
    # every recorded action is one the arm received: the policy's 1.5 limited to 1 rad/s (0.02 per step at 50 Hz)
    np.testing.assert_allclose(actions[:7, 0], 0.02 * np.arange(1, 8), atol=1e-5)
    assert all(np.any(np.all(np.isclose(sent, a, atol=1e-5), axis=1)) for a in actions)
    progress = np.array([dataset.hf_dataset[i]["reward.progress"] for i in range(7)]).ravel()
    np.testing.assert_allclose(progress, 0.05 * np.arange(1, 8), atol=1e-6)
    assert scalar(dataset.hf_dataset[0]["safety.reasons"]) & REASONS["step"]
    meta = episodes_meta(tmp_path / "rec")
    assert list(meta["headway_outcome"]) == ["success", "success"] and meta["headway_success"].all()
    assert not partial_dir(tmp_path / "rec").exists()
    assert_held_and_closed(arm)


def test_stalled_progress_is_a_failure_and_the_time_limit_ends_episodes(tmp_path):
    stalled = RolloutController(
        FakeArm(), FakePolicy(), ScriptedRewardModel(stall_at=3), config(tmp_path / "a", episodes=1, stall_seconds=0.1), INSTRUCTION
    ).run()
    assert stalled["outcomes"] == {"failure": 1} and stalled["mean_final_progress"] == pytest.approx(0.15)
    timed = RolloutController(FakeArm(), FakePolicy(), ScriptedRewardModel(), config(tmp_path / "b", episodes=1), INSTRUCTION).run()
    assert timed["outcomes"] == {"timeout": 1} and len(load(tmp_path / "b" / "rec")) == 30  # 0.6 s at 50 Hz


def test_watchdog_ends_the_episode_when_the_policy_stalls(tmp_path):
    arm = FakeArm()
    policy = FakePolicy(fault_step=3, fault=lambda: time.sleep(0.8))
    cfg = config(tmp_path, episodes=1, safety=SafetyConfig(watchdog_timeout=0.15, watchdog_grace=0.0))
    summary = RolloutController(arm, policy, ScriptedRewardModel(), cfg, INSTRUCTION).run()
    assert summary["outcomes"] == {"watchdog": 1} and summary["interventions"]["watchdog"] == 1
    stalled_policy_action = [c for c, _ in arm.received if c[0] > 0.11]
    assert not stalled_policy_action
    assert_held_and_closed(arm)
    assert scalar(load(tmp_path / "rec").hf_dataset[2]["safety.reasons"]) & REASONS["watchdog"]


def test_a_dead_camera_stops_the_session_safely(tmp_path):
    arm = FakeArm()
    policy = FakePolicy(fault_step=4, fault=lambda: arm.cameras["agentview"].kill())
    summary = RolloutController(arm, policy, ScriptedRewardModel(), config(tmp_path, episodes=3), INSTRUCTION).run()
    assert summary["outcomes"] == {"camera": 1} and "dead" in summary["stopped"] and not summary["complete"]
    assert len(load(tmp_path / "rec")) == 4  # the frames recorded before the camera died
    assert_held_and_closed(arm)


def test_a_stale_camera_stops_the_episode(tmp_path):
    arm = FakeArm()

    def hang():
        for camera in arm.cameras.values():
            camera.max_age = 0.05
        arm.cameras["robot0_eye_in_hand"].hang()
        time.sleep(0.1)

    summary = RolloutController(arm, FakePolicy(fault_step=2, fault=hang), ScriptedRewardModel(), config(tmp_path, episodes=1), INSTRUCTION).run()
    assert summary["outcomes"] == {"camera": 1} and "stale" in summary["stopped"]
    assert_held_and_closed(arm)


def _explode():
    raise RuntimeError("policy exploded")


@pytest.mark.parametrize("where", ["policy", "reward model"])
def test_an_exception_ends_held_with_a_closed_valid_dataset(tmp_path, where):
    arm = FakeArm()
    policy = FakePolicy(fault_step=5, fault=_explode) if where == "policy" else FakePolicy()
    model = ScriptedRewardModel(fault_step=5 if where == "reward model" else None)
    with pytest.raises(RuntimeError, match="exploded"):
        RolloutController(arm, policy, model, config(tmp_path), INSTRUCTION).run()
    assert_held_and_closed(arm)
    dataset = load(tmp_path / "rec")
    assert dataset.num_episodes == 1 and len(dataset) == 4
    assert list(episodes_meta(tmp_path / "rec")["headway_outcome"]) == ["error"]


def test_a_signal_during_an_episode_is_an_emergency_stop(tmp_path):
    arm = FakeArm()
    handler_before = signal.getsignal(signal.SIGINT)  # the default, or ignored under nohup
    policy = FakePolicy(fault_step=3, fault=lambda: os.kill(os.getpid(), signal.SIGINT))
    summary = RolloutController(arm, policy, ScriptedRewardModel(), config(tmp_path, episodes=2), INSTRUCTION).run()
    assert summary["stopped"] == "signal SIGINT" and summary["outcomes"] == {"estop": 1}
    assert_held_and_closed(arm)
    assert signal.getsignal(signal.SIGINT) is handler_before


def test_crash_then_resume_keeps_finished_episodes(tmp_path):
    cfg = config(tmp_path, episodes=3)
    crashing = FakePolicy(fault_step=4, fault=_explode, on_episode=1)
    with pytest.raises(RuntimeError):
        RolloutController(FakeArm(), crashing, ScriptedRewardModel(success_at=3), cfg, INSTRUCTION).run()
    assert partial_dir(cfg.record).exists() and load(cfg.record).num_episodes == 2
    first = np.stack(load(cfg.record).hf_dataset.filter(lambda r: r["episode_index"] == 0)["action"])
    with pytest.raises(HeadwayError, match="--resume"):
        RolloutController(FakeArm(), FakePolicy(), ScriptedRewardModel(success_at=3), cfg, INSTRUCTION).run()
    arm = FakeArm()
    cfg.resume = True
    summary = RolloutController(arm, FakePolicy(), ScriptedRewardModel(success_at=3), cfg, INSTRUCTION).run()
    assert summary["episodes"] == 3 and summary["complete"] and summary["outcomes"] == {"success": 3}
    assert arm.resets == 2  # only the interrupted episode and the missing one ran again
    dataset = load(cfg.record)
    np.testing.assert_array_equal(np.stack(dataset.hf_dataset.filter(lambda r: r["episode_index"] == 0)["action"]), first)
    assert not partial_dir(cfg.record).exists()
    kept = RolloutController(FakeArm(), FakePolicy(), ScriptedRewardModel(success_at=3), cfg, INSTRUCTION).run()
    assert kept["kept"] and kept["episodes"] == 3  # --resume on a finished session keeps it
    with pytest.raises(HeadwayError, match="--overwrite"):
        RolloutController(FakeArm(), FakePolicy(), ScriptedRewardModel(), config(tmp_path, episodes=3), INSTRUCTION).run()


def test_the_real_reward_model_runs_in_the_loop(tmp_path):
    model = tiny_reward_model()
    summary = RolloutController(FakeArm(), FakePolicy(), model, config(tmp_path, episodes=1, success_threshold=0.99), INSTRUCTION).run()
    progress = np.array(load(tmp_path / "rec").hf_dataset["reward.progress"]).ravel()
    assert summary["episodes"] == 1 and np.all((progress >= 0) & (progress <= 1))
    from headway.datasets.reader import DatasetReader

    recorded = DatasetReader(tmp_path / "rec").episode(0, model.views)
    offline = model.score_episode(recorded.images, INSTRUCTION)
    np.testing.assert_allclose(offline.progress, progress, atol=0.05)  # live scores = offline scores of the recording
