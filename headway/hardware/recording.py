"""Recording rollouts: one crash-safe staging file per finished episode, then a LeRobot v3.0 dataset.

While a session runs, `<record>.partial/episodes/episode_NNNNNN.npz` is written atomically when an
episode ends (whatever ended it). The LeRobot dataset is written from the staged episodes through
`LeRobotDataset.create` / `add_frame` / `save_episode` / `finalize`, in a temporary folder, and
moved to `<record>` in one rename: `<record>` is a complete, closed dataset or absent. A crash or
a kill loses at most the episode in progress; `--resume` reruns only the missing episodes.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headway.atomic import atomic_write_bytes, atomic_write_json
from headway.datasets.writer import ENCODER_QUEUE_FRAMES, add_episode_columns, quiet_libav

STAGING = "episodes"
SESSION_FILE = "rollout.json"
IMAGE_KEY = "observation.images.{view}"
SCALARS = {
    "reward.progress": "float32",
    "reward.stage": "int64",
    "reward.success": "float32",
    "reward.uncertainty": "float32",
    "safety.interventions": "int64",
    "safety.reasons": "int64",
    "control.time": "float32",
}
OUTCOMES = ("success", "failure", "timeout", "watchdog", "camera", "estop", "error")
INTERRUPTED = ("camera", "estop", "error")  # not a real attempt of the policy: `--resume` runs these again


@dataclass
class EpisodeLog:
    """Everything recorded during one rollout episode (arrays per frame, the outcome at the end)."""

    index: int
    seed: int
    instruction: str
    views: tuple[str, ...]
    images: dict[str, list[np.ndarray]] = field(default_factory=dict)
    state: list[np.ndarray] = field(default_factory=list)
    action: list[np.ndarray] = field(default_factory=list)
    columns: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in SCALARS})
    outcome: str = "timeout"
    detail: str = ""
    true_success: int = -1  # simulation only: 1/0; -1 unknown (real arm)
    interventions: dict[str, int] = field(default_factory=dict)
    intervention_log: list[list] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.images = {v: [] for v in self.views}

    @property
    def length(self) -> int:
        return len(self.state)

    @property
    def success(self) -> bool:
        return self.outcome == "success"

    @property
    def final_progress(self) -> float:
        progress = self.columns["reward.progress"]
        return float(progress[-1]) if progress else 0.0

    def add(self, images: dict[str, np.ndarray], state: np.ndarray, action: np.ndarray, **scalars: float) -> None:
        for view in self.views:
            self.images[view].append(np.asarray(images[view], dtype=np.uint8))
        self.state.append(np.asarray(state, dtype=np.float32))
        self.action.append(np.asarray(action, dtype=np.float32))
        for key in SCALARS:
            self.columns[key].append(scalars[key.replace(".", "_")])

    def meta(self) -> dict:
        return {
            "index": self.index,
            "seed": self.seed,
            "instruction": self.instruction,
            "views": list(self.views),
            "outcome": self.outcome,
            "detail": self.detail,
            "true_success": self.true_success,
            "final_progress": self.final_progress,
            "length": self.length,
            "interventions": self.interventions,
            "intervention_log": self.intervention_log[:200],
        }


def stage_episode(path: Path, episode: EpisodeLog) -> None:
    """Write `episode` to `path` atomically (whole or absent)."""
    arrays = {f"images/{v}": np.stack(episode.images[v]) for v in episode.views}
    arrays["state"] = np.stack(episode.state)
    arrays["action"] = np.stack(episode.action)
    for key, dtype in SCALARS.items():
        arrays[f"col/{key}"] = np.asarray(episode.columns[key], dtype=dtype)
    arrays["meta"] = np.frombuffer(json.dumps(episode.meta()).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # frames are small and episodes short: speed over size
    atomic_write_bytes(path, buffer.getvalue())


def load_staged(path: Path) -> EpisodeLog:
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        episode = EpisodeLog(meta["index"], meta["seed"], meta["instruction"], tuple(meta["views"]))
        for view in episode.views:
            episode.images[view] = list(data[f"images/{view}"])
        episode.state = list(data["state"])
        episode.action = list(data["action"])
        episode.columns = {key: list(data[f"col/{key}"]) for key in SCALARS}
    episode.outcome, episode.detail, episode.true_success = meta["outcome"], meta["detail"], meta["true_success"]
    episode.interventions, episode.intervention_log = meta["interventions"], meta["intervention_log"]
    return episode


def staged_outcome(path: Path) -> str:
    with np.load(path) as data:
        return json.loads(bytes(data["meta"]).decode())["outcome"]


def staged_paths(partial: Path) -> list[Path]:
    return sorted((partial / STAGING).glob("episode_*.npz"))


def staged_path(partial: Path, index: int) -> Path:
    return partial / STAGING / f"episode_{index:06d}.npz"


def rollout_features(views: dict[str, tuple[int, ...]], state_names: list[str], action_names: list[str]) -> dict:
    features: dict[str, dict] = {}
    for view, shape in views.items():
        features[IMAGE_KEY.format(view=view)] = {"dtype": "video", "shape": tuple(shape), "names": ["height", "width", "channels"]}
    features["observation.state"] = {"dtype": "float32", "shape": (len(state_names),), "names": state_names}
    features["action"] = {"dtype": "float32", "shape": (len(action_names),), "names": action_names}
    for key, dtype in SCALARS.items():
        features[key] = {"dtype": dtype, "shape": (1,), "names": None}
    features["next.success"] = {"dtype": "bool", "shape": (1,), "names": None}
    features["next.done"] = {"dtype": "bool", "shape": (1,), "names": None}
    return features


def write_rollout_dataset(
    root: Path,
    episodes: list[EpisodeLog],
    fps: float,
    robot_type: str,
    repo_id: str,
    state_names: list[str],
    action_names: list[str],
    card: dict,
    vcodec: str = "libsvtav1",
) -> None:
    """Write `episodes` as a new LeRobot v3.0 dataset at `root` (which must not exist)."""
    import datasets as hf_datasets
    from lerobot.configs.video import RGBEncoderConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    os.environ.setdefault("SVT_LOG", "1")
    hf_datasets.disable_progress_bars()
    quiet_libav()
    first = episodes[0]
    views = {v: tuple(first.images[v][0].shape) for v in first.views}
    dataset = LeRobotDataset.create(
        repo_id=repo_id,
        fps=int(round(fps)),
        features=rollout_features(views, state_names, action_names),
        root=root,
        robot_type=robot_type,
        use_videos=True,
        rgb_encoder=RGBEncoderConfig(vcodec=vcodec),
        streaming_encoding=True,
        encoder_queue_maxsize=ENCODER_QUEUE_FRAMES,
    )
    warnings.filterwarnings("ignore", message="Converting input from bool", category=RuntimeWarning)
    try:
        for episode in episodes:
            for t in range(episode.length):
                frame = {
                    "observation.state": episode.state[t],
                    "action": episode.action[t],
                    "next.success": np.array([episode.success and t == episode.length - 1]),
                    "next.done": np.array([t == episode.length - 1]),
                    "task": episode.instruction,
                }
                for key, dtype in SCALARS.items():
                    frame[key] = np.asarray([episode.columns[key][t]], dtype=dtype)
                for view in first.views:
                    frame[IMAGE_KEY.format(view=view)] = episode.images[view][t]
                dataset.add_frame(frame)
            dataset.save_episode()
    finally:
        dataset.finalize()
    add_episode_columns(
        root,
        [
            {
                "headway_outcome": e.outcome,
                "headway_success": e.success,
                "headway_mode": f"rollout:{e.outcome}",  # headway's DatasetReader reads mode and quality with success
                "headway_quality": e.final_progress,
                "headway_true_success": int(e.true_success),
                "headway_final_progress": e.final_progress,
                "headway_seed": int(e.seed),
                "headway_interventions": int(sum(e.interventions.values())),
            }
            for e in episodes
        ],
    )
    atomic_write_json(root / "meta" / "headway.json", {**card, "episodes": [e.meta() for e in episodes]})


def write_progress_video(path: Path, episode: EpisodeLog, stage_names: tuple[str, ...], fps: float, height: int = 240) -> Path:
    """An MP4 of `episode`: its views side by side with the live progress bar, stage and success drawn below."""
    import cv2

    views = episode.views
    frames = []
    bar_height = 56
    for t in range(episode.length):
        tiles = []
        for view in views:
            image = episode.images[view][t]
            scale = height / image.shape[0]
            tiles.append(cv2.resize(image, (int(round(image.shape[1] * scale)), height), interpolation=cv2.INTER_NEAREST))
        top = np.concatenate(tiles, axis=1)
        width = top.shape[1]
        panel = np.full((bar_height, width, 3), 30, np.uint8)
        progress = float(episode.columns["reward.progress"][t])
        success = float(episode.columns["reward.success"][t])
        stage = int(episode.columns["reward.stage"][t])
        filled = int(round(progress * (width - 20)))
        cv2.rectangle(panel, (10, 8), (width - 10, 24), (90, 90, 90), -1)
        cv2.rectangle(panel, (10, 8), (10 + filled, 24), (60, 200, 60), -1)
        name = stage_names[stage] if 0 <= stage < len(stage_names) else str(stage)
        text = f"{name} | progress {progress:.2f} | success {success:.2f}"
        if episode.columns["safety.interventions"][t]:
            text += " | safety"
        cv2.putText(panel, text, (10, 46), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (235, 235, 235), 1, cv2.LINE_AA)
        frames.append(np.concatenate([top, panel], axis=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    if not tmp.exists() or tmp.stat().st_size == 0:
        raise RuntimeError("OpenCV could not write an MP4 here (no mp4v encoder)")
    os.replace(tmp, path)
    return path
