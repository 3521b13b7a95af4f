"""VLM point prompting: the parser on recorded answers, and the generate path on a tiny Qwen2-VL built offline."""

from __future__ import annotations

import numpy as np
import pytest

from headway.perception.point_prompting import (
    OK,
    OUT_OF_RANGE,
    RECORDED_ANSWERS,
    UNPARSABLE,
    VLMPointer,
    build_prompt,
    parse_points,
    score_parser,
)


@pytest.mark.parametrize("answer, status, points", RECORDED_ANSWERS)
def test_recorded_answers_parse_as_expected(answer, status, points):
    result = parse_points(answer, (84, 84))
    assert result.status == status, result.problem
    if points is None:
        assert result.points.shape == (0, 2) and (status == "empty" or result.problem)
    else:
        np.testing.assert_allclose(result.points, points, atol=1e-6)


def test_parser_scores_every_recorded_answer():
    assert score_parser()["accuracy"] == 1.0


def test_nothing_is_guessed():
    # a pixel-valued tuple list is not rescaled, a pixel JSON without the image size is not read
    assert parse_points("[(42, 40)]").status == OUT_OF_RANGE
    assert parse_points('[{"point_2d": [42, 21]}]').status == UNPARSABLE
    assert parse_points('[{"point_2d": [42, 21]}]', (84, 84)).mean_pixel(84, 84) == pytest.approx([42, 21])
    answer = parse_points("[(0.5, 0.25)]")
    np.testing.assert_allclose(answer.pixels(84, 84), [[41.5, 20.5]])


def test_prompt_is_robopoints_format():
    prompt = build_prompt("grasp", "pick up the red cube and lift it")
    assert "[(x1, y1), (x2, y2), ...]" in prompt and "between 0 and 1" in prompt and "pick up the red cube" in prompt
    assert "the knob point" in build_prompt("knob")


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    """A tiny random Qwen2-VL with its own byte-level BPE tokenizer, saved to disk: no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        Qwen2TokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["[(0.25, 0.5), (0.1, 0.9)] locate the grasp point user assistant"] * 4, trainer)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=bpe, unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for part in message['content'] %}"
        "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ part['text'] }}{% endif %}"
        "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tokenizer.chat_template = template
    images = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 56)
    processor = Qwen2VLProcessor(image_processor=images, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(), chat_template=template)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in special}
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=512, rope_scaling={"type": "mrope", "mrope_section": [4, 2, 2]},
        ),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )  # fmt: skip
    path = tmp_path_factory.mktemp("vlm") / "tiny-qwen2-vl"
    Qwen2VLForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_generate_path_of_a_tiny_qwen2_vl(tiny_vlm):
    pointer = VLMPointer.from_pretrained(tiny_vlm, device="cpu", max_new_tokens=6)
    image = np.zeros((84, 84, 3), dtype=np.uint8)
    answer = pointer.point(image, "grasp", "pick up the red cube")
    assert isinstance(answer.raw, str)
    # a random model's text is not a point list: it is reported, not turned into a point
    assert answer.status in {OK, OUT_OF_RANGE, UNPARSABLE, "empty"}
    if not answer.ok:
        assert answer.points.shape == (0, 2)


def test_generated_robopoint_answer_becomes_pixels(tiny_vlm):
    """The real processor and decoding around a model whose generate returns a recorded answer."""
    import torch

    pointer = VLMPointer.from_pretrained(tiny_vlm, device="cpu")
    answer_ids = pointer.processor.tokenizer("[(0.25, 0.5)]", return_tensors="pt")["input_ids"]

    class RecordedModel:
        device = torch.device("cpu")

        def generate(self, input_ids, **kwargs):
            assert "pixel_values" in kwargs and kwargs["do_sample"] is False
            return torch.cat([input_ids, answer_ids], dim=1)

    pointer.model = RecordedModel()
    answer = pointer.point(np.zeros((84, 84, 3), dtype=np.uint8), "grasp")
    assert answer.ok and answer.format == "robopoint"
    np.testing.assert_allclose(answer.mean_pixel(84, 84), [20.5, 41.5])


def test_a_missing_model_is_a_clear_error(tmp_path):
    from headway.errors import HeadwayError

    with pytest.raises(HeadwayError, match="only local files"):
        VLMPointer.from_pretrained(tmp_path / "no-such-model")
