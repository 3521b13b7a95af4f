"""Robustness report, shifted scoring, window-consistent appearance augmentations, training record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from headway.errors import HeadwayError
from headway.perception.preprocess import color_jitter, random_rotate_crop
from headway.reward.interface import RewardOutput
from headway.reward.robustness import ShiftedModel, check_targets, conditions_from


class FakeModel:
    views = ("agentview",)
    stage_names = ("a", "b")
    image_size = 16

    def __init__(self):
        self.calls = []

    def score_episode(self, images, task, state=None, batch_size=256):
        frames = images["agentview"]
        self.calls.append((task, frames.shape))
        length = len(frames)
        progress = np.arange(length, dtype=np.float32) / 10
        return RewardOutput(progress, np.zeros(length, np.int64), np.ones((length, 2), np.float32) / 2, progress, progress * 0)


def test_shifted_model_rewords_subsamples_and_holds_outputs():
    model = FakeModel()  # no frame rate of its own: a lower-rate recording is scored as it comes
    frames = {"agentview": np.zeros((7, 16, 16, 3), np.uint8)}
    out = ShiftedModel(model, task_text="pick the cube up", fps=10).score_recorded(frames, "original", fps=30)
    assert model.calls[-1] == ("pick the cube up", (3, 16, 16, 3))  # frames 0, 3, 6
    np.testing.assert_allclose(out.progress, [0, 0, 0, 0.1, 0.1, 0.1, 0.2])
    assert len(out) == 7 and out.stage_probs.shape == (7, 2)
    ShiftedModel(model, size=8).score_episode(frames, "original")
    assert model.calls[-1] == ("original", (7, 16, 16, 3))  # resampled through 8 px, back at the model's size


def test_bad_report_conditions_are_refused(tmp_path):
    with pytest.raises(HeadwayError, match="between 1 and 240"):
        conditions_from([tmp_path], frame_rates=[0.5])
    with pytest.raises(HeadwayError, match="one per --dataset"):
        conditions_from([tmp_path, tmp_path], labels=["only one"])
    with pytest.raises(HeadwayError, match="between 8 and 1024"):
        conditions_from([tmp_path], sizes=[4])
    rows = conditions_from([tmp_path / "a", tmp_path / "b"], wordings=["lift it"], frame_rates=[10], sizes=[64])
    assert [r.label for r in rows] == ["a", "b", "a / task: 'lift it'", "a / 10 fps", "a / 64 px"]


def test_targets_are_checked_against_issue_26():
    nominal = {"stage_accuracy": 0.95, "progress_mae": 0.03, "success_auroc": 1.0, "kendall_tau": 0.8, "succ_fail_gap": 0.8}
    assert check_targets(nominal, nominal)["all"] is True
    shifted = dict(nominal, succ_fail_gap=0.7, progress_mae=0.06)
    checks = check_targets(shifted, nominal)
    assert checks["succ_fail_gap"] is False and checks["progress_mae"] is False and checks["all"] is False
    assert check_targets(dict(nominal, kendall_tau=float("nan")), nominal)["all"] is None


def test_appearance_augmentations_are_shared_within_a_group():
    torch.manual_seed(0)
    base = torch.rand(1, 3, 12, 12)
    images = base.repeat(6, 1, 1, 1)
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    for augmented in (
        color_jitter(images, 0.4, groups),
        random_rotate_crop(images, 10.0, 0.2, groups),
    ):
        assert torch.allclose(augmented[0], augmented[1]) and torch.allclose(augmented[1], augmented[2])
        assert torch.allclose(augmented[3], augmented[5])
        assert not torch.allclose(augmented[0], augmented[3])
        assert augmented.min() >= 0 and augmented.max() <= 1
    assert torch.equal(color_jitter(images, 0.0, groups), images)
    assert torch.equal(random_rotate_crop(images, 0.0, 0.0, groups), images)
    # no rotation and no crop leaves the image as it was (up to interpolation)
    assert torch.allclose(random_rotate_crop(images, 1e-6, 1e-9, groups), images, atol=1e-4)


def test_bad_augmentation_settings_are_refused(tmp_path):
    from headway.reward.train import TrainConfig

    for settings, message in [
        ({"color_jitter": 1.5}, "color_jitter"), ({"rotate_degrees": 45}, "rotate_degrees"),
        ({"crop_scale": -0.1}, "crop_scale"), ({"paraphrase_prob": 2}, "paraphrase_prob"), ({"task_text": " "}, "task-text"),
    ]:
        with pytest.raises(HeadwayError, match=message):
            TrainConfig(datasets=[tmp_path], out=tmp_path / "m", **settings)


def test_paraphrases_are_never_negatives():
    from headway.reward.task_text import paraphrases
    from headway.reward.training_data import EpisodeData, SegmentSampler

    task = "pick up the red cube and lift it"
    episode = EpisodeData(
        task, torch.zeros(30, 1, 3, 8, 8, dtype=torch.uint8), torch.tensor([True]),
        np.zeros(30, np.int64), np.zeros(30, np.float32), np.zeros(30, np.float32), np.zeros(30, np.float32),
    )
    sampler = SegmentSampler([episode], window=4, fps=20, segment=8, mismatch_prob=0.3, paraphrase_prob=0.5, seed=1)
    seen_matched, seen_negative = set(), set()
    for _ in range(40):
        batch = sampler.sample(2)
        for text, matched in zip(batch.tasks, batch.matched.tolist()):
            (seen_matched if matched else seen_negative).add(text)
    assert seen_matched - {task} and seen_matched <= {task, *paraphrases(task)}
    assert not seen_negative & set(paraphrases(task)) and task not in seen_negative


def test_robustness_report_end_to_end_on_tiny_data(tiny_dataset, tmp_path, capsys):
    from headway.cli import main

    model = tmp_path / "model"
    assert main([
        "reward", "train", "--dataset", str(tiny_dataset), "--dataset", str(tiny_dataset), "--out", str(model),
        "--size", "32", "--steps", "2", "--color-jitter", "0.3", "--rotate", "5", "--crop-scale", "0.1",
        "--paraphrase-prob", "0.3", "--task-text", "pick up the red cube and lift it",
    ]) == 0
    record = json.loads((model / "training.json").read_text())
    assert [d["path"] for d in record["datasets"]] == [str(tiny_dataset)] * 2
    assert record["augmentations"]["color_jitter"] == 0.3 and record["augmentations"]["rotate_degrees"] == 5
    assert record["datasets"][0]["randomization"] == {} and record["steps"] == 2
    capsys.readouterr()

    prefix = tmp_path / "report" / "robust"
    assert main([
        "reward", "eval", "--model", str(model), "--dataset", str(tiny_dataset), "--dataset", str(tiny_dataset),
        "--label", "nominal", "--label", "same again", "--wording", "pick the cube up", "--fps", "10",
        "--speed", "2", "--shift-size", "24", "--report", str(prefix),
    ]) == 0
    printed = capsys.readouterr().out
    assert "nominal" in printed and "same again" in printed and "pick the cube up" in printed
    report = json.loads(prefix.with_suffix(".json").read_text())
    labels = [row["label"] for row in report["rows"]]
    assert labels == ["nominal", "same again", "nominal / task: 'pick the cube up'", "nominal / 10 fps",
                      "nominal / robot 2x as fast", "nominal / 24 px"]
    same = report["rows"][1]
    assert all(abs(v) < 1e-9 for v in same["change"].values() if np.isfinite(v))
    assert "linear-in-time" in same["baselines"] and "robosuite dense reward" in same["baselines"]
    assert prefix.with_suffix(".png").stat().st_size > 0
    assert prefix.with_suffix(".md").read_text().startswith("| condition |")
