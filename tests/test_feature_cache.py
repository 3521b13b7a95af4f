"""The zarr feature cache: round trip, crash safety, dataset fingerprints, encode once and reuse."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import zarr

from headway.errors import HeadwayError
from headway.perception.encoders import FrameEncoder
from headway.perception.feature_cache import FeatureCache, cache_dataset_features, dataset_fingerprint

SPEC = "hf:/models/tiny(type=dinov2,hidden=32,dim=32,input=32x32,rev=abc)"


class CountingEncoder(FrameEncoder):
    """Per-channel means and extremes of each frame, counting forward calls."""

    trainable = False
    output_dim = 6

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.frames = 0

    def spec(self) -> str:
        return "counting(dim=6)"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.frames += len(images)
        return torch.cat([images.mean(dim=(2, 3)), images.amax(dim=(2, 3))], dim=1)


class FakeReader:
    """The slice of `DatasetReader` the cache uses, recording which views each decode asked for."""

    def __init__(self, root: Path, lengths: list[int], views: list[str]) -> None:
        self.root = root
        self.views = views
        self.lengths = lengths
        self.decodes: list[tuple[int, list[str]]] = []
        (root / "meta").mkdir(parents=True, exist_ok=True)
        (root / "meta" / "info.json").write_text(json.dumps({"total_frames": sum(lengths), "fps": 20}))

    @property
    def num_episodes(self) -> int:
        return len(self.lengths)

    def frames(self, index: int, view: str) -> np.ndarray:
        rng = np.random.default_rng([index, self.views.index(view)])
        return rng.integers(0, 256, size=(self.lengths[index], 8, 8, 3), dtype=np.uint8)

    def episode(self, index: int, views: list[str] | None = None) -> SimpleNamespace:
        views = list(views if views is not None else self.views)
        self.decodes.append((index, views))
        return SimpleNamespace(images={view: self.frames(index, view) for view in views})


def expected_features(frames: np.ndarray) -> np.ndarray:
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    return CountingEncoder()(images).numpy()


def test_round_trip_stores_float16_per_episode_and_view(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    assert cache.get(SPEC, "10f-x", 0, "front") is None
    features = np.random.default_rng(0).normal(size=(7, 32)).astype(np.float32)
    cache.put(SPEC, "10f-x", 3, "front", features)

    stored = FeatureCache(tmp_path / "cache").get(SPEC, "10f-x", 3, "front")
    assert stored is not None and stored.dtype == np.float16 and stored.shape == (7, 32)
    np.testing.assert_allclose(stored, features, rtol=1e-3, atol=1e-3)
    others = [(SPEC, "10f-x", 3, "wrist"), (SPEC, "10f-x", 2, "front"), (SPEC, "11f-y", 3, "front")]
    others.append(("conv", "10f-x", 3, "front"))
    assert all(cache.get(*other) is None for other in others)

    cache.put(SPEC, "10f-x", 3, "front", features[:4])
    assert cache.get(SPEC, "10f-x", 3, "front").shape == (4, 32), "a put replaces what was there"
    with pytest.raises(ValueError, match="overflow"):
        cache.put(SPEC, "10f-x", 4, "front", np.full((2, 3), 1e6))
    wide = FeatureCache(tmp_path / "wide", dtype=np.float32)
    wide.put(SPEC, "10f-x", 4, "front", np.full((2, 3), 1e6))
    assert wide.get(SPEC, "10f-x", 4, "front").dtype == np.float32


def test_an_array_without_the_complete_mark_reads_as_missing_and_is_rewritten(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache")
    features = np.ones((5, 8), dtype=np.float32)

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt("killed before the array was marked complete")

    with monkeypatch.context() as patch:
        patch.setattr(zarr.core.attributes.Attributes, "update", crash)
        with pytest.raises(KeyboardInterrupt):
            cache.put(SPEC, "5f-x", 0, "front", features)

    (written,) = [path.parent for path in (tmp_path / "cache").rglob("front/zarr.json")]
    left = zarr.open_array(str(written), mode="r")
    assert left.shape == (5, 8) and (left[...] == 1).all() and "complete" not in left.attrs, "looks whole, is not"
    assert cache.get(SPEC, "5f-x", 0, "front") is None and not cache.has(SPEC, "5f-x", 0, "front")

    cache.put(SPEC, "5f-x", 0, "front", 2 * features)
    np.testing.assert_array_equal(cache.get(SPEC, "5f-x", 0, "front"), 2 * features)


def test_dataset_fingerprint_follows_the_dataset_metadata(tmp_path):
    reader = FakeReader(tmp_path / "data", [3, 4], ["front"])
    fingerprint = dataset_fingerprint(reader.root)
    assert fingerprint.startswith("7f-") and fingerprint == dataset_fingerprint(reader.root)

    (reader.root / "meta" / "stats.json").write_text(json.dumps({"front": {"mean": [0.5, 0.5, 0.5]}}))
    with_stats = dataset_fingerprint(reader.root)
    assert with_stats != fingerprint
    (reader.root / "meta" / "stats.json").write_text(json.dumps({"front": {"mean": [0.4, 0.5, 0.5]}}))
    assert dataset_fingerprint(reader.root) != with_stats

    (reader.root / "meta" / "info.json").write_text(json.dumps({"total_frames": 8, "fps": 20}))
    assert dataset_fingerprint(reader.root).startswith("8f-")
    with pytest.raises(HeadwayError, match="meta/info.json"):
        dataset_fingerprint(tmp_path / "nothing")


def test_cache_dataset_features_encodes_once_then_reuses(tmp_path):
    reader = FakeReader(tmp_path / "data", [5, 3, 0, 4], ["front", "wrist"])
    encoder = CountingEncoder()
    cache = FeatureCache(tmp_path / "cache")

    counts = cache_dataset_features(reader, encoder, cache, views=None, batch_size=2, progress=False)
    assert counts == {"encoded": 4, "reused": 0, "frames": 2 * 12}
    assert encoder.frames == 24 and encoder.calls == 2 * (3 + 2 + 0 + 2)
    assert [index for index, _ in reader.decodes] == [0, 1, 2, 3], "each episode decoded once for all its views"
    fingerprint = dataset_fingerprint(reader.root)
    for index, length in enumerate(reader.lengths):
        for view in reader.views:
            stored = cache.get(encoder.spec(), fingerprint, index, view)
            assert stored.shape == (length, 6)
            np.testing.assert_allclose(stored, expected_features(reader.frames(index, view)), atol=2e-3)

    calls, decodes = encoder.calls, len(reader.decodes)
    again = cache_dataset_features(reader, encoder, FeatureCache(tmp_path / "cache"), views=None, progress=False)
    assert again == {"encoded": 0, "reused": 4, "frames": 0}
    assert encoder.calls == calls and len(reader.decodes) == decodes, "nothing re-encoded or re-decoded"


def test_only_missing_views_are_decoded_and_encoded(tmp_path):
    reader = FakeReader(tmp_path / "data", [4, 2], ["front", "wrist"])
    encoder = CountingEncoder()
    cache = FeatureCache(tmp_path / "cache")
    cache_dataset_features(reader, encoder, cache, views=["front"], progress=False)
    assert encoder.frames == 6

    reader.decodes.clear()
    counts = cache_dataset_features(reader, encoder, cache, views=["front", "wrist"], progress=False)
    assert counts == {"encoded": 2, "reused": 0, "frames": 6}
    assert reader.decodes == [(0, ["wrist"]), (1, ["wrist"])]


def test_trainable_encoders_are_not_cached(tmp_path):
    from headway.perception.conv_encoder import ConvEncoder

    reader = FakeReader(tmp_path / "data", [2], ["front"])
    with pytest.raises(HeadwayError, match="trainable"):
        cache_dataset_features(reader, ConvEncoder(), FeatureCache(tmp_path / "cache"), views=None, progress=False)
