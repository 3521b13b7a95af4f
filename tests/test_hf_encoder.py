"""The frozen Hugging Face encoder on tiny CLIP, SigLIP and DINOv2 models built from configs (no download)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from headway.errors import HeadwayError
from headway.perception.encoders import build_encoder

LAYERS = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
VISION = dict(**LAYERS, image_size=32, patch_size=8)
TEXT = dict(**LAYERS, vocab_size=99, max_position_embeddings=16)
CROP = dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def _image_features(output) -> torch.Tensor:
    """transformers 5's `get_image_features` returns an output whose pooler_output is the embedding."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _clip():
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    model = CLIPModel(CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=24))
    return model, CLIPImageProcessor(**CROP), lambda m, x: _image_features(m.get_image_features(pixel_values=x)), 24


def _clip_vision():
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION, projection_dim=20))
    return model, CLIPImageProcessor(**CROP), lambda m, x: m(pixel_values=x).image_embeds, 20


def _siglip():
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    model = SiglipModel(SiglipConfig(text_config=TEXT, vision_config=VISION))
    return model, SiglipImageProcessor(size={"height": 32, "width": 32}), lambda m, x: _image_features(m.get_image_features(x)), 32


def _siglip_vision():
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    model = SiglipVisionModel(SiglipVisionConfig(**VISION))
    return model, SiglipImageProcessor(size={"height": 32, "width": 32}), lambda m, x: m(x).pooler_output, 32


def _dinov2(hidden_size: int = 32):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    model = Dinov2Model(Dinov2Config(**{**VISION, "hidden_size": hidden_size}))
    return model, BitImageProcessor(**CROP), lambda m, x: m(pixel_values=x).pooler_output, hidden_size


def _chinese_clip():
    from transformers import ChineseCLIPConfig, ChineseCLIPModel, CLIPImageProcessor

    model = ChineseCLIPModel(ChineseCLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16))
    return model, CLIPImageProcessor(**CROP), lambda m, x: _image_features(m.get_image_features(pixel_values=x)), 16


FAMILIES: dict[str, Callable] = {
    "clip": _clip,
    "clip_vision": _clip_vision,
    "siglip": _siglip,
    "siglip_vision": _siglip_vision,
    "dinov2": _dinov2,
    "generic_get_image_features": _chinese_clip,
}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; on a busy shared CPU, more threads mostly wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_tiny(folder: Path, build: Callable, seed: int = 0):
    """Save a tiny randomly initialised model and its image processor; return the in-memory reference."""
    torch.manual_seed(seed)
    model, processor, reference, dim = build()
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, reference, dim


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module, Callable, int]]:
    root = tmp_path_factory.mktemp("hf_models")
    return {name: (root / name, *save_tiny(root / name, build)) for name, build in FAMILIES.items()}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_encoder_matches_the_reference_embedding_and_stays_frozen(tiny_models, family):
    path, reference_model, reference, dim = tiny_models[family]
    encoder = build_encoder("hf:" + str(path), device="cpu")
    images = torch.rand(5, 3, 48, 40, requires_grad=True)

    features = encoder(images)
    assert features.shape == (5, dim) and encoder.output_dim == dim
    assert torch.equal(features, encoder(images)), "deterministic"
    with torch.no_grad():
        expected = reference(reference_model, encoder.preprocess(images))
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-5)

    assert encoder.trainable is False and not features.requires_grad
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.tower.training, "the tower stays in eval mode inside a training model"
    assert torch.equal(features, encoder(images))


def test_preprocessing_resizes_and_normalises_with_the_processor_config(tiny_models):
    encoder = build_encoder("hf:" + str(tiny_models["clip"][0]), device="cpu")
    pixels = encoder.preprocess(torch.full((2, 3, 64, 48), 0.25))
    assert pixels.shape == (2, 3, 32, 32)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    torch.testing.assert_close(pixels, ((0.25 - mean) / std).expand(2, 3, 32, 32))


def test_spec_names_the_model_and_changes_with_it(tmp_path, tiny_models):
    path = tiny_models["dinov2"][0]
    spec = build_encoder("hf:" + str(path), device="cpu").spec()
    assert spec.startswith(f"hf:{path}(") and "type=dinov2" in spec and "hidden=32" in spec
    assert build_encoder("hf:" + str(path), device="cpu").spec() == spec

    save_tiny(tmp_path / "wider", lambda: _dinov2(hidden_size=48))
    assert "hidden=48" in build_encoder("hf:" + str(tmp_path / "wider"), device="cpu").spec()

    save_tiny(tmp_path / "retrained", _dinov2, seed=1)
    retrained = build_encoder("hf:" + str(tmp_path / "retrained"), device="cpu").spec()
    assert retrained.split("rev=")[1] != spec.split("rev=")[1], "same config, other weights: other spec"


def test_a_model_missing_from_the_cache_names_the_download_flag():
    with pytest.raises(HeadwayError, match="not in the local Hugging Face cache") as caught:
        build_encoder("hf:headway-tests/no-such-model")
    assert "allow_download=True" in str(caught.value) and "--allow-download" in str(caught.value)


def test_missing_or_incomplete_local_folders_are_refused(tmp_path, tiny_models):
    with pytest.raises(HeadwayError, match="does not exist"):
        build_encoder("hf:" + str(tmp_path / "nowhere"))

    from transformers import BitImageProcessor, Dinov2Config

    no_weights = tmp_path / "no_weights"
    Dinov2Config(**VISION).save_pretrained(no_weights)
    BitImageProcessor(**CROP).save_pretrained(no_weights)
    with pytest.raises(HeadwayError, match="has no weights"):
        build_encoder("hf:" + str(no_weights))

    no_processor = tmp_path / "no_processor"
    Dinov2Config(**VISION).save_pretrained(no_processor)
    with pytest.raises(HeadwayError, match="preprocessor_config.json"):
        build_encoder("hf:" + str(no_processor))


def test_an_unsupported_architecture_is_refused_naming_the_supported_ones(tmp_path):
    from transformers import BertConfig

    BertConfig(**TEXT).save_pretrained(tmp_path / "bert")
    with pytest.raises(HeadwayError, match="bert model") as caught:
        build_encoder("hf:" + str(tmp_path / "bert"))
    for name in ("CLIP", "SigLIP", "DINOv2", "get_image_features"):
        assert name in str(caught.value)
