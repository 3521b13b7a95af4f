"""Offline reward labelling of LeRobot v3.0 datasets: resumable, crash-safe, in bounded memory.

    summary = label_dataset(LabelConfig(dataset="data/lift", model="models/lift"))

Every frame of every episode is scored causally by any headway reward model and written to
`<out>` (default: the sibling folder `<dataset>.labels`; the source dataset is never touched):

- `sarm_progress.parquet`: LeRobot's schema (`index`, `episode_index`, `frame_index` int64,
  `progress_sparse` float32), read unchanged by `lerobot.rewards.sarm.rabc.RABCWeights` and therefore by
  `lerobot-train --sample_weighting.type=rabc --sample_weighting.progress_path=<it>`;
- `labels.parquet`: headway's full table, one row per frame (progress, stage, stage name and
  probabilities, success probability, uncertainty, potential-based shaped reward for `gamma`,
  RA-BC weight for `chunk_size`);
- `labels.json`: the card (model and dataset fingerprints, settings, counts) that makes a later
  run refuse a folder holding labels from another model, dataset or settings.

Crash safety (headway.run_dir): each scored episode is staged as one file in `<out>.partial/episodes/`
with an atomic write; the final files are assembled from the staged ones only when every episode
is done and renamed onto `<out>` in one step. After a kill at any moment, `resume=True` scores
only the missing episodes and writes final files byte-for-byte equal to an uninterrupted run's.
One episode is decoded (in a background thread, while the previous one is scored) and one is
scored at a time, so memory does not grow with the number of episodes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headway.atomic import atomic_write_bytes, atomic_write_json, read_json
from headway.datasets.reader import IMAGE_PREFIX, DatasetReader, Episode
from headway.errors import HeadwayError
from headway.executors import ray_settings
from headway.run_dir import RunDir
from headway.runtime import torch_threads

FORMAT = "headway.labels"
FORMAT_VERSION = 1
CARD_FILE = "labels.json"
PROGRESS_FILE = "sarm_progress.parquet"
TABLE_FILE = "labels.parquet"
PLOTS_DIR = "plots"
IDENTITY_FILE = "identity.json"  # in the partial area while labelling


# -- configuration ---------------------------------------------------------------------------------
def parse_episodes(text: str | None) -> tuple[int, ...] | None:
    """'0-99,120,130-131' -> (0, ..., 99, 120, 130, 131); None or '' -> None (all episodes)."""
    if text is None or not str(text).strip():
        return None
    episodes: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise HeadwayError(f"bad episode range {part!r} in --episodes {text!r}; write e.g. 0-99,120")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise HeadwayError(f"episode range {part!r} goes backwards; write {last}-{first}")
        episodes.extend(range(first, last + 1))
    return tuple(sorted(set(episodes)))


def parse_view_mapping(pairs: list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """['agentview=observation.images.top', ...] -> {model view: dataset camera key}."""
    mapping: dict[str, str] = {}
    for pair in pairs or ():
        model_view, sep, dataset_key = str(pair).partition("=")
        if not sep or not model_view.strip() or not dataset_key.strip():
            raise HeadwayError(f"bad --view {pair!r}; write MODEL_VIEW=DATASET_KEY, e.g. agentview=observation.images.top")
        if model_view.strip() in mapping:
            raise HeadwayError(f"--view maps the model view {model_view.strip()!r} twice; give each model view once")
        mapping[model_view.strip()] = dataset_key.strip()
    return mapping


@dataclass
class LabelConfig:
    """What to label, with which model, and the settings that shape the labels.

    dataset: a local LeRobot v3.0 dataset folder (or a hub id already in lerobot's cache, or any
    hub id with `allow_download`); model: a headway reward checkpoint folder; out: output folder
    (default `<dataset>.labels`); views: model view -> dataset camera key (others matched by
    name); episodes: which episodes (default all); gamma: discount of the shaped reward;
    chunk_size: RA-BC action-chunk length H; plots: episodes to draw; write_dataset: folder for a
    copy of the dataset with the labels added as features.
    """

    dataset: Path | str
    model: Path | str
    out: Path | None = None
    views: dict[str, str] = field(default_factory=dict)
    episodes: tuple[int, ...] | None = None
    gamma: float = 0.99
    chunk_size: int = 50
    batch_size: int = 256
    device: str | None = None
    plots: int = 0
    write_dataset: Path | None = None
    allow_download: bool = False
    threads: int | None = None  # torch threads while scoring; None: all cores but one, which decodes
    # where scoring runs: None on this process; "ray" on a Ray cluster (headway.executors), at `address`
    # (None: start Ray here), with `workers` model actors of `gpus_per_worker` GPUs each
    executor: str | None = None
    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None

    def __post_init__(self) -> None:
        self.out = None if self.out is None else Path(self.out)
        self.write_dataset = None if self.write_dataset is None else Path(self.write_dataset)
        if isinstance(self.views, (list, tuple)):
            self.views = parse_view_mapping(self.views)
        self.views = dict(self.views)
        if isinstance(self.episodes, str):
            self.episodes = parse_episodes(self.episodes)
        if self.episodes is not None:
            self.episodes = tuple(sorted({int(e) for e in self.episodes}))
            if not self.episodes or self.episodes[0] < 0:
                raise HeadwayError(f"episodes must be non-negative episode indices, got {self.episodes[:5]}")
        if not 0.0 <= float(self.gamma) <= 1.0:
            raise HeadwayError(f"--gamma must be in [0, 1] (the learner's discount), got {self.gamma}")
        self.gamma = float(self.gamma)
        if int(self.chunk_size) < 1:
            raise HeadwayError(f"--chunk-size must be at least 1 frame (the policy's action chunk), got {self.chunk_size}")
        if int(self.batch_size) < 1:
            raise HeadwayError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.threads is not None and int(self.threads) < 1:
            raise HeadwayError(f"--threads must be at least 1, got {self.threads}")
        if int(self.plots) < 0:
            raise HeadwayError(f"--plots must be 0 or more episodes, got {self.plots}")
        self.chunk_size, self.batch_size, self.plots = int(self.chunk_size), int(self.batch_size), int(self.plots)
        ray_settings(self.executor, self.address, self.workers, self.gpus_per_worker)  # flag errors before any work


@dataclass
class LabelSummary:
    """What a labelling run did and where its files are."""

    out: Path
    progress_path: Path
    table_path: Path
    card_path: Path
    episodes: int
    frames: int
    seconds: float
    scored_episodes: int  # scored by this run (the rest were staged before, or already complete)
    scored_frames: int
    views: dict[str, str]
    mean_final_progress_success: float | None
    mean_final_progress_failure: float | None
    successes: int | None
    failures: int | None
    plots: list[Path] = field(default_factory=list)
    dataset_copy: Path | None = None
    total_seconds: float = 0.0  # with plots and the dataset copy
    scoring_seconds: float = 0.0  # decoding + scoring + staging only (no start-up, no assembly)
    ray_startup_seconds: float = 0.0  # connecting to / starting Ray (--executor ray), outside scoring_seconds
    notes: list[str] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        """Frames scored by this run per second of labelling (decode + inference + writing)."""
        return self.scored_frames / self.seconds if self.seconds > 0 and self.scored_frames else float("nan")

    def lerobot_arguments(self) -> str:
        """The options that make lerobot's training script use these labels for RA-BC."""
        return f"--sample_weighting.type=rabc --sample_weighting.progress_path={self.progress_path}"

    def render(self) -> str:
        lines = [
            f"labelled {self.episodes} episodes, {self.frames} frames in {self.seconds:.1f} s "
            + (f"({self.frames_per_second:,.0f} frames/s with start-up and assembly, "
               f"{self.scored_frames / max(self.scoring_seconds, 1e-9):,.0f} frames/s decoding and scoring; "
               f"{self.scored_episodes} episodes scored by this run)"
               if self.scored_frames else "(all already labelled)"),
            f"views (model <- dataset): {', '.join(f'{m} <- {d}' for m, d in self.views.items())}",
        ]
        if self.ray_startup_seconds:
            lines.append(f"Ray start-up: {self.ray_startup_seconds:.1f} s (not in the decoding-and-scoring rate)")
        if self.mean_final_progress_success is not None or self.mean_final_progress_failure is not None:
            def show(value: float | None, count: int | None) -> str:
                return "n/a" if value is None else f"{value:.3f} over {count}"

            lines.append(
                f"mean final progress: successful episodes {show(self.mean_final_progress_success, self.successes)}, "
                f"failed episodes {show(self.mean_final_progress_failure, self.failures)}"
            )
        lines += [f"note: {note}" for note in self.notes]
        lines += [
            f"progress for LeRobot RA-BC: {self.progress_path}",
            f"  lerobot-train ... {self.lerobot_arguments()}",
            f"full label table: {self.table_path}",
            f"card: {self.card_path}",
        ]
        if self.plots:
            lines.append(f"plots: {len(self.plots)} files in {self.plots[0].parent}")
        if self.dataset_copy is not None:
            lines.append(f"labelled dataset copy (LeRobotDataset): {self.dataset_copy}")
        return "\n".join(lines)


