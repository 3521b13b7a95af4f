"""One crash-safe staging file per recorded episode (compressed npz, written atomically)."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np

from headway.atomic import atomic_write_bytes
from headway.errors import HeadwayError
from headway.sim.expert import Behaviour
from headway.sim.rollout import EpisodeRecord
from headway.stages import Subtask

_ARRAYS = (
    "state",
    "object_state",
    "action",
    "next_success",
    "next_reward",
    "next_dense_reward",
    "expert_stage",
    "oracle_stage",
    "oracle_tau",
    "scene_stage",
    "scene_tau",
)


def stage_episode(path: Path, record: EpisodeRecord) -> None:
    """Write `record` to `path` atomically: the file is whole or absent."""
    arrays = {name: getattr(record, name) for name in _ARRAYS}
    for view in record.images:
        arrays[f"images/{view}"] = record.images[view]
        arrays[f"extrinsics/{view}"] = record.extrinsics[view]
        arrays[f"intrinsics/{view}"] = record.intrinsics[view]
        if view in record.keypoint_visibility:
            arrays[f"keypoint_visibility/{view}"] = record.keypoint_visibility[view]
    if record.keypoints is not None:
        arrays["keypoints"] = record.keypoints
    meta = {
        "task": record.task,
        "instruction": record.instruction,
        "seed": record.seed,
        "behaviour": dataclasses.asdict(record.behaviour),
        "views": list(record.images),
        "subtasks": [dataclasses.asdict(s) for s in record.subtasks],
        "success": record.success,
        "success_frame": record.success_frame,
        "quality": record.quality,
        "keypoint_names": list(record.keypoint_names),
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_staged_episode(path: Path) -> EpisodeRecord:
    with np.load(path) as data:
        missing = [name for name in _ARRAYS if name not in data.files]
        if missing:
            raise HeadwayError(
                f"{path} was staged by an older headway (no {', '.join(missing)}); delete its .partial folder and collect again"
            )
        meta = json.loads(bytes(data["meta"]).decode())
        views = meta["views"]
        behaviour = meta["behaviour"]
        return EpisodeRecord(
            task=meta["task"],
            instruction=meta["instruction"],
            seed=meta["seed"],
            behaviour=Behaviour(**behaviour),
            images={v: data[f"images/{v}"] for v in views},
            extrinsics={v: data[f"extrinsics/{v}"] for v in views},
            intrinsics={v: data[f"intrinsics/{v}"] for v in views},
            subtasks=[Subtask(**s) for s in meta["subtasks"]],
            success=meta["success"],
            success_frame=meta["success_frame"],
            quality=meta["quality"],
            keypoint_names=tuple(meta.get("keypoint_names", ())),
            keypoints=data["keypoints"] if "keypoints" in data.files else None,
            keypoint_visibility={
                v: data[f"keypoint_visibility/{v}"] for v in views if f"keypoint_visibility/{v}" in data.files
            },
            **{name: data[name] for name in _ARRAYS},
        )
