"""Behaviour-cloning samples from a LeRobot v3.0 dataset: observations, action chunks, RA-BC weights.

Works on headway's datasets and on any LeRobot v3.0 dataset with `observation.state` and `action`
(`observation.environment_state`, the object state, is used when present). One sample per frame:
the observation at frame t and the actions t .. t+H-1; past the episode's end the chunk is padded
with the last action and masked out of the loss (as LeRobot's ACT does with `action_is_pad`).

Progress labels for RA-BC are read from LeRobot's `sarm_progress.parquet` (columns `index`,
`episode_index`, `frame_index`, `progress_sparse`), or from a folder that holds one; labelled
success (success filtering) from a `headway label` folder's `labels.parquet`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from headway.atomic import atomic_write_bytes
from headway.datasets.reader import DatasetReader
from headway.errors import HeadwayError
from headway.perception.preprocess import resize_frames
from headway.reward.label_inputs import dataset_fingerprint, model_fingerprint

STATE_KEY = "observation.state"
OBJECT_KEY = "observation.environment_state"
ACTION_KEY = "action"
PROGRESS_FILE = "sarm_progress.parquet"
PROGRESS_COLUMN = "progress_sparse"
LABEL_CARD = "labels.json"  # a `headway label` folder: its card (identity, settings) ...
LABEL_TABLE = "labels.parquet"  # ... and its table (progress, stage, success, shaped reward ... per frame)


@dataclass
class BCSamples:
    """Every frame of the chosen episodes as a training sample."""

    state: np.ndarray  # (N, S) float32: observation.state then observation.environment_state (if used)
    actions: np.ndarray  # (N, H, A) float32 action chunks
    action_mask: np.ndarray  # (N, H) bool, False where the chunk ran past the episode's end
    episode_index: np.ndarray  # (N,) dataset episode index of each sample
    frame_index: np.ndarray  # (N,) frame within its episode
    state_keys: tuple[str, ...]
    state_dims: tuple[int, ...]
    images: dict[str, np.ndarray] | None = None  # view -> (N, H, W, 3) uint8

    def __len__(self) -> int:
        return int(self.state.shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[-1])

    @property
    def episode_lengths(self) -> dict[int, int]:
        episodes, counts = np.unique(self.episode_index, return_counts=True)
        return dict(zip(episodes.tolist(), counts.tolist()))


def action_chunks(actions: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, A) actions -> (T, H, A) chunks starting at every frame, padded with the last action, and the mask."""
    length = len(actions)
    steps = np.arange(length)[:, None] + np.arange(chunk)[None, :]
    mask = steps < length
    return actions[np.minimum(steps, length - 1)], mask


def load_bc_samples(
    root: Path,
    chunk: int = 10,
    images: bool = False,
    views: list[str] | None = None,
    image_size: int | None = None,
    use_object_state: bool = True,
    episodes: list[int] | None = None,
    progress: bool = True,
) -> BCSamples:
    """Read a dataset into BC samples; `images` decodes `views` (default: all cameras) at `image_size`."""
    if chunk < 1:
        raise HeadwayError(f"--chunk must be at least 1 action, got {chunk}")
    reader = DatasetReader(root)
    views = list(views) if views else list(reader.views)
    if images:
        if not views:
            raise HeadwayError(f"{root} has no cameras; train with --obs state")
        for view in views:
            if view not in reader.views:
                raise HeadwayError(f"{root} has no camera {view!r}; its cameras are: {', '.join(reader.views) or 'none'}")
    chosen = list(range(reader.num_episodes)) if episodes is None else list(episodes)
    if not chosen:
        raise HeadwayError("no episodes to train on; check the episode selection")
    states, chunks, masks, episode_ids, frame_ids = [], [], [], [], []
    frames: dict[str, list[np.ndarray]] = {v: [] for v in views} if images else {}
    keys: tuple[str, ...] | None = None
    dims: tuple[int, ...] | None = None
    for index in tqdm(chosen, desc=f"read {Path(root).name}", disable=not progress):
        episode = reader.episode(index, views=views if images else [], decode=images)
        arrays = episode.arrays
        for needed in (STATE_KEY, ACTION_KEY):
            if needed not in arrays:
                raise HeadwayError(
                    f"{root} has no {needed!r} feature (it has: {', '.join(sorted(arrays))}); "
                    "BC needs observation.state and action"
                )
        episode_keys = (STATE_KEY, OBJECT_KEY) if use_object_state and OBJECT_KEY in arrays else (STATE_KEY,)
        if keys is None:
            keys = episode_keys
        elif keys != episode_keys:
            raise HeadwayError(f"episode {index} of {root} has features {episode_keys}, earlier episodes {keys}")
        parts = [np.asarray(arrays[k], dtype=np.float32).reshape(episode.length, -1) for k in keys]
        episode_dims = tuple(int(p.shape[1]) for p in parts)
        if dims is None:
            dims = episode_dims
        elif dims != episode_dims:
            raise HeadwayError(f"episode {index} of {root} has feature sizes {episode_dims}, earlier episodes {dims}")
        action = np.asarray(arrays[ACTION_KEY], dtype=np.float32).reshape(episode.length, -1)
        chunk_actions, mask = action_chunks(action, chunk)
        states.append(np.concatenate(parts, axis=1))
        chunks.append(chunk_actions)
        masks.append(mask)
        episode_ids.append(np.full(episode.length, index, dtype=np.int64))
        frame_ids.append(np.arange(episode.length, dtype=np.int64))
        if images:
            for view in views:
                view_frames = episode.images[view]
                frames[view].append(resize_frames(view_frames, image_size) if image_size else view_frames)
    assert keys is not None and dims is not None
    state = np.concatenate(states)
    if not np.isfinite(state).all() or not np.isfinite(np.concatenate(chunks)).all():
        raise HeadwayError(f"{root} has NaN or infinite states or actions; clean the dataset first")
    return BCSamples(
        state=state,
        actions=np.concatenate(chunks),
        action_mask=np.concatenate(masks),
        episode_index=np.concatenate(episode_ids),
        frame_index=np.concatenate(frame_ids),
        state_keys=keys,
        state_dims=dims,
        images={v: np.concatenate(f) for v, f in frames.items()} if images else None,
    )


