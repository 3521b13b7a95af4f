"""GVL zero-shot VLM progress: prompt and shuffle, the answer parser on recorded answers, and a tiny
Qwen2-VL built from a config (with a byte-level tokenizer made here) scored end to end through
`load_reward_model("gvl:" + path)`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from headway.errors import HeadwayError
from headway.reward.gvl import ABSENT, GVLConfig, GVLRewardModel, interpolate, query_frames
from headway.reward.gvl_prompt import (
    GVLAnswerError,
    GVLFrameCountError,
    GVLRangeError,
    GVLUnparsableAnswer,
    build_prompt,
    parse_answer,
    shuffled_order,
)
from headway.reward.loading import load_reward_model

VIEWS = ("front", "wrist")


# -- (a) prompt and shuffle ------------------------------------------------------------------------
def _texts(prompt) -> str:
    return "".join(part.get("text", "<image>") for part in prompt.messages[0]["content"])


def test_prompt_has_initial_frame_at_zero_then_labelled_query_frames():
    prompt = build_prompt("lift the  cube", 5, seed=[0, 1, 0, 9])
    text = _texts(prompt)
    assert text.count("<image>") == 6  # the initial frame and 5 query frames
    assert "for the task of lift the cube" in text
    initial = text.index("Initial robot scene")
    assert initial < text.index("<image>") < text.index("the task completion percentage is 0%")
    labels = [text.index(f"Frame {i}:\n<image>") for i in range(1, 6)]
    assert labels == sorted(labels) and "Frame 6:" not in text
    assert sorted(prompt.order.tolist()) == list(range(5)) and prompt.frames == 5


def test_shuffle_is_seeded_and_hides_order():
    first = build_prompt("t", 12, seed=[3, 0, 0, 40]).order
    assert np.array_equal(first, build_prompt("t", 12, seed=[3, 0, 0, 40]).order)
    assert np.array_equal(first, shuffled_order(12, [3, 0, 0, 40]))
    assert not np.array_equal(first, np.arange(12))  # not shown in time order
    others = {tuple(shuffled_order(12, [s, 0, a, 40])) for s in range(3) for a in range(2)}
    assert len(others) == 6  # each seed / attempt a different shuffle


def test_query_frames_subsample_and_interpolate():
    assert query_frames(1, 4).tolist() == []
    assert query_frames(4, 8).tolist() == [1, 2, 3]
    frames = query_frames(101, 5)
    assert frames.tolist() == [1, 26, 50, 75, 100] and frames[-1] == 100
    progress = interpolate(5, np.array([2, 4]), np.array([50.0, 100.0]))
    np.testing.assert_allclose(progress, [0, 0.25, 0.5, 0.75, 1.0])


# -- (b) the parser on recorded answers ------------------------------------------------------------
GOOD = "Frame 1: 20%\nFrame 2: 50%\nFrame 3: 100%"
MESSY = (
    "Sure! Looking at the frames:\n\n- **Frame 2**: 55.5 %\n- **Frame 1:** 20%\n3. Frame 3 - the cube is up, 90%\n"
    "Overall the arm is doing well."
)
DESCRIBED = (
    "Frame 1: Frame Description: the gripper is 50% closed, Task Completion Percentage: 30%\n"
    "Frame 2: Frame Description: the cube is lifted, Task Completion Percentage: 95%"
)


@pytest.mark.parametrize(
    "answer, count, expected",
    [
        (GOOD, 3, [20, 50, 100]),
        (MESSY, 3, [20, 55.5, 90]),
        (DESCRIBED, 2, [30, 95]),
        ("Frame 1: 20%, Frame 2: 50%", 2, [20, 50]),
        ("Frame 1: 20\nFrame 2: 40", 2, [20, 40]),
        ("Frame 1: 20%\nFrame 2: 50%\nSo the task is 80% done overall.", 2, [20, 50]),
        ("<think>Frame 1: looks early, maybe 10%.\nFrame 2: later.</think>\nFrame 1: 15%\nFrame 2: 70%", 2, [15, 70]),
    ],
)
def test_parser_reads_good_and_messy_answers(answer, count, expected):
    np.testing.assert_allclose(parse_answer(answer, count), expected)


@pytest.mark.parametrize(
    "answer, count, error, words",
    [
        ("Frame 1: 20%\nFrame 2: 50%", 3, GVLFrameCountError, "missing [3]"),
        ("Frame 1: 20%\nFrame 2: 50%\nFrame 2: 60%", 2, GVLFrameCountError, "repeated [2]"),
        ("Frame 1: 20%\nFrame 2: 50%\nFrame 5: 30%", 2, GVLFrameCountError, "extra [5]"),
        ("Frame 1: 20%\nFrame 2: 150%", 2, GVLRangeError, "Frame 2: 150%"),
        ("Frame 1: -5%\nFrame 2: 50%", 2, GVLRangeError, "within 0-100"),
        ("I cannot tell from these images.", 2, GVLUnparsableAnswer, "no 'Frame i: P%'"),
        ("Frame 1: 40-50%\nFrame 2: 60%", 2, GVLUnparsableAnswer, "frame(s) [1]"),
        ("Frame 1: about half\nFrame 2: 60%", 2, GVLUnparsableAnswer, "frame(s) [1]"),
        ("Frame 1: 30% or maybe 40%\nFrame 2: 60%", 2, GVLUnparsableAnswer, "frame(s) [1]"),
        ("", 2, GVLUnparsableAnswer, "empty answer"),
    ],
)
def test_parser_rejects_bad_answers_never_guesses(answer, count, error, words):
    with pytest.raises(error) as caught:
        parse_answer(answer, count)
    assert isinstance(caught.value, HeadwayError) and words in str(caught.value)
    assert caught.value.answer == answer


# -- options ---------------------------------------------------------------------------------------
def test_spec_options_and_their_errors():
    config = GVLConfig.from_spec("Org/Model-VL?views=a,b,c&max_frames=8&image_size=56&on_bad_answer=flag&describe=1&causal=true")
    assert config.model == "Org/Model-VL" and config.views == ("a", "b", "c") and config.max_frames == 8
    assert config.image_size == 56 and config.on_bad_answer == "flag" and config.describe and config.causal
    with pytest.raises(HeadwayError, match="valid gvl options: .*max_frames"):
        GVLConfig.from_spec("m?frames=3")
    with pytest.raises(HeadwayError, match="max_frames='x' is not valid"):
        GVLConfig.from_spec("m?max_frames=x")
    with pytest.raises(HeadwayError, match="valid gvl on_bad_answer modes: error, flag"):
        GVLConfig.from_spec("m?on_bad_answer=guess")
    with pytest.raises(HeadwayError, match="no model given"):
        load_reward_model("gvl:")


# -- scoring with a stand-in for the VLM call ------------------------------------------------------
def _episode(length: int = 9, size: int = 28) -> dict[str, np.ndarray]:
    """Frame t of each view is a flat image of brightness 25 t: its true progress is t / (length - 1)."""
    levels = (np.arange(length) * 25).astype(np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (length, size, size, 3)).copy()
    return {"front": frames, "wrist": frames.copy()}


def _reading_answer(length: int):
    """A fake `ask` that reads each shown frame's brightness and answers its true percentage."""
    calls = []

    def ask(messages, images, max_new_tokens):
        calls.append(len(images))
        lines = [f"Frame {i}: {100 * image.mean() / 25 / (length - 1):.1f}%" for i, image in enumerate(images[1:], 1)]
        return "Here you go:\n" + "\n".join(lines), False

    return ask, calls


