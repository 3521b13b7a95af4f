"""SARM targets from annotations, the stage prior, loud failures on bad labels, and the metrics."""

from __future__ import annotations

import numpy as np
import pytest

from headway.reward import metrics
from headway.reward.labels import LabelError, StagePrior, stage_targets
from headway.stages import Subtask

STAGES = ("reach", "grasp", "lift")


def test_targets_follow_sarms_rules():
    subtasks = [Subtask("reach", 2, 6), Subtask("grasp", 9, 10), Subtask("lift", 11, 13)]
    stage, tau = stage_targets(subtasks, 16, STAGES, episode=0)
    assert stage.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    np.testing.assert_allclose(tau[:2], 0.0)  # before the first subtask
    np.testing.assert_allclose(tau[2:7], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(tau[7:9], 1.0)  # the gap keeps the previous stage, complete
    np.testing.assert_allclose(tau[9:11], [0.0, 1.0])
    np.testing.assert_allclose(tau[13:], 1.0)  # after the last subtask


def test_an_unfinished_episodes_tail_is_the_next_stage_not_started_with_unchanged_progress():
    prior = StagePrior(STAGES, (0.5, 0.2, 0.3))
    stage, tau = stage_targets([Subtask("reach", 0, 3), Subtask("grasp", 4, 5)], 9, STAGES, episode=0)
    assert stage.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2]
    np.testing.assert_allclose(tau[6:], 0.0)
    np.testing.assert_allclose(prior.progress(stage, tau)[5:], 0.7)


def test_a_tail_follows_the_recorded_scene_down_never_up():
    subtasks = [Subtask("reach", 0, 3), Subtask("grasp", 4, 5)]
    # the scene: reached and grasped, then the cube is dropped (back to reach, partly), later
    # the scene claims more than was achieved (lift half done) -- that must not raise the label
    scene_stage = np.array([0, 0, 0, 1, 1, 2, 0, 0, 2, 2])
    scene_tau = np.array([0, 0.3, 0.6, 0, 0.5, 0, 0.4, 0.2, 0.5, 0.0])
    stage, tau = stage_targets(subtasks, 10, STAGES, episode=0, scene=(scene_stage, scene_tau))
    assert stage.tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 2, 2], "annotated frames keep SARM's targets"
    np.testing.assert_allclose(tau[6:], [0.4, 0.2, 0.0, 0.0])
    finished = [Subtask("reach", 0, 3), Subtask("grasp", 4, 5), Subtask("lift", 6, 9)]
    assert stage_targets(finished, 10, STAGES, 0, scene=(scene_stage, scene_tau))[0].tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    with pytest.raises(LabelError, match="episode 4.*9 frames, the episode 10"):
        stage_targets(subtasks, 10, STAGES, 4, scene=(scene_stage[:9], scene_tau[:9]))
    with pytest.raises(LabelError, match="episode 4.*outside"):
        stage_targets(subtasks, 10, STAGES, 4, scene=(scene_stage + 3, scene_tau))


def test_prior_gives_piecewise_linear_progress_and_inverts():
    prior = StagePrior(STAGES, (0.5, 0.2, 0.3))
    np.testing.assert_allclose(prior.cumulative, [0, 0.5, 0.7, 1.0])
    progress = prior.progress(np.array([0, 1, 2, 2]), np.array([0.5, 0.5, 0.0, 1.0]))
    np.testing.assert_allclose(progress, [0.25, 0.6, 0.7, 1.0], atol=1e-6)
    stage, tau = prior.stage_and_tau(np.array([0.25, 0.6, 0.85]))
    assert stage.tolist() == [0, 1, 2]
    np.testing.assert_allclose(tau, [0.5, 0.5, 0.5], atol=1e-6)


def test_an_empty_annotation_means_nothing_achieved():
    stage, tau = stage_targets([], 5, STAGES, episode=3)
    assert stage.tolist() == [0] * 5 and tau.tolist() == [0.0] * 5


