"""What labelling reads: the dataset folder (or a hub id in lerobot's cache), the reward model,
the model-view to dataset-camera mapping, and fingerprints of both for the label card."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from headway.datasets.reader import IMAGE_PREFIX
from headway.errors import HeadwayError
from headway.reward.loading import load_reward_model, reward_model_spec


def resolve_dataset(dataset: Path | str, allow_download: bool = False) -> Path:
    """A local dataset folder: the path itself, or a hub id from lerobot's cache (downloaded only if allowed)."""
    path = Path(dataset).expanduser()
    if path.exists():
        return path
    text = str(dataset)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        from lerobot.utils.constants import HF_LEROBOT_HOME

        cached = Path(HF_LEROBOT_HOME) / text
        if (cached / "meta" / "info.json").exists():
            return cached
        if not allow_download:
            raise HeadwayError(
                f"{text!r} is neither a local folder nor a dataset in lerobot's cache ({cached}); "
                "pass a local dataset folder, or --allow-download to fetch it from the hub"
            )
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        return Path(LeRobotDataset(text, video_backend="pyav").root)
    raise HeadwayError(f"dataset {text} does not exist; pass a LeRobot v3.0 dataset folder")


def load_model(path: Path | str, device: str | None):
    """Load any headway reward model; every failure becomes an error that names the checkpoint."""
    try:
        return load_reward_model(path, device)
    except HeadwayError:
        raise
    except Exception as error:  # a damaged or foreign checkpoint raises whatever its loader raises
        raise HeadwayError(
            f"the reward model {path} cannot be loaded ({type(error).__name__}: {error}); "
            "pass a checkpoint folder written by `headway reward train`"
        ) from None


def match_views(model_views: tuple[str, ...], camera_keys: list[str], explicit: dict[str, str]) -> dict[str, str]:
    """Model view -> dataset camera key: explicit pairs first, then by name. Unmatched model views are left out."""
    def short(key: str) -> str:
        return key[len(IMAGE_PREFIX) :] if key.startswith(IMAGE_PREFIX) else key

    both_sides = f"model views: {', '.join(model_views)}; dataset cameras: {', '.join(camera_keys) or '(none)'}"
    mapping: dict[str, str] = {}
    for model_view, key in explicit.items():
        if model_view not in model_views:
            raise HeadwayError(f"--view {model_view}={key}: the model has no view {model_view!r} ({both_sides})")
        found = [k for k in camera_keys if key in (k, short(k))]
        if not found:
            raise HeadwayError(f"--view {model_view}={key}: the dataset has no camera {key!r} ({both_sides})")
        if found[0] in mapping.values():
            raise HeadwayError(f"--view maps camera {found[0]} to two model views; give each camera once")
        mapping[model_view] = found[0]
    for model_view in model_views:
        if model_view in mapping:
            continue
        for key in camera_keys:
            if key not in mapping.values() and model_view in (key, short(key)):
                mapping[model_view] = key
                break
    if not mapping:
        raise HeadwayError(
            f"no camera of the dataset matches a view of the model ({both_sides}); map them with "
            f"--view MODEL_VIEW=DATASET_KEY, e.g. --view {model_views[0]}={camera_keys[0] if camera_keys else 'observation.images.top'}"
        )
    return {view: mapping[view] for view in model_views if view in mapping}


def _hash_files(paths: list[Path], root: Path, digest, contents: bool = True) -> None:
    for path in paths:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if contents:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(str(path.stat().st_size).encode())
        digest.update(b"\0")


def dataset_fingerprint(root: Path) -> str:
    """sha256 of the dataset's metadata files, and of the names and sizes of its data and video files."""
    root = Path(root)
    digest = hashlib.sha256()
    meta = sorted(p for p in (root / "meta").rglob("*") if p.is_file())
    _hash_files(meta, root, digest)
    bulk = sorted(p for folder in ("data", "videos", "images") for p in (root / folder).rglob("*") if p.is_file())
    _hash_files(bulk, root, digest, contents=False)
    return digest.hexdigest()[:16]


def model_fingerprint(path: Path | str) -> str:
    """sha256 of a checkpoint folder's files (its config and weights; training state excluded); for a
    `PREFIX:REST` model spec, of the spec and of the files of the local folder it names, if any."""
    digest = hashlib.sha256()
    spec = reward_model_spec(path)
    if spec is not None:
        digest.update(spec.encode())
        local = [Path(piece) for piece in spec.split("?")[0].split(":") if piece and Path(piece).is_dir()]
        path = local[-1] if local else None
    if path is not None:
        path = Path(path)
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "train_state")))
        _hash_files(files, path, digest)
    return digest.hexdigest()[:16]
