"""A zarr store of per-frame features, so a frozen tower encodes each frame once and training never re-encodes.

Layout: `<root>/<encoder spec>/<dataset fingerprint>/episode_{i:06d}/<view>`, each array (T, D),
float16 by default. Group names are the spec, fingerprint and view made path-safe (with a short
hash when anything had to change). An array counts only once its `complete` attribute is set,
which happens after its data is written, so a crash mid-write leaves an array that reads as
missing and is overwritten by the next put.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from headway.errors import HeadwayError
from headway.perception.encoders import FrameEncoder

COMPLETE = "complete"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def dataset_fingerprint(root: Path) -> str:
    """`<total frames>f-<digest>` of a dataset's `meta/info.json`, plus `meta/stats.json` when present.

    The stats (which include per-camera pixel statistics) tell apart datasets recorded with the
    same settings and length but different content; annotations live elsewhere, so annotating a
    dataset does not invalidate its cached features.
    """
    meta = Path(root) / "meta"
    info_path = meta / "info.json"
    if not info_path.exists():
        raise HeadwayError(f"{root} is not a LeRobot dataset: meta/info.json is missing")
    info = json.loads(info_path.read_text())
    stats_path = meta / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else None
    total_frames = int(info.get("total_frames", 0))
    payload = json.dumps({"info": info, "stats": stats, "total_frames": total_frames}, sort_keys=True)
    return f"{total_frames}f-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def node_name(text: str) -> str:
    """`text` as a zarr node name: kept when already safe, else sanitised and suffixed with a short hash."""
    safe = _UNSAFE.sub("_", text).strip("._-")[:96]
    if safe == text:
        return text
    return f"{safe or 'node'}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


class FeatureCache:
    """Per-frame features keyed by encoder spec, dataset fingerprint, episode and view."""

    def __init__(self, root: Path, dtype: np.dtype | str = np.float16) -> None:
        self.root = Path(root)
        self.dtype = np.dtype(dtype)
        self._group: Any = None
        self._writable = False

    def _open(self, create: bool) -> Any:
        """The root group: opened read-only for lookups (a cache another user or training process
        built may not be writable here), reopened for writing at the first `put`."""
        import zarr

        if self._group is None or (create and not self._writable):
            if not create and not (self.root / "zarr.json").exists():
                return None
            self._group = zarr.open_group(store=str(self.root), mode="a" if create else "r", use_consolidated=False)
            self._writable = create
        return self._group

    @staticmethod
    def _path(encoder_spec: str, dataset_fp: str, episode: int) -> str:
        return f"{node_name(encoder_spec)}/{node_name(dataset_fp)}/episode_{episode:06d}"

    def _array(self, encoder_spec: str, dataset_fp: str, episode: int, view: str) -> Any:
        group = self._open(create=False)
        if group is None:
            return None
        try:
            array = group[f"{self._path(encoder_spec, dataset_fp, episode)}/{node_name(view)}"]
        except (KeyError, ValueError, OSError):
            return None
        if not hasattr(array, "shape") or array.attrs.get(COMPLETE) is not True:
            return None
        return array

    def has(self, encoder_spec: str, dataset_fp: str, episode: int, view: str) -> bool:
        """Whether complete features are stored, without reading them."""
        return self._array(encoder_spec, dataset_fp, episode, view) is not None

    def get(self, encoder_spec: str, dataset_fp: str, episode: int, view: str) -> np.ndarray | None:
        """The (T, D) features of one episode and view, or None when absent or left incomplete."""
        array = self._array(encoder_spec, dataset_fp, episode, view)
        return None if array is None else np.asarray(array[...])

    def put(self, encoder_spec: str, dataset_fp: str, episode: int, view: str, features: np.ndarray) -> None:
        """Store (T, D) features, replacing whatever was there; marked complete only once fully written."""
        features = np.asarray(features)
        if features.ndim != 2:
            raise ValueError(f"features must be (frames, dim), got shape {features.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            stored = features.astype(self.dtype)
        if np.issubdtype(self.dtype, np.floating) and not np.isfinite(stored).all() and np.isfinite(features).all():
            raise ValueError(
                f"features overflow {self.dtype} (largest magnitude {np.abs(features).max():.3g}); "
                "use FeatureCache(root, dtype=np.float32)"
            )
        group = self._open(create=True)
        spec_group = group.require_group(node_name(encoder_spec))
        if "encoder_spec" not in spec_group.attrs:
            spec_group.attrs["encoder_spec"] = encoder_spec
        episode_group = group.require_group(self._path(encoder_spec, dataset_fp, episode))
        array = episode_group.create_array(
            node_name(view),
            shape=stored.shape,
            dtype=stored.dtype,
            chunks=(max(stored.shape[0], 1), max(stored.shape[1], 1)),
            overwrite=True,
        )
        if stored.size:
            array[...] = stored
        array.attrs.update({"view": view, COMPLETE: True})


def _device(encoder: FrameEncoder) -> torch.device:
    for tensor in (*encoder.parameters(), *encoder.buffers()):
        return tensor.device
    return torch.device("cpu")


def _encode_frames(encoder: FrameEncoder, frames: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, D) float32 features, `batch_size` frames at a time."""
    parts = [np.zeros((0, encoder.output_dim), dtype=np.float32)]
    with torch.no_grad():
        for start in range(0, len(frames), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + batch_size])).to(device)
            images = batch.permute(0, 3, 1, 2).float().div_(255.0)
            features = encoder(images)
            if features.shape != (len(batch), encoder.output_dim):
                raise ValueError(
                    f"encoder {encoder.spec()} returned {tuple(features.shape)} for {len(batch)} frames; "
                    f"expected ({len(batch)}, {encoder.output_dim})"
                )
            parts.append(features.float().cpu().numpy())
    return np.concatenate(parts)


def cache_dataset_features(
    reader: Any,
    encoder: FrameEncoder,
    cache: FeatureCache,
    views: list[str] | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, int]:
    """Encode every episode and view of `reader`'s dataset that `cache` lacks; reuse the rest.

    Each episode with something missing is decoded once, for its missing views only. Returns
    `{"encoded": episodes with new features, "reused": episodes fully cached, "frames": frames encoded}`.
    """
    if encoder.trainable:
        raise HeadwayError(
            f"encoder {encoder.spec()} is trainable, so its features change as it learns and cannot be cached; "
            "cache features of a frozen tower (hf:<model>)"
        )
    views = list(views) if views is not None else list(reader.views)
    spec = encoder.spec()
    fingerprint = dataset_fingerprint(reader.root)
    device = _device(encoder)
    counts = {"encoded": 0, "reused": 0, "frames": 0}
    bar = tqdm(range(reader.num_episodes), desc=f"features {Path(reader.root).name}", unit="ep", disable=not progress)
    for index in bar:
        missing = [view for view in views if not cache.has(spec, fingerprint, index, view)]
        if not missing:
            counts["reused"] += 1
            continue
        episode = reader.episode(index, views=missing)
        for view in missing:
            frames = episode.images[view]
            cache.put(spec, fingerprint, index, view, _encode_frames(encoder, frames, batch_size, device))
            counts["frames"] += len(frames)
        counts["encoded"] += 1
        bar.set_postfix(encoded=counts["encoded"], reused=counts["reused"])
    return counts
