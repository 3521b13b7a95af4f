"""headway labels drive lerobot's own trainer: `lerobot-train --sample_weighting.type=rabc
--sample_weighting.progress_path=<labels>/sarm_progress.parquet` on a headway dataset."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from headway.cli import main

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def labels(tiny_dataset, tmp_path_factory) -> Path:
    import torch

    from headway.reward.stage_model import StageModelConfig, StageRewardNet
    from headway.reward.stage_reward import StageRewardModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("rabc")
    config = StageModelConfig(views=("agentview", "robot0_eye_in_hand"), stage_names=("reach", "grasp", "lift"),
                              stage_proportions=(0.5, 0.2, 0.3), image_size=32, dim=32, window=4, ensemble=2)
    StageRewardModel(StageRewardNet(config), device="cpu").save(folder / "model")
    assert main(["label", "--dataset", str(tiny_dataset), "--model", str(folder / "model"), "--out", str(folder / "labels"),
                 "--chunk-size", "4"]) == 0
    return folder / "labels"


def test_lerobot_train_applies_headway_rabc_weights(tiny_dataset, labels, tmp_path):
    command = [
        str(Path(sys.executable).parent / "lerobot-train"),
        "--policy.discover_packages_path=rabc_test_policy", "--policy.type=rabc_test_mlp", "--policy.chunk_size=4",
        "--policy.device=cpu", "--policy.push_to_hub=false",
        "--dataset.repo_id=headway/lift", f"--dataset.root={tiny_dataset}", "--dataset.video_backend=pyav",
        "--batch_size=8", "--steps=4", "--log_freq=1", "--save_checkpoint=false", "--num_workers=0",
        "--wandb.enable=false", f"--output_dir={tmp_path / 'train'}",
        "--sample_weighting.type=rabc", f"--sample_weighting.progress_path={labels / 'sarm_progress.parquet'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    card = json.loads((labels / "labels.json").read_text())
    frames = card["frames"]
    loaded = re.search(r"Loaded (\d+) frame progress values", log)
    assert loaded and int(loaded.group(1)) == frames, log[-3000:]
    assert "Chunk size for delta computation: 4" in log
    # the trainer logs the weights' batch statistics with every step's losses: RA-BC weights in [0, 1]
    means = [float(m) for m in re.findall(r"sample_weight_mean_weight[:=]\s*([0-9.]+)", log)]
    assert means and all(0.0 <= m <= 1.0 for m in means), log[-3000:]