# -- RA-BC progress labels ---------------------------------------------------------------------
def progress_file(path: Path) -> Path:
    """`path` itself if it is a parquet file, else the `sarm_progress.parquet` inside the folder `path`."""
    path = Path(path)
    if path.is_dir():
        candidate = path / PROGRESS_FILE
        if not candidate.exists():
            raise HeadwayError(
                f"{path} has no {PROGRESS_FILE}; label the dataset first (`headway label`) "
                f"or pass the parquet file itself with --labels"
            )
        return candidate
    if not path.exists():
        raise HeadwayError(f"progress labels {path} do not exist; pass a {PROGRESS_FILE} or the folder holding it")
    return path


def read_progress(path: Path, episode_lengths: dict[int, int]) -> dict[int, np.ndarray]:
    """Per-episode progress (frame order) from a sarm_progress.parquet, checked against the dataset.

    `episode_lengths` maps each dataset episode used to its frame count. Labels with a different
    frame count, missing episodes or frames, or NaN progress are refused with the episode named.
    """
    import pandas as pd

    file = progress_file(path)
    table = pd.read_parquet(file)
    missing = {"episode_index", "frame_index", PROGRESS_COLUMN} - set(table.columns)
    if missing:
        raise HeadwayError(
            f"{file} lacks columns {sorted(missing)}; expected LeRobot's schema "
            f"(index, episode_index, frame_index, {PROGRESS_COLUMN})"
        )
    groups = {int(e): g for e, g in table.groupby("episode_index")}
    result = {}
    for episode, length in episode_lengths.items():
        rows = groups.get(int(episode))
        if rows is None:
            raise HeadwayError(f"{file} has no progress for episode {episode}; the labels belong to another dataset. Relabel it")
        rows = rows.sort_values("frame_index")
        frames = rows["frame_index"].to_numpy()
        if len(rows) != length or not np.array_equal(frames, np.arange(length)):
            raise HeadwayError(
                f"{file}: episode {episode} has {len(rows)} labelled frames but the dataset has {length}; "
                "the labels do not match this dataset. Relabel it with the same dataset"
            )
        values = rows[PROGRESS_COLUMN].to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            frame = int(frames[np.flatnonzero(~np.isfinite(values))[0]])
            raise HeadwayError(f"{file}: progress of episode {episode} is NaN at frame {frame}; relabel it")
        result[int(episode)] = values
    return result


def _folder_of(path: Path) -> Path:
    """`path` itself, or the folder of a labels.parquet / sarm_progress.parquet given."""
    path = Path(path)
    return path.parent if path.suffix == ".parquet" else path


def headway_label_folder(path: Path) -> Path | None:
    """The `headway label` folder at `path` (or holding the labels.parquet / sarm_progress.parquet given);
    None when there is none, e.g. a bare sarm_progress.parquet from LeRobot's own labelling."""
    folder = _folder_of(path)
    return folder if (folder / LABEL_CARD).exists() and (folder / LABEL_TABLE).exists() else None


