"""lerobot inside headway: `lerobot:TYPE:PATH` reward models (here a tiny SARM built from a config)
label a dataset through `headway label`, with the outputs SARM lacks reported absent."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow.parquet as pq
import pytest

from headway.cli import main
from headway.errors import HeadwayError
from headway.reward.loading import load_reward_model

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _clip_tokenizer(folder: Path):
    spec = importlib.util.spec_from_file_location("sarm_peer", BENCH / "sarm_peer.py")
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    return peer.local_clip_tokenizer("pick up the red cube and lift it".split(), folder)


@pytest.fixture(scope="module")
def tiny_sarm(tmp_path_factory):
    """A tiny lerobot SARM saved with lerobot's save_pretrained, and CLIP stand-ins for its processor
    (lerobot's SARM processor loads CLIP from the hub, which cannot be reached here)."""
    import torch
    from lerobot.rewards.sarm import processor_sarm
    from lerobot.rewards.sarm.configuration_sarm import SARMConfig
    from lerobot.rewards.sarm.modeling_sarm import SARMRewardModel
    from transformers import CLIPConfig, CLIPImageProcessorFast, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("sarm")
    config = SARMConfig(device="cpu", image_key="observation.images.agentview", hidden_dim=32, num_heads=2,
                        num_layers=1, n_obs_steps=2, frame_gap=3, max_rewind_steps=1)
    SARMRewardModel(config).save_pretrained(folder / "model")
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    clip = CLIPModel(CLIPConfig(text_config=dict(**small, vocab_size=600, max_position_embeddings=77),
                                vision_config=dict(**small, image_size=32, patch_size=16), projection_dim=512)).eval()
    processor = CLIPProcessor(image_processor=CLIPImageProcessorFast(size={"shortest_edge": 32}, crop_size=32),
                              tokenizer=_clip_tokenizer(folder))
    patches = [mock.patch.object(processor_sarm.CLIPModel, "from_pretrained", side_effect=lambda *a, **k: clip),
               mock.patch.object(processor_sarm.CLIPProcessor, "from_pretrained", side_effect=lambda *a, **k: processor)]
    for patch in patches:
        patch.start()
    yield folder / "model"
    for patch in patches:
        patch.stop()


def test_headway_label_runs_a_lerobot_sarm(tiny_sarm, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "labels"
    assert main(["label", "--dataset", str(tiny_dataset), "--model", f"lerobot:sarm:{tiny_sarm}",
                 "--out", str(out), "--episodes", "0"]) == 0
    table = pq.read_table(out / "labels.parquet").to_pandas()
    assert len(table) > 10 and table["progress"].between(0, 1).all()
    assert table["stage"].isna().all() and table["success"].isna().all() and table["uncertainty"].isna().all()
    card = json.loads((out / "labels.json").read_text())
    assert card["identity"]["model"] == f"lerobot:sarm:{tiny_sarm}"
    progress = pq.read_table(out / "sarm_progress.parquet").to_pandas()
    assert np.allclose(progress["progress_sparse"], table["progress"])


def test_streaming_and_episode_scores_agree_on_the_past(tiny_sarm):
    model = load_reward_model(f"lerobot:sarm:{tiny_sarm}", device="cpu")
    assert model.views == ("agentview",) and model.absent >= {"stage", "success", "uncertainty"}
    rng = np.random.default_rng(0)
    frames = {"agentview": rng.integers(0, 255, (7, 32, 32, 3), dtype=np.uint8)}
    offline = model.score_episode(frames, "pick up the red cube and lift it")
    scorer = model.stream("pick up the red cube and lift it")
    online = [scorer.step({"agentview": frames["agentview"][t]}).progress[0] for t in range(7)]
    assert offline.progress.shape == (7,) and np.isnan(offline.success).all()
    assert online[-1] == pytest.approx(offline.progress[-1], abs=1e-5)  # the last frame has no future either


def test_bad_lerobot_specs_are_clear(tiny_sarm, tmp_path):
    with pytest.raises(HeadwayError, match="unknown lerobot reward type 'sarn'; known: sarm, robometer"):
        load_reward_model(f"lerobot:sarn:{tiny_sarm}")
    with pytest.raises(HeadwayError, match="holds a lerobot 'sarm' reward model, not 'topreward'"):
        load_reward_model(f"lerobot:topreward:{tiny_sarm}")
    with pytest.raises(HeadwayError, match="name the checkpoint"):
        load_reward_model("lerobot:sarm")
    with pytest.raises(HeadwayError, match="unknown reward model kind 'nope'"):
        load_reward_model("nope:thing")


def test_reward_eval_reports_what_a_lerobot_model_lacks_as_absent(tiny_sarm, tiny_dataset):
    from headway.reward.evaluate import evaluate

    report = evaluate(load_reward_model(f"lerobot:sarm:{tiny_sarm}", device="cpu"), [tiny_dataset], progress=False)
    metrics = report["metrics"]
    assert np.isnan(metrics["stage_accuracy"]) and np.isnan(metrics["success_auroc"])
    assert 0 <= metrics["progress_mae"] <= 1  # against the dataset's own annotated prior


def test_a_potential_weighting_an_absent_output_is_refused():
    from headway.reward.interface import RewardOutput
    from headway.reward.shaping import PotentialConfig, potential

    output = RewardOutput(np.array([0.1, 0.2], np.float32), np.full(2, -1), np.zeros((2, 0), np.float32),
                          np.full(2, np.nan, np.float32), np.full(2, np.nan, np.float32), absent=frozenset({"success", "stage"}))
    assert np.allclose(potential(output), [0.1, 0.2])
    with pytest.raises(HeadwayError, match="weights success .* does not produce it"):
        potential(output, PotentialConfig(success_weight=0.5))


def test_rl_reward_source_takes_a_lerobot_spec_and_its_potential_skips_absent_success(tiny_sarm):
    from headway.policy.reward_sources import ModelSource, make_reward_source

    source = make_reward_source(f"prm:lerobot:sarm:{tiny_sarm}", task="lift", device="cpu")
    assert source.model.views == ("agentview",)
    output = source.model.score_episode({"agentview": np.zeros((3, 32, 32, 3), np.uint8)}, "lift the cube")
    assert np.isfinite(source._phi(output)).all()  # success is NaN (absent) and weighted 0
    with pytest.raises(HeadwayError, match="weights success .* does not produce it"):
        ModelSource(source.model, "lift the cube", success_weight=0.5)._phi(output)
