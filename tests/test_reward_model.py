"""The stage-aware reward model: causal, offline == online, any view subset, save/load, bad input, training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from headway.errors import HeadwayError
from headway.reward.loading import load_reward_model
from headway.reward.interface import RewardModel
from headway.reward.stage_model import StageModelConfig, StageRewardNet
from headway.reward.stage_reward import StageRewardModel
from headway.reward.train import TrainConfig, train_reward_model

VIEWS = ("agentview", "robot0_eye_in_hand")
SIZE = 32


def build_model(stride: int = 1) -> StageRewardModel:
    torch.manual_seed(0)
    config = StageModelConfig(
        views=VIEWS, stage_names=("a", "b", "c"), stage_proportions=(0.5, 0.2, 0.3), image_size=SIZE, dim=32, window=4,
        stride=stride, ensemble=3,
    )
    return StageRewardModel(StageRewardNet(config), device="cpu")


@pytest.fixture(scope="module")
def model() -> StageRewardModel:
    return build_model()


@pytest.fixture(scope="module", params=[1, 3], ids=["stride1", "stride3"])
def any_stride_model(request) -> StageRewardModel:
    return build_model(request.param)


def episode(length: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v: rng.integers(0, 256, (length, SIZE, SIZE, 3), dtype=np.uint8) for v in VIEWS}


def test_implements_the_reward_model_protocol(model):
    assert isinstance(model, RewardModel)
    out = model.score_episode(episode(), "lift the cube")
    assert len(out) == 12 and out.stage_probs.shape == (12, 3)
    assert np.all((out.progress >= 0) & (out.progress <= 1)) and np.all((out.success >= 0) & (out.success <= 1))
    np.testing.assert_allclose(out.stage_probs.sum(1), 1.0, atol=1e-5)
    assert np.all(out.uncertainty > 0), "an ensemble of three heads disagrees a little"


def test_no_future_frame_changes_a_past_score(any_stride_model):
    model = any_stride_model
    frames = episode(16)
    changed = {v: f.copy() for v, f in frames.items()}
    for view in VIEWS:
        changed[view][9:] = 255 - changed[view][9:]
    before, after = model.score_episode(frames, "lift"), model.score_episode(changed, "lift")
    np.testing.assert_array_equal(before.progress[:9], after.progress[:9])
    assert not np.allclose(before.progress[9:], after.progress[9:])


def test_offline_and_online_scoring_agree(any_stride_model):
    model = any_stride_model
    frames = episode(14, seed=1)
    offline = model.score_episode(frames, "lift")
    scorer = model.stream("lift")
    online = [scorer.step({v: frames[v][t] for v in VIEWS}) for t in range(14)]
    for name in ("progress", "success", "uncertainty"):
        np.testing.assert_allclose(np.concatenate([getattr(o, name) for o in online]), getattr(offline, name), atol=1e-5)
    np.testing.assert_array_equal(np.concatenate([o.stage for o in online]), offline.stage)
    scorer.reset()
    np.testing.assert_allclose(scorer.step({v: frames[v][0] for v in VIEWS}).progress, offline.progress[:1], atol=1e-5)


def test_any_non_empty_subset_of_views_can_be_scored(model):
    frames = episode()
    both = model.score_episode(frames, "lift")
    only_wrist = model.score_episode({"robot0_eye_in_hand": frames["robot0_eye_in_hand"]}, "lift")
    assert len(only_wrist) == len(both) and not np.allclose(only_wrist.progress, both.progress)
    with pytest.raises(HeadwayError, match="no camera views"):
        model.score_episode({}, "lift")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: {**f, "frontview": f["agentview"]}, "valid view of this models: .*agentview"),
        (lambda f: {v: x.transpose(0, 3, 1, 2) for v, x in f.items()}, "channels-first"),
        (lambda f: {v: x[:, :16, :16] for v, x in f.items()}, "16x16 but the model takes 32x32"),
        (lambda f: {v: x.astype(np.float32) for v, x in f.items()}, "uint8"),
        (lambda f: {v: x[:0] for v, x in f.items()}, "empty"),
        (lambda f: {"agentview": f["agentview"], "robot0_eye_in_hand": f["robot0_eye_in_hand"][:5]}, "different frame counts"),
    ],
)
def test_bad_frames_are_clear_errors(model, mutate, message):
    with pytest.raises(HeadwayError, match=message):
        model.score_episode(mutate(episode()), "lift")


def test_nan_state_is_refused(model):
    state = np.zeros((12, 9))
    state[3, 2] = np.nan
    with pytest.raises(HeadwayError, match="NaN"):
        model.score_episode(episode(), "lift", state=state)


def test_save_and_load_round_trip(model, tmp_path):
    model.save(tmp_path / "ckpt")
    loaded = StageRewardModel.load(tmp_path / "ckpt", device="cpu")
    frames = episode()
    np.testing.assert_allclose(loaded.score_episode(frames, "lift").progress, model.score_episode(frames, "lift").progress, atol=1e-6)
    assert loaded.views == VIEWS and loaded.stage_names == ("a", "b", "c")


def test_loading_checks_format_version_and_files(model, tmp_path):
    path = tmp_path / "ckpt"
    model.save(path)
    meta = json.loads((path / "config.json").read_text())
    meta["format_version"] = 99
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(HeadwayError, match="format 99"):
        StageRewardModel.load(path)
    with pytest.raises(HeadwayError, match="not a headway stage-aware reward model checkpoint.*headway reward train"):
        StageRewardModel.load(tmp_path / "nothing")
    (path / "model.safetensors").write_bytes(b"not tensors")
    meta["format_version"] = 1
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(HeadwayError, match="cannot be read.*damaged"):
        StageRewardModel.load(path)
    with pytest.raises(HeadwayError, match="not a headway reward model checkpoint"):
        load_reward_model(tmp_path / "nothing")


def test_training_windows_are_spaced_as_at_inference():
    from headway.reward.stage_model import window_indices
    from headway.reward.training_data import EpisodeData, SegmentSampler

    length, stride, window = 40, 3, 4
    frames = torch.arange(length, dtype=torch.uint8)[:, None, None, None, None].expand(length, 1, 3, 2, 2)
    targets = np.arange(length)
    episode_data = EpisodeData("t", frames.contiguous(), torch.ones(1, dtype=torch.bool), targets, targets, targets, targets)
    sampler = SegmentSampler([episode_data], window, fps=10.0, stride=stride, segment=6, rewind_prob=0.0, mismatch_prob=0.0)
    for _ in range(20):
        batch = sampler.sample(3)
        frame_of_slot = batch.frames[:, 0, 0, 0, 0].long()[batch.windows]  # (P, W+1) episode frame per slot
        target_frame = torch.from_numpy(np.asarray(batch.stage))
        assert torch.equal(frame_of_slot[:, -1], target_frame), "the newest slot is the scored frame"
        expected, valid = window_indices(target_frame.numpy(), window, stride)
        assert np.array_equal(batch.valid.numpy(), valid)
        assert np.array_equal(np.where(valid, frame_of_slot.numpy(), 0), np.where(valid, expected, 0))
        np.testing.assert_allclose(batch.times.numpy()[valid], expected[valid] / 10.0, atol=1e-6)


def test_time_warp_shows_windows_at_other_robot_speeds():
    from headway.reward.training_data import EpisodeData, SegmentSampler

    length, stride, window = 60, 4, 4
    frames = torch.arange(length, dtype=torch.uint8)[:, None, None, None, None].expand(length, 1, 3, 2, 2)
    targets = np.arange(length)
    episode_data = EpisodeData("t", frames.contiguous(), torch.ones(1, dtype=torch.bool), targets, targets, targets, targets)

    def spacings(time_warp: float) -> set[int]:
        sampler = SegmentSampler([episode_data], window, fps=10.0, stride=stride, segment=6, rewind_prob=0.0, mismatch_prob=0.0,
                                 time_warp=time_warp)
        seen = set()
        for _ in range(40):
            batch = sampler.sample(2)
            frame_of_slot = batch.frames[:, 0, 0, 0, 0].long()[batch.windows].numpy()
            for row, valid in zip(frame_of_slot, batch.valid.numpy()):
                recent = row[1:][valid[1:]]
                steps = set(np.diff(recent).tolist())
                assert len(steps) <= 1, "one stride per window"
                seen |= steps
        return seen

    assert spacings(0.0) == {stride}
    warped = spacings(1.0)  # strides from 4 / 2 to 4 x 2
    assert warped <= set(range(2, 9)) and min(warped) <= 3 and max(warped) >= 6
    with pytest.raises(HeadwayError, match="time_warp"):
        TrainConfig(datasets=[Path("x")], out=Path("y"), time_warp=4.0)


def test_training_scores_an_episode_s_last_frames_about_as_often_as_the_rest():
    from headway.reward.training_data import EpisodeData, SegmentSampler

    for length in (3, 53, 150):  # shorter than the stride, a lift success, a failure's long tail
        frames = torch.zeros(length, 1, 3, 2, 2, dtype=torch.uint8)
        targets = np.arange(length)
        episode_data = EpisodeData("t", frames, torch.ones(1, dtype=torch.bool), targets, targets, targets, targets)
        sampler = SegmentSampler([episode_data], 8, fps=20.0, stride=5, segment=24, rewind_prob=0.0, mismatch_prob=0.0)
        counts = np.bincount(np.concatenate([sampler.sample(8).stage.numpy() for _ in range(300)]), minlength=length)
        share = counts / counts.mean()
        assert share[-min(10, length):].mean() > 0.5 and share.min() > 0.3, (length, share[-10:].round(2))


def test_training_shifts_a_segment_s_frames_of_one_view_alike():
    from headway.reward.train import _shift_groups
    from headway.reward.training_data import EpisodeData, SegmentSampler

    length, views = 30, 2
    frames = torch.zeros(length, views, 3, 2, 2, dtype=torch.uint8)
    targets = np.arange(length)
    episode_data = EpisodeData("t", frames, torch.ones(views, dtype=torch.bool), targets, targets, targets, targets)
    batch = SegmentSampler([episode_data], 4, fps=10.0, segment=5, view_dropout=0.0).sample(3)
    groups = _shift_groups(batch, "segment").view(-1, views)  # (N, V): one id per image
    for frame in range(len(groups)):
        same_segment = batch.frame_segment == batch.frame_segment[frame]
        for view in range(views):
            assert torch.all(groups[same_segment, view] == groups[frame, view])  # the segment's frames share
            assert not torch.any(groups[~same_segment, view] == groups[frame, view])  # other segments do not
        assert groups[frame, 0] != groups[frame, 1]  # each camera has its own
    assert _shift_groups(batch, "frame") is None


def test_training_resumes_after_an_interruption_to_the_same_model(tiny_dataset, tmp_path, monkeypatch):
    from headway.reward.training_data import SegmentSampler

    def config(out):
        return TrainConfig(datasets=[tiny_dataset], out=out, image_size=SIZE, steps=4, dim=32, segments=2,
                           segment=8, window=4, checkpoint_every=2, seed=3)

    straight = train_reward_model(config(tmp_path / "a"), progress=False)
    assert straight["steps"] == 4 and np.isfinite(straight["final_loss"])

    original, calls = SegmentSampler.sample, []

    def interrupted(self, segments):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, segments)

    monkeypatch.setattr(SegmentSampler, "sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_reward_model(config(tmp_path / "b"), progress=False)
    monkeypatch.setattr(SegmentSampler, "sample", original)
    assert not (tmp_path / "b" / "model.safetensors").exists(), "an interrupted training must not look finished"
    with pytest.raises(HeadwayError, match="--resume"):
        train_reward_model(config(tmp_path / "b"), progress=False)
    changed = config(tmp_path / "b")
    changed.seed = 4
    with pytest.raises(HeadwayError, match="seed: 3 there, 4 now"):
        train_reward_model(changed, resume=True, progress=False)
    resumed = train_reward_model(config(tmp_path / "b"), resume=True, progress=False)
    assert resumed["steps"] == 4
    a = StageRewardModel.load(tmp_path / "a", device="cpu")
    b = StageRewardModel.load(tmp_path / "b", device="cpu")
    frames = {v: np.zeros((6, SIZE, SIZE, 3), np.uint8) + 100 for v in VIEWS}
    np.testing.assert_allclose(a.score_episode(frames, "t").progress, b.score_episode(frames, "t").progress, atol=1e-5)
    assert train_reward_model(changed, overwrite=True, progress=False)["steps"] == 4  # starts over with seed 4


def test_a_frozen_hf_tower_trains_from_features_cached_once(tiny_dataset, tmp_path, monkeypatch):
    from test_hf_encoder import _dinov2, save_tiny

    from headway.perception import feature_cache

    save_tiny(tmp_path / "dino", _dinov2)
    encoded = []
    original = feature_cache._encode_frames
    monkeypatch.setattr(feature_cache, "_encode_frames", lambda *a, **k: encoded.append(1) or original(*a, **k))

    def config(out):
        return TrainConfig(datasets=[tiny_dataset], out=out, encoder=f"hf:{tmp_path / 'dino'}", image_size=SIZE,
                           steps=2, dim=32, segments=2, segment=8, window=4, feature_cache=tmp_path / "cache")

    train_reward_model(config(tmp_path / "first"), progress=False)
    first_run = len(encoded)
    assert first_run > 0
    train_reward_model(config(tmp_path / "second"), progress=False)
    assert len(encoded) == first_run, "the second training re-encoded frames instead of reading the cache"
    model = StageRewardModel.load(tmp_path / "second", device="cpu")
    assert not model.net.encoder.trainable
    frames = {v: np.zeros((5, SIZE, SIZE, 3), np.uint8) for v in VIEWS}
    assert len(model.score_episode(frames, "lift")) == 5


def test_training_settings_are_checked_before_any_work(tmp_path):
    with pytest.raises(HeadwayError, match="image_shift"):
        TrainConfig(datasets=[tmp_path], out=tmp_path / "m", image_shift=-1)
    with pytest.raises(HeadwayError, match="unknown stage prior"):
        TrainConfig(datasets=[tmp_path], out=tmp_path / "m", prior="uniform")
    with pytest.raises(HeadwayError, match="view_dropout is a probability"):
        TrainConfig(datasets=[tmp_path], out=tmp_path / "m", view_dropout=1.5)
    with pytest.raises(HeadwayError, match="unknown shift_per 'episode'; choose one of segment, frame"):
        TrainConfig(datasets=[tmp_path], out=tmp_path / "m", shift_per="episode")


def test_cli_training_recipe_defaults_come_from_the_training_config(tmp_path, monkeypatch):
    import headway.reward.train as train_module
    from headway.cli import main

    seen = []

    def capture(config, resume=False, overwrite=False):
        seen.append(config)
        return {"out": config.out, "steps": 0, "episodes": 0, "frames": 0, "views": [], "final_loss": 0.0, "seconds": 0.0}

    monkeypatch.setattr(train_module, "train_reward_model", capture)
    main(["reward", "train", "--dataset", str(tmp_path), "--out", str(tmp_path / "a")])
    main(["reward", "train", "--dataset", str(tmp_path), "--out", str(tmp_path / "b"), "--stride", "3", "--view-dropout", "0.2", "--window", "4", "--image-shift", "0", "--shift-per", "frame"])
    defaults = TrainConfig(datasets=[tmp_path], out=tmp_path / "a")
    recipe = ("stride", "view_dropout", "window", "image_shift", "shift_per")
    assert [getattr(seen[0], name) for name in recipe] == [getattr(defaults, name) for name in recipe]
    assert [getattr(seen[1], name) for name in recipe] == [3, 0.2, 4, 0, "frame"]