@pytest.mark.parametrize(
    "subtasks, message",
    [
        (None, "episode 7 has no stage annotations"),
        ([Subtask("reach", 0, float("nan"))], "episode 7.*NaN"),
        ([Subtask("reach", 0, 30)], "episode 7.*outside the episode"),
        ([Subtask("reach", 5, 2)], "episode 7.*before it starts"),
        ([Subtask("reach", 0, 5), Subtask("grasp", 5, 8)], "episode 7.*overlapping"),
        ([Subtask("grasp", 0, 5), Subtask("reach", 6, 8)], "episode 7.*out of task order"),
        ([Subtask("dance", 0, 5)], "episode 7.*not one of the task's stages"),
    ],
)
def test_bad_annotations_are_rejected_with_the_episode_named(subtasks, message):
    with pytest.raises(LabelError, match=message):
        stage_targets(subtasks, 20, STAGES, episode=7)


def test_missing_annotations_train_only_when_linear_targets_are_asked_for():
    prior = StagePrior(STAGES, (0.5, 0.2, 0.3))
    stage, tau = stage_targets(None, 11, STAGES, episode=0, prior=prior, linear_if_missing=True)
    np.testing.assert_allclose(prior.progress(stage, tau), np.linspace(0, 1, 11), atol=1e-6)


def test_empty_episode_is_rejected():
    with pytest.raises(LabelError, match="empty"):
        stage_targets([], 0, STAGES, episode=2)


def test_metrics_on_known_cases():
    assert metrics.value_order_correlation(np.arange(10)) == pytest.approx(1.0)
    assert metrics.value_order_correlation(np.arange(10)[::-1]) == pytest.approx(-1.0)
    assert metrics.value_order_correlation(np.ones(10)) == 0.0
    assert metrics.kendall_tau_a([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert metrics.kendall_tau_a([1, 1, 1], [10, 20, 30]) == 0.0  # ties in the prediction earn nothing
    assert metrics.kendall_tau_a([3, 2, 1], [10, 20, 30]) == pytest.approx(-1.0)
    assert metrics.auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == pytest.approx(1.0)
    assert metrics.auroc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert metrics.f1_score([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert metrics.succ_fail_gap([1.0, 0.9, 0.2], [True, True, False]) == pytest.approx(0.75)


def test_success_targets_come_from_the_recorded_signal_or_the_annotations():
    from headway.reward.training_data import episode_success_targets

    subtasks = [Subtask("reach", 0, 3), Subtask("grasp", 4, 5), Subtask("lift", 6, 8)]
    recorded = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1], dtype=bool)  # success after action t (flickers once)
    assert episode_success_targets(subtasks, 10, 3, True, recorded).tolist() == [0] * 7 + [1] * 3
    assert episode_success_targets(subtasks, 10, 3, True, None).tolist() == [0] * 8 + [1] * 2
    assert episode_success_targets(subtasks[:2], 10, 3, None, None).sum() == 0
    assert episode_success_targets(subtasks, 10, 3, False, recorded).sum() == 0


def test_baselines_include_the_annotation_ceiling_which_scores_perfectly_on_its_own_targets():
    from headway.reward.evaluate import TARGETS_ROW, ScoredEpisode, baseline_outputs, compute_metrics
    from headway.reward.interface import RewardOutput

    prior = StagePrior(STAGES, (0.5, 0.2, 0.3))
    episodes = []
    for index, subtasks in enumerate([[Subtask("reach", 0, 3), Subtask("grasp", 4, 5), Subtask("lift", 6, 8)], [Subtask("reach", 0, 5)]]):
        stage, tau = stage_targets(subtasks, 10, STAGES, index)
        noise = RewardOutput(np.full(10, 0.5, np.float32), np.zeros(10, np.int64), np.full((10, 3), 1 / 3, np.float32), np.zeros(10, np.float32), np.zeros(10, np.float32))
        episodes.append(ScoredEpisode(index, "expert" if index == 0 else "fail", index == 0, 1.0 - index, noise, stage, prior.progress(stage, tau)))
    ceiling = compute_metrics(baseline_outputs(episodes, prior)[TARGETS_ROW], horizon=10)
    assert ceiling["stage_accuracy"] == 1.0 and ceiling["progress_mae"] == 0.0
    assert ceiling["succ_fail_gap"] == pytest.approx(1.0 - 0.5)
    assert compute_metrics(episodes, horizon=10)["progress_mae"] > 0.1