# -- inputs ----------------------------------------------------------------------------------------
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
    from headway.reward.loading import load_reward_model

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
    from headway.reward.loading import reward_model_spec

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


# -- the output folder -----------------------------------------------------------------------------
def default_out(root: Path) -> Path:
    return root.parent / f"{root.name}.labels"


def _run_dir(out: Path, identity: dict) -> RunDir:
    return RunDir(out, job="labelling run", identity=identity, identity_file=IDENTITY_FILE, finished=_finished_identity)


def _finished_identity(out: Path) -> dict | None:
    """The identity of the labels at `out` (None: not a headway label folder)."""
    card = out / CARD_FILE
    return read_json(card).get("identity", {}) if card.exists() else None


# -- per-episode work ------------------------------------------------------------------------------
def _episode_file(partial: Path, index: int) -> Path:
    return partial / "episodes" / f"episode_{index:06d}.npz"


def _outcome(episode: Episode) -> int:
    """1 success, 0 failure, -1 unknown: headway's episode outcome, else the recorded `next.success`."""
    if episode.outcome is not None:
        return int(episode.outcome.success)
    success = episode.arrays.get("next.success")
    if success is not None and len(success):
        return int(bool(np.asarray(success, dtype=bool).any()))
    return -1


def _terminated(episode: Episode) -> bool:
    """The last frame is a true success terminal (next.done and next.success), not a truncation."""
    done, success = episode.arrays.get("next.done"), episode.arrays.get("next.success")
    if done is None or success is None or not len(done):
        return False
    return bool(np.asarray(done, dtype=bool)[-1] and np.asarray(success, dtype=bool)[-1])