def label_folder(path: Path) -> Path:
    """The label folder: `path` itself, or the folder of a labels.parquet / sarm_progress.parquet given."""
    folder = headway_label_folder(path)
    if folder is None:
        folder = _folder_of(path)
        if not folder.exists():
            raise HeadwayError(f"labels {path} do not exist; label the dataset first with `headway label`")
        raise HeadwayError(
            f"{folder} is not a headway label folder (it needs {LABEL_CARD} and {LABEL_TABLE}; a bare "
            "sarm_progress.parquet holds progress only, no rewards); label the dataset with `headway label`"
        )
    return folder


def check_label_provenance(folder: Path, dataset: Path, model: Path | None = None, force: bool = False) -> list[str]:
    """Refuse labels made from another dataset or model (fingerprints), unless `force`; returns notes.

    Checked: the card's dataset fingerprint against this dataset's; the table's model fingerprint
    against the card's (a labels.parquet copied in from another run); with `model`, its fingerprint
    against the card's.
    """
    import pyarrow.parquet as pq

    identity = json.loads((folder / LABEL_CARD).read_text()).get("identity", {})
    problems = []
    here = dataset_fingerprint(dataset)
    if identity.get("dataset_fingerprint") != here:
        problems.append(
            f"the labels in {folder} were made from dataset {identity.get('dataset')} (fingerprint "
            f"{identity.get('dataset_fingerprint')}), not from {Path(dataset).resolve()} (fingerprint {here})"
        )
    metadata = pq.read_schema(folder / LABEL_TABLE).metadata or {}
    table_identity = json.loads(metadata.get(b"headway", b"{}"))
    if table_identity.get("model_fingerprint") != identity.get("model_fingerprint"):
        problems.append(
            f"{folder / LABEL_TABLE} was written by model {table_identity.get('model')} (fingerprint "
            f"{table_identity.get('model_fingerprint')}) but {folder / LABEL_CARD} names model {identity.get('model')} "
            f"(fingerprint {identity.get('model_fingerprint')})"
        )
    if model is not None:
        wanted = model_fingerprint(model)
        if identity.get("model_fingerprint") != wanted:
            problems.append(
                f"the labels in {folder} were made by model {identity.get('model')} (fingerprint "
                f"{identity.get('model_fingerprint')}), not by {Path(model).resolve()} (fingerprint {wanted})"
            )
    if problems and not force:
        raise HeadwayError(
            "; ".join(problems) + ". Relabel the dataset with `headway label`, or pass --force to use these labels anyway"
        )
    return [f"--force: {p}" for p in problems]


def labelled_successes(labels: Path, episode_lengths: dict[int, int], threshold: float = 0.5) -> list[int]:
    """The episodes whose labelled success probability (a `headway label` folder's labels.parquet) ends at
    `threshold` or above: success filtering for data that records no outcome of its own."""
    import pandas as pd

    file = label_folder(labels) / LABEL_TABLE
    table = pd.read_parquet(file, columns=["episode_index", "frame_index", "success"])
    groups = {int(e): g for e, g in table.groupby("episode_index")}
    kept = []
    for episode, length in episode_lengths.items():
        rows = groups.get(int(episode))
        if rows is None or len(rows) != length:
            raise HeadwayError(f"{file}: episode {episode} has {0 if rows is None else len(rows)} labelled frames but the dataset has "
                               f"{length}; the labels belong to another dataset. Relabel it")
        last = float(rows.sort_values("frame_index")["success"].iloc[-1])
        if not np.isfinite(last):
            raise HeadwayError(f"{file}: the labelled success of episode {episode} is NaN on its last frame; relabel it")
        if last >= threshold:
            kept.append(int(episode))
    return kept


def write_progress(path: Path, episodes_progress: dict[int, np.ndarray], dataset_lengths: dict[int, int] | None = None) -> Path:
    """Write a sarm_progress.parquet in LeRobot's schema (atomically). `index` is the dataset-global frame
    index: computed from `dataset_lengths` (every episode's length) when given, else from the episodes written."""
    import pandas as pd

    lengths = dataset_lengths or {e: len(p) for e, p in episodes_progress.items()}
    offsets, total = {}, 0
    for episode in sorted(lengths):
        offsets[episode] = total
        total += lengths[episode]
    rows = []
    for episode in sorted(episodes_progress):
        values = np.asarray(episodes_progress[episode], dtype=np.float32)
        frames = np.arange(len(values))
        rows.append(
            pd.DataFrame(
                {
                    "index": offsets[episode] + frames,
                    "episode_index": np.full(len(values), episode),
                    "frame_index": frames,
                    PROGRESS_COLUMN: values,
                }
            )
        )
    path = Path(path)
    if path.suffix != ".parquet":
        path = path / PROGRESS_FILE
    import io

    buffer = io.BytesIO()
    pd.concat(rows, ignore_index=True).to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())
    return path
