"""Write simulated episodes as a LeRobot v3.0 dataset through lerobot's `LeRobotDataset`.

Frames go through `LeRobotDataset.create` / `add_frame` / `save_episode`; per-episode stage
annotations and outcomes are then added to the episodes metadata the way lerobot's own SARM
annotation tool does, and headway's dataset card goes to `meta/headway.json` (with, for tasks that
have affordance keypoints, their names and each stage's [target keypoint, mover] as `stage_targets`).
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from headway.atomic import atomic_write_bytes, atomic_write_json
from headway.datasets.annotations import PROPORTIONS_FILE, annotation_columns, temporal_proportions
from headway.datasets.reader import CAMERA_POSE_KEY, KEYPOINTS_KEY, KEYPOINTS_VISIBLE_KEY
from headway.sim.affordances import get_affordances
from headway.sim.env import CONTROL_FREQ
from headway.sim.rollout import EpisodeRecord
from headway.sim.task import Task

HEADWAY_META = "meta/headway.json"
IMAGE_KEY = "observation.images.{view}"
STATE_NAMES = ["eef_x", "eef_y", "eef_z", "eef_qx", "eef_qy", "eef_qz", "eef_qw", "finger_left", "finger_right"]
ACTION_NAMES = ["dx", "dy", "dz", "dax", "day", "daz", "gripper"]
OUTCOME_COLUMNS = ("headway_success", "headway_mode", "headway_quality", "headway_seed", "headway_success_frame")

# Frames lerobot's streaming encoder may hold per camera. Episodes are written from staged frames,
# faster than the encoder runs under load; lerobot drops frames from a full queue (a video shorter
# than its data), so the queue holds a whole episode: a slow encoder delays, never drops.
ENCODER_QUEUE_FRAMES = 4096


def quiet_libav() -> None:
    """Keep libav to errors while lerobot writes videos. lerobot's encoders hand libav's log back to
    its default C callback after each video (`av.logging.restore_default_callback`), which prints the
    muxer's per-file notes ("Starting second pass: moving the moov atom ...") to stderr; the level
    is set again after every such hand-back."""
    import av.logging

    if getattr(av.logging.restore_default_callback, "headway_quiet", False):
        av.logging.set_level(av.logging.ERROR)
        return
    restore = av.logging.restore_default_callback

    def restore_quietly() -> None:
        restore()
        av.logging.set_level(av.logging.ERROR)

    restore_quietly.headway_quiet = True
    av.logging.restore_default_callback = restore_quietly
    av.logging.set_level(av.logging.ERROR)


def frame_features(
    views: tuple[str, ...], image_size: int, object_dim: int, keypoint_names: tuple[str, ...] = ()
) -> dict[str, dict]:
    """LeRobot feature spec of a headway simulation dataset."""
    features: dict[str, dict] = {}
    for view in views:
        features[IMAGE_KEY.format(view=view)] = {
            "dtype": "video",
            "shape": (image_size, image_size, 3),
            "names": ["height", "width", "channels"],
        }
        features[CAMERA_POSE_KEY.format(view=view)] = {"dtype": "float32", "shape": (16,), "names": None}
    scalar = {"shape": (1,), "names": None}
    features.update(
        {
            "observation.state": {"dtype": "float32", "shape": (len(STATE_NAMES),), "names": STATE_NAMES},
            "observation.environment_state": {"dtype": "float32", "shape": (object_dim,), "names": None},
            "action": {"dtype": "float32", "shape": (len(ACTION_NAMES),), "names": ACTION_NAMES},
            "next.reward": {"dtype": "float32", **scalar},
            "next.robosuite_dense_reward": {"dtype": "float32", **scalar},
            "next.success": {"dtype": "bool", **scalar},
            "next.done": {"dtype": "bool", **scalar},
            "oracle.stage": {"dtype": "int64", **scalar},
            "oracle.tau": {"dtype": "float32", **scalar},
            "oracle.scene_stage": {"dtype": "int64", **scalar},
            "oracle.scene_tau": {"dtype": "float32", **scalar},
        }
    )
    if keypoint_names:
        names = [f"{name}_{axis}" for name in keypoint_names for axis in "xyz"]
        features[KEYPOINTS_KEY] = {"dtype": "float32", "shape": (len(names),), "names": names}
        for view in views:
            features[KEYPOINTS_VISIBLE_KEY.format(view=view)] = {
                "dtype": "float32", "shape": (len(keypoint_names),), "names": list(keypoint_names)
            }
    return features


def write_dataset(
    root: Path,
    episodes: Iterable[EpisodeRecord],
    task: Task,
    views: tuple[str, ...],
    image_size: int,
    object_dim: int,
    card: dict,
    vcodec: str = "libsvtav1",
) -> None:
    """Write `episodes` (in order) as a new LeRobot dataset at `root`, which must not exist."""
    import datasets as hf_datasets
    from lerobot.configs.video import RGBEncoderConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    os.environ.setdefault("SVT_LOG", "1")  # the AV1 encoder's banner, printed per episode, otherwise
    hf_datasets.disable_progress_bars()
    quiet_libav()
    episodes = iter(episodes)
    first = next(episodes, None)
    if first is not None:
        episodes = itertools.chain([first], episodes)
    keypoint_names = tuple(first.keypoint_names) if first is not None and first.keypoints is not None else ()
    dataset = LeRobotDataset.create(
        repo_id=f"headway/{task.name}",
        fps=CONTROL_FREQ,
        features=frame_features(views, image_size, object_dim, keypoint_names),
        root=root,
        robot_type="panda",
        use_videos=True,
        rgb_encoder=RGBEncoderConfig(vcodec=vcodec),
        streaming_encoding=True,
        encoder_queue_maxsize=ENCODER_QUEUE_FRAMES,
    )
    per_episode: list[dict] = []
    annotations = []
    # lerobot's statistics convert the boolean success/done features to uint8 and warn each episode
    warnings.filterwarnings("ignore", message="Converting input from bool", category=RuntimeWarning)
    try:
        for episode in episodes:
            for t in range(episode.length):
                frame = {
                    "observation.state": episode.state[t],
                    "observation.environment_state": episode.object_state[t],
                    "action": episode.action[t],
                    "next.reward": episode.next_reward[t : t + 1],
                    "next.robosuite_dense_reward": episode.next_dense_reward[t : t + 1],
                    "next.success": episode.next_success[t : t + 1],
                    "next.done": np.array([t == episode.length - 1]),
                    "oracle.stage": episode.oracle_stage[t : t + 1],
                    "oracle.tau": episode.oracle_tau[t : t + 1],
                    "oracle.scene_stage": episode.scene_stage[t : t + 1],
                    "oracle.scene_tau": episode.scene_tau[t : t + 1],
                    "task": episode.instruction,
                }
                for view in views:
                    frame[IMAGE_KEY.format(view=view)] = episode.images[view][t]
                    frame[CAMERA_POSE_KEY.format(view=view)] = episode.extrinsics[view][t].reshape(16).astype(np.float32)
                if keypoint_names:
                    frame[KEYPOINTS_KEY] = episode.keypoints[t].reshape(-1).astype(np.float32)
                    for view in views:
                        visible = episode.keypoint_visibility[view][t]
                        frame[KEYPOINTS_VISIBLE_KEY.format(view=view)] = visible.astype(np.float32)
                dataset.add_frame(frame)
            dataset.save_episode()
            annotations.append(episode.subtasks)
            per_episode.append(
                {
                    **annotation_columns(episode.subtasks, CONTROL_FREQ, task.stages, episode.length),
                    "headway_success": bool(episode.success),
                    "headway_mode": episode.mode,
                    "headway_quality": float(episode.quality),
                    "headway_seed": int(episode.seed),
                    "headway_success_frame": -1 if episode.success_frame is None else int(episode.success_frame),
                }
            )
    finally:
        dataset.finalize()
    add_episode_columns(root, per_episode)
    atomic_write_json(root / PROPORTIONS_FILE, temporal_proportions(annotations, task.stages))
    extra = {}
    if first is not None:  # camera models, so keypoints can be projected and triangulated from the dataset alone
        extra["intrinsics"] = {view: np.asarray(first.intrinsics[view]).tolist() for view in views}
    if keypoint_names:  # what a keypoint model, and the reward built on it, need from the task
        extra["keypoint_names"] = list(keypoint_names)
        extra["stage_targets"] = [[s.keypoint, s.mover] for s in get_affordances(task.name).stage_targets]
    atomic_write_json(
        root / HEADWAY_META, {**card, "stages": list(task.stages), "instruction": task.instruction, **extra}
    )


def add_episode_columns(root: Path, rows: list[dict]) -> None:
    """Add per-episode columns to every episodes-metadata parquet file (rows indexed by episode)."""
    files = sorted((Path(root) / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    for path in files:
        frame = pd.read_parquet(path)
        for column in rows[0]:
            frame[column] = [rows[int(i)][column] for i in frame["episode_index"]]
        buffer = frame.to_parquet(engine="pyarrow", compression="snappy")
        atomic_write_bytes(path, buffer)