def _check_state(episode: Episode) -> np.ndarray | None:
    state = episode.state
    if state is None:
        return None
    state = np.asarray(state, dtype=np.float64)
    bad = ~np.isfinite(state.reshape(len(state), -1)).all(axis=1)
    if bad.any():
        raise HeadwayError(
            f"episode {episode.index}: observation.state is NaN or infinite at frame {int(np.flatnonzero(bad)[0])}; "
            "fix the recording, or leave the episode out with --episodes"
        )
    return state


def _score(model, episode: Episode, mapping: dict[str, str], batch_size: int) -> dict[str, np.ndarray]:
    from headway.perception.preprocess import resize_frames

    state = _check_state(episode)
    images = {view: resize_frames(episode.images[key], model.image_size) for view, key in mapping.items()}
    output = model.score_episode(images, episode.task, state, batch_size)
    if len(output) != episode.length:
        raise HeadwayError(f"episode {episode.index}: the model returned {len(output)} scores for {episode.length} frames")
    bad = np.flatnonzero(~np.isfinite(np.asarray(output.progress, dtype=np.float64)))
    if len(bad):
        raise HeadwayError(f"episode {episode.index}: the model gave no usable progress for frame {bad[0]} "
                           f"({len(bad)} frames); RA-BC statistics cannot include it")
    index = episode.arrays.get("index")
    frame_index = episode.arrays.get("frame_index")
    reward = episode.arrays.get("next.reward")
    return {
        "index": np.asarray(index, dtype=np.int64),
        "frame_index": np.asarray(frame_index if frame_index is not None else np.arange(episode.length), dtype=np.int64),
        "progress": np.asarray(output.progress, dtype=np.float32),
        "stage": np.asarray(output.stage, dtype=np.int64),
        "stage_probs": np.asarray(output.stage_probs, dtype=np.float32),
        "success": np.asarray(output.success, dtype=np.float32),
        "uncertainty": np.asarray(output.uncertainty, dtype=np.float32),
        "task_reward": np.zeros(episode.length) if reward is None else np.asarray(reward, dtype=np.float64).reshape(-1),
        "terminated": np.asarray(_terminated(episode)),
        "outcome": np.asarray(_outcome(episode)),
    }