def test_shuffled_answers_map_back_to_their_frames_and_absent_fields_are_marked():
    model = GVLRewardModel(GVLConfig("fake", views=VIEWS, max_frames=4, image_size=28))
    model.ask, calls = _reading_answer(9)
    out = model.score_episode(_episode(9), "lift")
    np.testing.assert_allclose(out.progress, np.arange(9) / 8, atol=1e-6)  # order recovered through the shuffle
    assert calls == [5, 5]  # one call per view: the initial frame and 4 query frames
    assert out.absent == ABSENT and model.stage_names == ()
    assert out.stage.tolist() == [-1] * 9 and out.stage_probs.shape == (9, 0)
    assert np.isnan(out.success).all() and np.isnan(out.uncertainty).all()
    assert set(out.per_view) == set(VIEWS) and not out.bad_answers


def test_views_are_fused_by_mean_and_unknown_views_are_refused():
    model = GVLRewardModel(GVLConfig("fake", views=VIEWS, max_frames=2))
    answers = iter(["Frame 1: 40%\nFrame 2: 40%", "Frame 1: 80%\nFrame 2: 80%"])
    model.ask = lambda messages, images, tokens: (next(answers), False)
    out = model.score_episode(_episode(3), "lift")
    np.testing.assert_allclose(out.progress, [0, 0.6, 0.6], atol=1e-6)
    with pytest.raises(HeadwayError, match="its views: front, wrist; given: side"):
        model.score_episode({"side": _episode(3)["front"]}, "lift")


