"""Read LeRobot v3.0 datasets episode by episode, decoding each episode's videos sequentially.

Metadata comes from lerobot's `LeRobotDatasetMetadata` (local only: a folder missing its
metadata is an error, never a download). Frames are decoded with PyAV in one forward pass per
episode and view, which is far faster than item-by-item random access.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from headway.datasets.annotations import read_proportions, subtasks_from_row
from headway.errors import HeadwayError
from headway.stages import Subtask

CODEBASE_VERSION = "v3.0"
IMAGE_PREFIX = "observation.images."
# Simulator truths for calibration and evaluation sit under `oracle.`, not `observation.`: lerobot
# feeds every float `observation.*` feature to its policies as an input.
CAMERA_POSE_KEY = "oracle.camera_pose.{view}"
KEYPOINTS_KEY = "oracle.keypoints"  # (K * 3,) ground-truth affordance points, world frame
KEYPOINTS_VISIBLE_KEY = "oracle.keypoints_visible.{view}"  # (K,) 1.0 where the camera sees the point
# datasets written before the move name them under `observation.`; readers rename them on load
LEGACY_PREFIXES = {"observation.camera_pose.": "oracle.camera_pose.", "observation.keypoints": "oracle.keypoints"}


@dataclass(frozen=True)
class Outcome:
    """How a recorded episode ended, when the recorder knew it (headway's simulator does)."""

    success: bool
    mode: str
    quality: float


@dataclass
class Episode:
    """One episode: frames per view, per-frame arrays, annotations and outcome."""

    index: int
    task: str
    length: int
    images: dict[str, np.ndarray]  # view -> (T, H, W, 3) uint8
    arrays: dict[str, np.ndarray]  # feature key -> (T, ...) for every non-video feature
    subtasks: list[Subtask] | None
    outcome: Outcome | None
    fps: float

    @property
    def state(self) -> np.ndarray | None:
        return self.arrays.get("observation.state")

    @property
    def action(self) -> np.ndarray | None:
        return self.arrays.get("action")

    @property
    def scene(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per frame (stage, tau) the simulated scene showed, when the collection recorded it."""
        if "oracle.scene_stage" not in self.arrays or "oracle.scene_tau" not in self.arrays:
            return None
        return self.arrays["oracle.scene_stage"].reshape(-1), self.arrays["oracle.scene_tau"].reshape(-1)


@dataclass
class DatasetReader:
    """Episode-level access to a local LeRobot v3.0 dataset."""

    root: Path
    _file_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.exists():
            raise HeadwayError(f"{self.root} is not a LeRobot dataset: meta/info.json is missing")
        try:
            info = json.loads(info_path.read_text())
        except json.JSONDecodeError as error:
            raise HeadwayError(f"{info_path} is not valid JSON ({error}); the dataset is damaged") from None
        version = info.get("codebase_version")
        if version != CODEBASE_VERSION:
            raise HeadwayError(
                f"{self.root} is a LeRobot {version} dataset; headway reads {CODEBASE_VERSION}. Convert it with "
                "lerobot's `lerobot.datasets.v30.convert_dataset_v21_to_v30` first"
            )
        for needed in ("meta/tasks.parquet", "meta/episodes"):
            if not (self.root / needed).exists():
                raise HeadwayError(f"{self.root} is missing {needed}; the dataset was not finalised or was damaged")
        self.info = info
        self._meta = None
        # The episodes metadata straight from its parquet files (lerobot's loader builds a Hugging Face
        # dataset over every per-feature statistics column, which takes seconds); statistics are left out.
        files = sorted((self.root / "meta" / "episodes").glob("*/*.parquet"))
        if not files:
            raise HeadwayError(f"{self.root}/meta/episodes holds no parquet files; the dataset was not finalised")
        tables = []
        for path in files:
            columns = [c for c in pq.read_schema(path).names if not c.startswith("stats/")]
            tables.append(pq.read_table(path, columns=columns).to_pandas())
        episodes = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
        self._episodes = episodes.sort_values("episode_index").set_index("episode_index", drop=False)
        self._tasks = pd.read_parquet(self.root / "meta" / "tasks.parquet")

    @property
    def meta(self):
        """lerobot's `LeRobotDatasetMetadata` for this dataset (built on first use; it is slow to build)."""
        if self._meta is None:
            from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

            self._meta = LeRobotDatasetMetadata(repo_id=f"local/{self.root.name}", root=self.root)
        return self._meta

    @property
    def features(self) -> dict:
        return self.info["features"]

    @property
    def video_keys(self) -> list[str]:
        return [key for key, feature in self.features.items() if feature.get("dtype") == "video"]

    @property
    def image_keys(self) -> list[str]:
        return [key for key, feature in self.features.items() if feature.get("dtype") == "image"]

    # -- dataset level ----------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    @property
    def num_episodes(self) -> int:
        return int(self.info["total_episodes"])

    @property
    def num_frames(self) -> int:
        return int(self.info["total_frames"])

    @property
    def camera_keys(self) -> list[str]:
        return self.video_keys + self.image_keys

    @property
    def views(self) -> list[str]:
        """Camera names without the `observation.images.` prefix."""
        return [k[len(IMAGE_PREFIX) :] if k.startswith(IMAGE_PREFIX) else k for k in self.camera_keys]

    @property
    def tasks(self) -> list[str]:
        return list(self._tasks.index)

    def episode_length(self, index: int) -> int:
        return int(self._row(index)["length"])

    def card(self) -> dict:
        """headway's dataset card (`meta/headway.json`), empty for datasets recorded elsewhere."""
        path = self.root / "meta" / "headway.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def stage_proportions(self) -> dict[str, float] | None:
        return read_proportions(self.root)

    # -- episode level ----------------------------------------------------------------------------
    def _row(self, index: int) -> dict:
        if index not in self._episodes.index:
            raise HeadwayError(f"episode {index} is not in {self.root} (it has episodes 0-{self.num_episodes - 1})")
        return self._episodes.loc[index].to_dict()

    def subtasks(self, index: int) -> list[Subtask] | None:
        return subtasks_from_row(_clean(self._row(index)))

    def outcome(self, index: int) -> Outcome | None:
        row = self._row(index)
        if "headway_success" not in row or row["headway_success"] is None:
            return None
        return Outcome(bool(row["headway_success"]), str(row["headway_mode"]), float(row["headway_quality"]))

    def episode(self, index: int, views: list[str] | None = None, decode: bool = True) -> Episode:
        """Episode `index` with frames of `views` (default: all) decoded, unless `decode` is False."""
        row = self._row(index)
        arrays = _rename_legacy(self._frame_arrays(index, row))
        length = int(row["length"])
        images = {}
        if decode:
            for view in views if views is not None else self.views:
                key = self.camera_key(view)
                if key in self.video_keys:
                    images[view] = self._decode(index, row, key, length)
                else:
                    images[view] = self._decode_images(index, arrays.pop(key), key)
        for key in self.image_keys:
            arrays.pop(key, None)
        task_names = row["tasks"]
        task = str(task_names[0]) if len(task_names) else ""
        return Episode(index, task, length, images, arrays, self.subtasks(index), self.outcome(index), self.fps)

    def camera_key(self, view: str) -> str:
        """The dataset feature key of camera `view` (a view name or the full key)."""
        if view in self.camera_keys:
            return view
        key = IMAGE_PREFIX + view
        if key not in self.camera_keys:
            raise HeadwayError(f"{self.root} has no camera {view!r}; its cameras are: {', '.join(self.camera_keys)}")
        return key

    _camera_key = camera_key

    def _frame_arrays(self, index: int, row: dict) -> dict[str, np.ndarray]:
        path = self.root / self.info["data_path"].format(chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"]))
        if not path.exists():
            raise HeadwayError(f"episode {index}: data file {path} is missing; the dataset is damaged")
        table = self._file_cache.get(path)
        if table is None:
            self._file_cache.clear()  # one data file in memory at a time
            table = pq.read_table(path)
            self._file_cache[path] = table
        episode_column = table.column("episode_index").to_numpy()
        rows = np.flatnonzero(episode_column == index)
        part = table.take(rows)
        arrays = {}
        for name in part.column_names:
            if name in self.image_keys:
                arrays[name] = part.column(name).to_pylist()  # PNG/JPEG bytes, decoded on request
            else:
                arrays[name] = _column_array(part.column(name))
        if len(rows) != int(row["length"]):
            raise HeadwayError(
                f"episode {index}: the data file has {len(rows)} frames but the metadata says {row['length']}; "
                "the dataset is damaged"
            )
        return arrays

    def _decode(self, index: int, row: dict, key: str, length: int) -> np.ndarray:
        import av

        path = self.root / self.info["video_path"].format(
            video_key=key, chunk_index=int(row[f"videos/{key}/chunk_index"]), file_index=int(row[f"videos/{key}/file_index"])
        )
        if not path.exists():
            raise HeadwayError(f"episode {index}: video file {path} for {key} is missing")
        start = float(row[f"videos/{key}/from_timestamp"])
        tolerance = 0.5 / self.fps
        frames: list[np.ndarray] = []
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                container.seek(int(max(start - tolerance, 0) / stream.time_base), stream=stream, backward=True)
                for frame in container.decode(stream):
                    if frame.time is None or frame.time < start - tolerance:
                        continue
                    frames.append(frame.to_ndarray(format="rgb24"))
                    if len(frames) == length:
                        break
        except av.error.FFmpegError as error:
            raise HeadwayError(f"episode {index}: cannot decode {path} ({error}); the video file is corrupt") from None
        if len(frames) != length:
            raise HeadwayError(
                f"episode {index}: video {key} has {len(frames)} frames but the data has {length}; "
                "the video file is truncated or does not belong to this dataset"
            )
        return np.stack(frames)


    def _decode_images(self, index: int, cells: list, key: str) -> np.ndarray:
        """Frames of an image (not video) feature: encoded images stored in the data parquet."""
        import cv2

        frames = []
        for frame_index, cell in enumerate(cells):
            data = cell.get("bytes") if isinstance(cell, dict) else None
            if data is None and isinstance(cell, dict) and cell.get("path"):
                path = Path(cell["path"])
                data = (path if path.is_absolute() else self.root / path).read_bytes()
            image = None if data is None else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise HeadwayError(f"episode {index}: frame {frame_index} of {key} cannot be decoded; the image is corrupt")
            frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        return np.stack(frames)


def _column_array(column) -> np.ndarray:
    """A parquet column as a numpy array: scalars as they are, fixed-length lists as (T, ...)."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return column.to_numpy()
    return np.asarray(column.to_pylist())


def _clean(row: dict) -> dict:
    """NaN/None-safe copy of a metadata row (pandas turns missing lists into NaN)."""
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}


def _rename_legacy(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Oracle columns of datasets written before they moved out of `observation.*`, under today's names."""
    renamed = {}
    for key, value in arrays.items():
        for old, new in LEGACY_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed
