"""Scoring episodes recorded at another frame rate than the model's (headway/reward/frame_rate.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from test_reward_model import build_model

from headway.reward.frame_rate import resample_indices, score_recorded, stream_at_rate
from headway.reward.interface import RewardOutput
from headway.reward.robustness import ShiftedModel, conditions_from


class RateModel:
    """Scores frame k with the value written into its first pixel, and records what it was shown."""

    views = ("agentview",)
    stage_names = ("a", "b")
    image_size = 4

    def __init__(self, fps: float | None = 20.0):
        self.config = SimpleNamespace(fps=fps)
        self.shown = []

    def score_episode(self, images, task, state=None, batch_size=256):
        values = images["agentview"][:, 0, 0, 0].astype(np.float32)
        self.shown.append(values.astype(int).tolist())
        return RewardOutput.progress_only(values)


def frames(length: int) -> dict[str, np.ndarray]:
    images = np.zeros((length, 4, 4, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(length)
    return {"agentview": images}


@pytest.mark.parametrize("source, target", [(10, 20), (30, 20), (15, 20), (20, 20), (20, 7)])
def test_resampling_is_causal_and_takes_the_latest_frame(source, target):
    length = 37
    picks, held = resample_indices(length, source, target)
    source_times, target_times = np.arange(length) / source, np.arange(len(picks)) / target
    assert np.all(np.diff(picks) >= 0) and np.all(np.diff(held) >= 0)
    assert np.all(source_times[picks] <= target_times + 1e-9)  # never a frame from the future
    later = np.minimum(picks + 1, length - 1)
    assert np.all((later == picks) | (source_times[later] > target_times + 1e-9))  # and the latest one
    assert np.all(target_times[held] <= source_times + 1e-9)
    assert target_times[-1] <= source_times[-1] + 1e-9 and len(picks) == int(np.floor((length - 1) * target / source + 1e-9)) + 1


def test_a_recording_at_another_rate_is_shown_at_the_models_rate():
    model = RateModel(fps=20)
    out = score_recorded(model, frames(5), "lift", fps=10)  # 10 fps: each frame stands for two model frames
    assert model.shown[-1] == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    np.testing.assert_array_equal(out.progress, [0, 1, 2, 3, 4])  # every recorded frame keeps its own score
    out = score_recorded(model, frames(7), "lift", fps=30)
    assert model.shown[-1] == [0, 1, 3, 4, 6]  # 0, 1/20, 2/20 ... s: the latest 30 fps frame at each
    np.testing.assert_array_equal(out.progress, [0, 0, 1, 3, 3, 4, 6])  # the latest model frame at or before each
    score_recorded(model, frames(5), "lift", fps=20)
    assert model.shown[-1] == [0, 1, 2, 3, 4]
    rateless = RateModel(fps=None)  # zero-shot models have no rate: frames as given
    score_recorded(rateless, frames(5), "lift", fps=10)
    assert rateless.shown[-1] == [0, 1, 2, 3, 4]


def test_a_frame_rate_shift_is_undone_and_a_speed_shift_is_not():
    model = RateModel(fps=20)
    out = ShiftedModel(model, fps=10).score_recorded(frames(6), "lift", fps=20)
    assert model.shown[-1] == [0, 0, 2, 2, 4]  # recorded at 10 fps, seen at 20
    np.testing.assert_array_equal(out.progress, [0, 0, 2, 2, 4, 4])
    out = ShiftedModel(model, speed=2.0).score_recorded(frames(6), "lift", fps=20)
    assert model.shown[-1] == [0, 2, 4]  # the robot twice as fast at the same rate: nothing undoes it
    np.testing.assert_array_equal(out.progress, [0, 0, 2, 2, 4, 4])
    out = ShiftedModel(model, speed=0.5).score_recorded(frames(3), "lift", fps=20)
    assert model.shown[-1] == [0, 0, 1, 1, 2]
    np.testing.assert_array_equal(out.progress, [0, 1, 2])
    with pytest.raises(Exception, match="not both"):
        ShiftedModel(model, fps=10, speed=2.0)


def test_speed_conditions_are_named_and_checked(tmp_path):
    rows = conditions_from([tmp_path / "a"], speeds=[0.5, 1.5])
    assert [(r.label, r.speed) for r in rows[1:]] == [("a / robot 0.5x as fast", 0.5), ("a / robot 1.5x as fast", 1.5)]
    for bad in (1.0, 0.1, 6.0):
        with pytest.raises(Exception, match="--speed"):
            conditions_from([tmp_path], speeds=[bad])


@pytest.mark.parametrize("fps", [30, 40, 60])
def test_a_faster_recording_of_the_same_frames_scores_exactly_as_the_original(fps):
    model = RateModel(fps=20)
    out = ShiftedModel(model, fps=fps).score_recorded(frames(49), "lift", fps=20)  # 2.4 s, a whole number of frames at each rate
    assert model.shown[-1] == list(range(49))  # the model is shown the recording it was trained on
    np.testing.assert_array_equal(out.progress, np.arange(49))


@pytest.mark.parametrize("fps", [10, 15, 20, 30])
def test_a_live_loop_at_another_rate_scores_as_its_recording(fps):
    model = build_model(stride=3)  # a tiny stage model at 20 fps
    rng = np.random.default_rng(fps)
    images = {v: rng.integers(0, 255, (17, model.image_size, model.image_size, 3), dtype=np.uint8) for v in model.views}
    offline = score_recorded(model, images, "lift", fps=fps)
    scorer = stream_at_rate(model, "lift", fps)
    for repeat in range(2):  # and again after a reset
        scorer.reset()
        live = [scorer.step({v: f[t] for v, f in images.items()}) for t in range(17)]
        np.testing.assert_allclose([o.progress[0] for o in live], offline.progress, atol=1e-5)
        np.testing.assert_allclose(np.stack([o.stage_probs[0] for o in live]), offline.stage_probs, atol=1e-5)
