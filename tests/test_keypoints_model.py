"""Keypoint heatmap model: sub-pixel decoding, learning, save/load, training and evaluation on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from headway.errors import HeadwayError
from headway.perception.keypoint_model import (
    KeypointModel,
    KeypointModelConfig,
    cell_to_pixel,
    decode_heatmaps,
    gaussian_targets,
    keypoint_loss,
    parse_stage_targets,
    pixel_to_cell,
)


def tiny_config(**overrides) -> KeypointModelConfig:
    settings = dict(keypoint_names=("gripper", "grasp"), views=("agentview", "sideview"), image_size=32, width=4)
    settings.update(overrides)
    return KeypointModelConfig(**settings)


def test_decoding_a_gaussian_is_sub_pixel_exact():
    rng = np.random.default_rng(0)
    true = torch.from_numpy(rng.uniform(3, 38, (5, 3, 2))).float()
    logits = torch.log(gaussian_targets(true, 42, sigma=1.3).clamp_min(1e-30))
    decoded = decode_heatmaps(logits)
    assert torch.max(torch.abs(decoded - true)) < 1e-3
    # argmax alone would be off by up to half a cell
    argmax_only = torch.stack([logits.flatten(2).argmax(-1) % 42, logits.flatten(2).argmax(-1) // 42], -1).float()
    assert torch.max(torch.abs(argmax_only - true)) > 0.2


def test_cells_and_pixels_invert():
    pixels = torch.tensor([[0.0, 83.0], [41.5, 12.25]])
    np.testing.assert_allclose(cell_to_pixel(pixel_to_cell(pixels, 2), 2), pixels)
    assert float(cell_to_pixel(torch.tensor(0.0), 2)) == 0.5  # cell 0 covers pixels 0 and 1


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = KeypointModel.create(tiny_config(width=8), device="cpu")
    net = model.net.train()
    images = torch.zeros(8, 3, 32, 32)
    uv = torch.rand(8, 2, 2) * 24 + 4
    for i in range(8):  # a bright dot at each keypoint
        for k in range(2):
            x, y = uv[i, k].round().long()
            images[i, k, y - 1 : y + 2, x - 1 : x + 2] = 1.0
    cells = pixel_to_cell(uv, 2)
    visible = torch.ones(8, 2, dtype=torch.bool)
    visible[0, 1] = False
    ids = torch.zeros(8, dtype=torch.long)
    optimizer = torch.optim.Adam(net.parameters(), 3e-3)
    losses = []
    for _ in range(25):
        loss, _ = keypoint_loss(*net(images, ids), cells, visible, 1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_save_load_round_trip(tmp_path):
    config = tiny_config(intrinsics={"agentview": np.eye(3).tolist()}, stage_targets=[["grasp", "gripper"], ["grasp", "gripper"]])
    model = KeypointModel.create(config, device="cpu")
    images = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    before = model.predict(images, "sideview")
    model.save(tmp_path / "kp")
    loaded = KeypointModel.load(tmp_path / "kp", device="cpu")
    after = loaded.predict(images, "sideview")
    np.testing.assert_allclose(before.uv, after.uv)
    np.testing.assert_allclose(before.confidence, after.confidence, atol=1e-6)
    assert before.uv.shape == (3, 2, 2) and np.all((before.confidence >= 0) & (before.confidence <= 1))
    assert loaded.config.keypoint_names == ("gripper", "grasp")
    assert loaded.config.stage_targets == (("grasp", "gripper"), ("grasp", "gripper"))
    # damaged or foreign checkpoints say what is wrong
    meta = json.loads((tmp_path / "kp" / "config.json").read_text())
    (tmp_path / "kp" / "config.json").write_text(json.dumps({**meta, "model": {k: v for k, v in meta["model"].items() if k != "stage_targets"}}))
    assert KeypointModel.load(tmp_path / "kp").config.stage_targets == ()  # checkpoints from before they were stored
    (tmp_path / "kp" / "config.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(HeadwayError, match="format 99"):
        KeypointModel.load(tmp_path / "kp")
    (tmp_path / "kp" / "config.json").write_text(json.dumps({**meta, "format": "headway.stage_reward"}))
    with pytest.raises(HeadwayError, match="not a keypoint model"):
        KeypointModel.load(tmp_path / "kp")
    with pytest.raises(HeadwayError, match="config.json is missing"):
        KeypointModel.load(tmp_path / "missing")
    with pytest.raises(HeadwayError, match="valid camera view.*agentview"):
        model.predict(images, "frontview")
    with pytest.raises(HeadwayError, match="sideview.*no calibration"):
        model.intrinsics("sideview")


def test_stage_targets_are_pairs_of_the_models_keypoints():
    pairs = (("grasp", "gripper"), ("grasp", "gripper"), ("lift_target", "grasp"))
    names = ("gripper", "grasp", "lift_target")
    assert parse_stage_targets("grasp:gripper, grasp ,lift_target:grasp", names) == pairs  # TARGET alone: the gripper moves
    assert parse_stage_targets([list(p) for p in pairs], names) == pairs
    with pytest.raises(HeadwayError, match="'place' is not one of the keypoints gripper, grasp, lift_target"):
        parse_stage_targets("grasp,place:grasp", names)
    for bad in ("grasp:gripper:grasp", [["grasp", 3]], [7], {"grasp": "gripper"}):
        with pytest.raises(HeadwayError, match="TARGET:MOVER"):
            parse_stage_targets(bad, names)
    with pytest.raises(HeadwayError, match="'lift_target' is not one of"):
        tiny_config(stage_targets=[["lift_target", "gripper"]])


def test_train_and_evaluate_on_a_tiny_dataset(tiny_dataset, tmp_path):
    from headway.perception.keypoint_train import KeypointTrainConfig, evaluate_keypoints, train_keypoint_model

    config = KeypointTrainConfig(datasets=[tiny_dataset], out=tmp_path / "kp", width=4, steps=4, batch_size=4, checkpoint_every=2)
    summary = train_keypoint_model(config, progress=False)
    assert summary["steps"] == 4 and summary["keypoints"] == ["gripper", "grasp", "lift_target"]
    model = KeypointModel.load(tmp_path / "kp")
    assert set(model.config.intrinsics) == {"agentview", "robot0_eye_in_hand"}
    assert model.config.stage_targets == (("grasp", "gripper"), ("grasp", "gripper"), ("lift_target", "grasp"))  # from the card
    # resuming continues from the saved step
    more = KeypointTrainConfig(datasets=[tiny_dataset], out=tmp_path / "kp", width=4, steps=6, batch_size=4)
    with pytest.raises(HeadwayError, match="--resume"):
        train_keypoint_model(more, progress=False)
    report = evaluate_keypoints(model, tiny_dataset, plots=tmp_path / "plots", frame_step=10)
    assert set(report["per_view"]) == {"agentview", "robot0_eye_in_hand"}
    assert report["per_view"]["agentview"]["n"] > 0
    assert "agentview+robot0_eye_in_hand" in report["triangulation"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir())[0].endswith("agentview.png")


def test_cli_train_eval_and_fuse(tiny_dataset, tmp_path, capsys):
    from headway.cli import main
    from headway.reward.keypoint_reward import KeypointRewardModel
    from headway.reward.loading import load_reward_model
    from headway.reward.stage_model import StageModelConfig, StageRewardNet
    from headway.reward.stage_reward import StageRewardModel

    out = tmp_path / "kp"
    assert main(["keypoints", "train", "--dataset", str(tiny_dataset), "--out", str(out), "--steps", "2", "--batch-size", "4", "--width", "4"]) == 0
    assert "trained" in capsys.readouterr().out
    assert main(["keypoints", "eval", "--model", str(out), "--dataset", str(tiny_dataset), "--json", str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots")]) == 0
    printed = capsys.readouterr().out
    assert "2D median px" in printed and "3D median cm" in printed
    assert json.loads((tmp_path / "r.json").read_text())["per_view"]["agentview"]["n"] > 0
    # fuse with a (random, untrained) stage-aware model over the dataset's static camera
    config = StageModelConfig(views=("agentview", "robot0_eye_in_hand"), stage_names=("a", "b", "c"), stage_proportions=(0.5, 0.2, 0.3), image_size=32, dim=32, window=4, ensemble=1)
    StageRewardModel(StageRewardNet(config), device="cpu").save(tmp_path / "progress")
    fused = tmp_path / "fused"
    assert main(["keypoints", "fuse", "--keypoints", str(out), "--progress", str(tmp_path / "progress"), "--dataset", str(tiny_dataset), "--out", str(fused)]) == 0
    printed = capsys.readouterr().out
    assert "| a |" in printed and "| c |" in printed and "mean over 2 successful episodes" in printed  # expert and noisy, not the failure
    model = load_reward_model(fused, device="cpu")
    assert isinstance(model, KeypointRewardModel) and model.keypoint_views == ("agentview",)  # the wrist camera moves
    assert model.config.cameras["agentview"]["image_size"] == [32, 32]  # the size its intrinsics are for