def test_stream_asks_about_the_frames_so_far():
    model = GVLRewardModel(GVLConfig("fake", views=VIEWS, max_frames=3))
    model.ask, calls = _reading_answer(5)
    scorer = model.stream("lift")
    episode = _episode(5)
    values = [scorer.step({v: f[t] for v, f in episode.items()}).progress[0] for t in range(5)]
    np.testing.assert_allclose(values, np.arange(5) / 4, atol=1e-6)
    assert calls == [2, 2, 3, 3, 4, 4, 4, 4]  # no call at step 0; at most max_frames + 1 images
    scorer.reset()
    assert scorer.step({v: f[0] for v, f in episode.items()}).progress[0] == 0.0


def test_causal_scoring_equals_the_stream_and_holds_between_grid_frames():
    def ask(messages, images, max_new_tokens):  # an answer that depends on how many frames were shown
        lines = [f"Frame {i}: {min(100.0, 12.5 * image.mean() / 25 + 5 * len(images)):.2f}%" for i, image in enumerate(images[1:], 1)]
        return "\n".join(lines), False

    episode = _episode(7)
    model = GVLRewardModel(GVLConfig("fake", views=VIEWS, max_frames=6, causal=True))
    model.ask = ask
    causal = model.score_episode(episode, "lift").progress
    scorer = model.stream("lift")
    streamed = [scorer.step({v: f[t] for v, f in episode.items()}).progress[0] for t in range(7)]
    np.testing.assert_allclose(causal, streamed, atol=1e-6)
    offline = GVLRewardModel(GVLConfig("fake", views=VIEWS, max_frames=6))
    offline.ask = ask
    assert not np.allclose(offline.score_episode(episode, "lift").progress, causal)  # later frames moved it
    coarse = GVLRewardModel(GVLConfig("fake", views=VIEWS, max_frames=2, causal=True))
    coarse.ask = ask
    held = coarse.score_episode(episode, "lift").progress  # grid frames 1 and 6: frames 2-5 hold frame 1's value
    assert held[0] == 0 and np.all(held[1:6] == held[1]) and held[6] > held[1]


def test_bad_answers_raise_or_are_flagged_after_every_attempt():
    answers = []

    def ask(messages, images, max_new_tokens):
        answers.append(max_new_tokens)
        return "Frame 1: 10%", True

    model = GVLRewardModel(GVLConfig("fake", views=VIEWS, max_frames=2, attempts=2, max_new_tokens=6))
    model.ask = ask
    with pytest.raises(GVLFrameCountError, match=r"view 'front': 2 attempt\(s\).*missing \[2\].*max_new_tokens=6"):
        model.score_episode(_episode(3), "lift")
    flagging = GVLRewardModel(GVLConfig("fake", views=VIEWS, max_frames=2, on_bad_answer="flag"))
    flagging.ask = ask
    out = flagging.score_episode(_episode(3), "lift")
    assert np.isnan(out.progress).all() and [b.view for b in out.bad_answers] == list(VIEWS)
    assert out.bad_answers[0].problem == "count" and out.bad_answers[0].answers == ("Frame 1: 10%",) * 2


