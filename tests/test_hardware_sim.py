"""`headway rollout` end to end on the simulated arm: scripted policy, live reward model, LeRobot dataset, preview video."""

from __future__ import annotations

import numpy as np
import pandas as pd
from test_hardware_fakes import SIZE, tiny_reward_model

from headway.cli import main
from headway.policy.scripted import ScriptedPolicy
from headway.hardware.sim_arm import sim_limits


def test_rollout_command_on_the_simulated_arm(tmp_path, capsys):
    import cv2
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    tiny_reward_model(tmp_path / "reward")
    ScriptedPolicy("lift").save(tmp_path / "policy")
    record = tmp_path / "rollouts"
    argv = [
        "rollout", "--robot", "sim:lift", "--policy", str(tmp_path / "policy"), "--reward", str(tmp_path / "reward"),
        "--episodes", "2", "--fps", "50", "--record", str(record), "--size", str(SIZE), "--max-seconds", "0.75",
        "--success-threshold", "0.99",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for line in ("success rate:", "mean final progress:", "loop at 50 Hz: period mean", "p99", "safety interventions:"):
        assert line in printed
    dataset = LeRobotDataset("headway/rollout_lift", root=record, video_backend="pyav")
    assert dataset.num_episodes == 2 and len(dataset) == 2 * 15  # 0.75 s of simulated time at 20 Hz each
    frame = dataset[5]
    assert tuple(frame["observation.images.robot0_eye_in_hand"].shape) == (3, SIZE, SIZE)
    actions = np.stack(dataset.hf_dataset["action"])
    limits = sim_limits()
    assert np.all(actions >= limits.low) and np.all(actions <= limits.high)
    assert np.any(np.abs(actions[:, :3]) > 0.1), "the scripted expert moves toward the cube"
    progress = np.asarray(dataset.hf_dataset["reward.progress"]).ravel()
    assert np.all((progress >= 0) & (progress <= 1))
    files = sorted((record / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    meta = pd.concat([pd.read_parquet(f) for f in files])
    assert set(meta["headway_outcome"]) == {"timeout"} and set(meta["headway_true_success"]) == {0}
    video = cv2.VideoCapture(str(record.with_name("rollouts.preview.mp4")))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 15
    video.release()