def _stage(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _load_staged(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


class _Prefetcher:
    """Decodes the next episode in a background thread while the current one is scored."""

    def __init__(self, reader: DatasetReader, episodes: list[int], views: list[str]) -> None:
        self.reader, self.episodes, self.views = reader, episodes, views
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="headway-decode")
        self.pending: Future | None = None
        self.position = 0

    def _submit(self) -> None:
        if self.position < len(self.episodes):
            index = self.episodes[self.position]
            self.pending = self.pool.submit(self.reader.episode, index, self.views)
            self.position += 1
        else:
            self.pending = None

    def __iter__(self):
        self._submit()
        while self.pending is not None:
            episode = self.pending.result()
            self._submit()  # decode the next while the caller scores this one
            yield episode

    def close(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


# -- assembly --------------------------------------------------------------------------------------
def _combine(stats: tuple[int, float, float], values: np.ndarray) -> tuple[int, float, float]:
    """Chan's parallel update of (count, mean, sum of squared deviations): exact global mean/std in one pass."""
    count, mean, m2 = stats
    n = len(values)
    if n == 0:
        return stats
    batch_mean = float(values.mean())
    batch_m2 = float(((values - batch_mean) ** 2).sum())
    total = count + n
    delta = batch_mean - mean
    return total, mean + delta * n / total, m2 + batch_m2 + delta * delta * count * n / total


def _assemble(partial: Path, episodes: list[int], identity: dict, stage_names: tuple[str, ...]) -> dict:
    """Write the final label table and LeRobot progress file from the staged episodes, two streaming passes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from headway.reward.rabc import EPSILON, RABCStatistics, progress_deltas, weights_from_deltas
    from headway.reward.shaping import potential_based_rewards

    chunk, gamma = identity["chunk_size"], identity["gamma"]
    stats = (0, 0.0, 0.0)
    for index in episodes:  # pass 1: RA-BC statistics over every frame's progress delta
        with np.load(_episode_file(partial, index)) as data:
            stats = _combine(stats, progress_deltas(data["progress"].astype(np.float64), chunk))
    count, mean, m2 = stats
    rabc = RABCStatistics(max(mean, 0.0), max(float(np.sqrt(m2 / count)) if count else 0.0, EPSILON))

    metadata = {b"headway": json.dumps(identity, sort_keys=True).encode(), b"reward_model_path": identity["model"].encode()}
    table_schema = pa.schema(
        [
            ("index", pa.int64()),
            ("episode_index", pa.int64()),
            ("frame_index", pa.int64()),
            ("progress", pa.float32()),
            ("stage", pa.int64()),
            ("stage_name", pa.string()),
            ("stage_probs", pa.list_(pa.float32(), max(len(stage_names), 1))),
            ("success", pa.float32()),
            ("uncertainty", pa.float32()),
            ("reward", pa.float32()),
            ("rabc_weight", pa.float32()),
        ],
        metadata=metadata,
    )
    progress_schema = pa.schema(
        [("index", pa.int64()), ("episode_index", pa.int64()), ("frame_index", pa.int64()), ("progress_sparse", pa.float32())],
        metadata=metadata,
    )
    table_tmp, progress_tmp = partial / f".{TABLE_FILE}.tmp", partial / f".{PROGRESS_FILE}.tmp"
    finals: dict[str, list[float]] = {"success": [], "failure": []}
    frames = 0
    names = np.asarray(stage_names, dtype=object)
    with pq.ParquetWriter(table_tmp, table_schema) as table_writer, pq.ParquetWriter(progress_tmp, progress_schema) as progress_writer:
        for index in episodes:  # pass 2: one row group per episode
            data = _load_staged(_episode_file(partial, index))
            progress = data["progress"]
            length = len(progress)
            weights = weights_from_deltas(progress_deltas(progress.astype(np.float64), chunk), rabc)
            shaped = potential_based_rewards(progress, data["task_reward"], gamma, bool(data["terminated"]))
            episode_index = np.full(length, index, dtype=np.int64)
            if stage_names:
                probs = pa.FixedSizeListArray.from_arrays(pa.array(data["stage_probs"].reshape(-1)), len(stage_names))
                stage, stage_name = pa.array(data["stage"]), pa.array(names[data["stage"]], type=pa.string())
            else:  # the model has no stages: null columns, never placeholder values
                probs = pa.nulls(length, pa.list_(pa.float32(), 1))
                stage, stage_name = pa.nulls(length, pa.int64()), pa.nulls(length, pa.string())
            columns = [
                pa.array(data["index"]),
                pa.array(episode_index),
                pa.array(data["frame_index"]),
                pa.array(progress),
                stage,
                stage_name,
                probs,
                pa.array(data["success"], from_pandas=True),  # NaN (an absent output) -> null
                pa.array(data["uncertainty"], from_pandas=True),
                pa.array(shaped),
                pa.array(weights),
            ]
            table_writer.write_table(pa.Table.from_arrays(columns, schema=table_schema))
            progress_writer.write_table(pa.Table.from_arrays(columns[:4], schema=progress_schema))
            outcome = int(data["outcome"])
            if outcome >= 0:
                finals["success" if outcome else "failure"].append(float(progress[-1]))
            frames += length
    return {
        "frames": frames,
        "table_tmp": table_tmp,
        "progress_tmp": progress_tmp,
        "rabc": {"delta_mean": rabc.delta_mean, "delta_std": rabc.delta_std},
        "finals": finals,
    }


# -- the pipeline ----------------------------------------------------------------------------------
def label_dataset(config: LabelConfig, resume: bool = False, overwrite: bool = False, progress: bool = True) -> LabelSummary:
    """Label every frame of `config.dataset` with `config.model`; see the module docstring.

    resume: finish an interrupted run in the output folder (or accept labels it already holds);
    overwrite: replace labels from another model/dataset/settings or an interrupted run;
    progress: show a tqdm bar with frames/s. Returns a `LabelSummary` (`.render()` prints it).
    """
    started = time.perf_counter()
    root = resolve_dataset(config.dataset, config.allow_download)
    reader = DatasetReader(root)
    from headway.reward.loading import reward_model_spec

    spec = reward_model_spec(config.model)
    model_path = Path(config.model)
    if spec is None and not model_path.exists():
        raise HeadwayError(f"reward model {model_path} does not exist; pass a checkpoint folder written by `headway reward train`")
    model = load_model(config.model, config.device)
    mapping = match_views(tuple(model.views), reader.camera_keys, config.views)
    episodes = list(config.episodes) if config.episodes is not None else list(range(reader.num_episodes))
    missing = [e for e in episodes if e >= reader.num_episodes]
    if missing:
        raise HeadwayError(
            f"--episodes asks for episode {missing[0]} but {root} has episodes 0-{reader.num_episodes - 1}"
        )
    if not episodes:
        raise HeadwayError(f"{root} has no episodes to label")
    out = Path(config.out) if config.out is not None else default_out(root)
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise HeadwayError(f"--out {out} is inside the dataset; labels are written beside it, never into it")

    notes = []
    unmatched = [v for v in model.views if v not in mapping]
    if unmatched:
        notes.append(f"the dataset has no camera for model view(s) {', '.join(unmatched)}; scored with {', '.join(mapping)} only")
    model_fps = getattr(getattr(model, "config", None), "fps", None)
    if model_fps and abs(float(model_fps) - reader.fps) > 1e-6:
        notes.append(f"the model was trained at {model_fps:g} fps and the dataset runs at {reader.fps:g} fps; "
                     "elapsed-time inputs differ from training")
    identity = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": spec or str(model_path.resolve()),
        "model_fingerprint": model_fingerprint(config.model),
        "dataset": str(root.resolve()),
        "dataset_fingerprint": dataset_fingerprint(root),
        "views": mapping,
        "episodes": _ranges(episodes),
        "gamma": config.gamma,
        "chunk_size": config.chunk_size,
        "batch_size": config.batch_size,
        "stage_names": list(model.stage_names),
        "image_size": int(model.image_size),
    }
    run = _run_dir(out, identity)
    scored, scored_frames, scoring_seconds, ray_startup = 0, 0, 0.0, 0.0
    if run.open(resume, overwrite) != "complete":
        partial = run.work
        todo = [e for e in episodes if not _episode_file(partial, e).exists()]
        import torch

        # decoding runs in its own thread: leave it a core, or torch's threads and it fight over the CPU
        threads = config.threads or max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))
        try:
            scoring_started = time.perf_counter()
            settings = ray_settings(config.executor, config.address, config.workers, config.gpus_per_worker)
            if settings is not None:  # the Ray scorer stages the same files (headway/reward/ray_labelling.py)
                from headway.reward.ray_labelling import score_on_ray

                worker_model = spec or str(model_path.resolve())
                scored_frames, ray_startup = score_on_ray(reader, worker_model, config.device, mapping, todo, partial,
                                                          config.batch_size, config.threads or 1, settings, progress)
                scored = len(todo)
            else:
                with torch_threads(threads):
                    scored, scored_frames = len(todo), _score_all(reader, model, mapping, todo, partial, config.batch_size, progress)
        except HeadwayError:
            run.discard_if_empty(lambda work: any((work / "episodes").glob("episode_*.npz")))
            raise
        scoring_seconds = time.perf_counter() - scoring_started - ray_startup
        assembled = _assemble(partial, episodes, identity, tuple(model.stage_names))
        build = partial / "labels"
        build.mkdir(exist_ok=True)
        os.replace(assembled["table_tmp"], build / TABLE_FILE)
        os.replace(assembled["progress_tmp"], build / PROGRESS_FILE)
        finals = assembled["finals"]
        card = {
            "identity": identity,  # no clock time: the same model on the same dataset writes the same bytes
            "episodes": len(episodes),
            "frames": assembled["frames"],
            "rabc_statistics": assembled["rabc"],
            "files": {"progress": PROGRESS_FILE, "table": TABLE_FILE},
            "final_progress": {k: [round(v, 6) for v in vals] for k, vals in finals.items()},
            "notes": notes,
        }
        atomic_write_json(build / CARD_FILE, card)
        run.publish(build)
    label_seconds = time.perf_counter() - started
    card = json.loads((out / CARD_FILE).read_text())
    finals = card["final_progress"]
    summary = LabelSummary(
        out=out,
        progress_path=out / PROGRESS_FILE,
        table_path=out / TABLE_FILE,
        card_path=out / CARD_FILE,
        episodes=card["episodes"],
        frames=card["frames"],
        seconds=label_seconds,
        scored_episodes=scored,
        scored_frames=scored_frames,
        scoring_seconds=scoring_seconds,
        ray_startup_seconds=ray_startup,
        views=mapping,
        mean_final_progress_success=float(np.mean(finals["success"])) if finals["success"] else None,
        mean_final_progress_failure=float(np.mean(finals["failure"])) if finals["failure"] else None,
        successes=len(finals["success"]) if finals["success"] or finals["failure"] else None,
        failures=len(finals["failure"]) if finals["success"] or finals["failure"] else None,
        notes=notes,
    )
    if config.plots:
        from headway.reward.label_outputs import draw_plots

        summary.plots = draw_plots(reader, out / TABLE_FILE, episodes[: config.plots], mapping, model.image_size, out / PLOTS_DIR)
    if config.write_dataset is not None:
        from headway.reward.label_outputs import write_labelled_dataset

        summary.dataset_copy = write_labelled_dataset(root, out / TABLE_FILE, config.write_dataset, overwrite=overwrite)
    summary.total_seconds = time.perf_counter() - started
    return summary


def _score_all(reader, model, mapping, todo: list[int], partial: Path, batch_size: int, progress: bool) -> int:
    """Decode (one episode ahead, in a thread), score and stage each episode in `todo`. Returns frames scored."""
    from tqdm import tqdm

    if not todo:
        return 0
    total = sum(reader.episode_length(e) for e in todo)
    prefetch = _Prefetcher(reader, todo, list(mapping.values()))
    bar = tqdm(total=total, unit="frame", desc="labelling", disable=not progress, dynamic_ncols=True)
    try:
        for episode in prefetch:
            _stage(_episode_file(partial, episode.index), _score(model, episode, mapping, batch_size))
            bar.update(episode.length)
    finally:
        prefetch.close()
        bar.close()
    return total


def _ranges(episodes: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (compact and exact, for the card)."""
    parts, start = [], None
    for i, e in enumerate(episodes):
        if start is None:
            start = e
        if i + 1 == len(episodes) or episodes[i + 1] != e + 1:
            parts.append(f"{start}-{e}" if e != start else f"{e}")
            start = None
    return ",".join(parts)