# -- (c) a tiny Qwen2-VL end to end ----------------------------------------------------------------
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    """A Qwen2-VL with 1 vision and 1 text layer of width 32, a byte-level BPE tokenizer without merges
    (every byte a token, plus Qwen's special tokens) and Qwen2-VL's processor, saved to a folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for token in SPECIAL:
        vocab[token] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    images = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=28 * 28 * 4)
    processor = Qwen2VLProcessor(images, tokenizer, Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    ids = {token: vocab[token] for token in SPECIAL}
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=1024, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14, spatial_merge_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gvl") / "tiny-qwen2-vl"
    Qwen2VLForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_tiny_vlm_end_to_end_reports_unparsable_answers(tiny_vlm):
    spec = f"gvl:{tiny_vlm}?views=front,wrist&max_frames=3&image_size=28&max_new_tokens=8&attempts=1"
    model = load_reward_model(spec + "&on_bad_answer=flag")
    assert isinstance(model, GVLRewardModel) and model.views == VIEWS and model.image_size == 28
    rng = np.random.default_rng(0)
    images = {v: rng.integers(0, 256, (6, 28, 28, 3), dtype=np.uint8) for v in VIEWS}
    out = model.score_episode(images, "lift the cube")
    assert len(out) == 6 and out.stage_probs.shape == (6, 0) and out.absent == ABSENT
    # an untrained model's answer is noise: it is reported, and no progress is made up for it
    assert [b.view for b in out.bad_answers] == list(VIEWS) and model.calls == 2
    assert all(b.frames == (1, 3, 5) and len(b.answers) == 1 for b in out.bad_answers)
    assert np.isnan(out.progress).all()
    strict = load_reward_model(spec)
    with pytest.raises(GVLAnswerError, match="view 'front'.*the answer was"):
        strict.score_episode(images, "lift the cube")


def test_tiny_vlm_with_fixed_generation_scores_in_range_and_saves(tiny_vlm, tmp_path):
    import torch

    model = load_reward_model(f"gvl:{tiny_vlm}?views=front,wrist&max_frames=3&image_size=28&seed=4")
    tokenizer = model.processor.tokenizer
    answer = "Frame 1: 10%\nFrame 2: 60%\nFrame 3: 90%"
    prompts = []

    def generate(input_ids, max_new_tokens, do_sample, **inputs):  # the real processor, a fixed answer
        prompts.append(tokenizer.decode(input_ids[0]))
        assert inputs["pixel_values"].shape[0] == 4 * 4 and not do_sample  # 4 images of 2 x 2 patches
        reply = torch.tensor([tokenizer.encode(answer + "<|im_end|>")])
        return torch.cat([input_ids, reply], 1)

    model.vlm.generate = generate
    images = _episode(6)
    out = model.score_episode(images, "lift the cube")
    assert len(prompts) == 2 and prompts[0].count("<|image_pad|>") == 4 and "Frame 3:" in prompts[0]
    assert len(out) == 6 and np.all((out.progress >= 0) & (out.progress <= 1)) and out.progress[0] == 0
    order = build_prompt("lift the cube", 3, [4, 0, 0, 6]).order  # the shuffle the front view was asked in
    by_frame = np.empty(3)
    by_frame[order] = [10, 60, 90]
    np.testing.assert_allclose(out.per_view["front"][[1, 3, 5]], by_frame / 100, atol=1e-6)
    model.save(tmp_path / "gvl")
    again = load_reward_model(f"gvl:{tmp_path / 'gvl'}")
    assert again.config == dataclasses.replace(model.config, model=str(tiny_vlm.resolve()))


def test_missing_local_model_names_the_fix(tmp_path):
    with pytest.raises(HeadwayError, match="has no config.json, so it holds no model"):
        load_reward_model(f"gvl:{tmp_path}")


def test_headway_label_labels_a_dataset_with_a_tiny_vlm(tiny_vlm, tiny_dataset, tmp_path, monkeypatch):
    """`headway label --model gvl:...` end to end; the tiny model's generation is fixed so it answers."""
    import pyarrow.parquet as pq
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from headway.cli import main

    def generate(self, input_ids, max_new_tokens, do_sample, **inputs):
        tokenizer = generate.tokenizer
        reply = torch.tensor([tokenizer.encode("Frame 1: 20%\nFrame 2: 50%\nFrame 3: 80%<|im_end|>")])
        return torch.cat([input_ids, reply], 1)

    from transformers import AutoProcessor

    generate.tokenizer = AutoProcessor.from_pretrained(tiny_vlm).tokenizer
    monkeypatch.setattr(Qwen2VLForConditionalGeneration, "generate", generate)
    spec = f"gvl:{tiny_vlm}?views=agentview,robot0_eye_in_hand&max_frames=3&image_size=28"
    out = tmp_path / "labels"
    assert main(["label", "--dataset", str(tiny_dataset), "--model", spec, "--out", str(out), "--episodes", "0"]) == 0
    table = pq.read_table(out / "labels.parquet").to_pandas()
    assert len(table) > 10 and table["progress"].between(0, 1).all() and table["progress"].iloc[0] == 0
    assert table["stage"].isna().all() and table["success"].isna().all()
