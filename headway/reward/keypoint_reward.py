"""Keypoint affordance reward: stage-gated closeness to the current stage's 3D keypoint, fused with
stage-aware progress into one potential, behind headway's `RewardModel` protocol.

Per frame:
- the stage k comes from the stage-aware progress model;
- the keypoint model finds the task's affordance keypoints in every calibrated static view (in
  the pixels of the calibration's image size, whatever size the frames arrive at) and they are
  triangulated (views that disagree are dropped; a point no view sees keeps its last
  triangulated position in the episode, causally, or counts as far away if never seen);
- stage k names a target keypoint and a mover (the gripper, from proprioception when the state is
  given, else its own keypoint; or the grasped object's keypoint); d = |mover - target|. The
  targets come from the keypoint model, which records them from its training data's card, or are
  given explicitly, so no simulator is needed;
- Phi_kp = (k + exp(-d / distance_scale)) / K, in [0, 1], rising within a stage as the mover
  approaches the target and by one step per stage;
- fused potential = (w_p * progress + w_kp * Phi_kp) / (w_p + w_kp), reported as `progress`, so
  labelling, shaping and RL use it unchanged.

Checkpoint folder: `config.json` (format "headway.keypoint_reward"), `keypoints/` (the keypoint
model) and `progress/` (any registered reward-model checkpoint, loaded with `load_reward_model`).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from headway import __version__
from headway.atomic import atomic_write_json
from headway.checkpoint import CONFIG_FILE, read_checked_config
from headway.errors import HeadwayError
from headway.geometry import Camera, triangulate
from headway.perception.keypoint_model import GRIPPER, KeypointModel, KeypointPrediction, StageTargets, parse_stage_targets
from headway.perception.preprocess import resize_frames
from headway.reward.interface import RewardModel, RewardOutput
from headway.reward.loading import load_reward_model
from headway.reward.shaping import PotentialConfig, potential

KEYPOINT_TERM = "keypoint_closeness"  # Phi_kp's name among the potential's terms

FORMAT = "headway.keypoint_reward"
FORMAT_VERSION = 1
KEYPOINTS_DIR = "keypoints"
PROGRESS_DIR = "progress"


@dataclass
class KeypointRewardConfig:
    """How keypoints become a potential, and the calibrated static cameras used to triangulate them."""

    task: str
    stage_targets: list[tuple[str, str]]  # per stage: (target keypoint, mover keypoint)
    # view -> {"intrinsics": 3x3, "pose": 4x4 camera-to-world, "image_size": [height, width] the intrinsics are for}
    # (checkpoints without "image_size" assume frames arrive at the calibrated size)
    cameras: dict[str, dict[str, list]]
    progress_weight: float = 0.5
    keypoint_weight: float = 0.5
    distance_scale: float = 0.1  # metres: closeness exp(-d / scale)
    min_confidence: float = 0.5
    max_error_px: float = 4.0

    def __post_init__(self) -> None:
        self.stage_targets = [tuple(t) for t in self.stage_targets]
        if self.progress_weight < 0 or self.keypoint_weight < 0 or self.progress_weight + self.keypoint_weight <= 0:
            raise HeadwayError(
                f"fusion weights must be >= 0 and not both 0, got progress {self.progress_weight}, keypoints {self.keypoint_weight}"
            )
        if not self.distance_scale > 0:
            raise HeadwayError(f"distance_scale must be positive (metres), got {self.distance_scale}")
        if not self.cameras:
            raise HeadwayError("the keypoint reward needs at least one calibrated static camera")
        for view, camera in self.cameras.items():
            Camera(np.array(camera.get("intrinsics")), np.array(camera.get("pose")), view)  # names an uncalibrated camera
            size = camera.get("image_size")
            if size is not None and (np.shape(size) != (2,) or min(size) <= 0):
                raise HeadwayError(f"camera {view!r}: image_size must be [height, width] in pixels, got {size}")


class KeypointRewardModel:
    """Fused potential of stage-aware progress and keypoint closeness; implements `RewardModel`."""

    def __init__(self, config: KeypointRewardConfig, keypoints: KeypointModel, progress: RewardModel) -> None:
        self.config = config
        self.keypoints = keypoints
        self.progress = progress
        names = keypoints.config.keypoint_names
        if len(config.stage_targets) != len(progress.stage_names):
            raise HeadwayError(
                f"the progress model has {len(progress.stage_names)} stages but the keypoint reward names targets for "
                f"{len(config.stage_targets)}; pair models of the same task"
            )
        for target, mover in config.stage_targets:
            for name in (target, mover):
                if name not in names:
                    raise HeadwayError(f"stage keypoint {name!r} is not predicted by the keypoint model ({', '.join(names)})")
        for view in config.cameras:
            keypoints.view_index(view)
        self.cameras = {v: Camera(np.array(c["intrinsics"]), np.array(c["pose"]), v) for v, c in config.cameras.items()}
        self.calibrated_sizes = {v: c.get("image_size") for v, c in config.cameras.items()}
        self.keypoint_views = tuple(config.cameras)

    # -- protocol ----------------------------------------------------------------------------------
    @property
    def views(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.progress.views, *self.keypoint_views)))

    @property
    def stage_names(self) -> tuple[str, ...]:
        return self.progress.stage_names

    @property
    def image_size(self) -> int:
        return self.progress.image_size

    def _check(self, images: dict[str, np.ndarray]) -> None:
        missing = [v for v in self.keypoint_views if v not in images]
        if missing:
            raise HeadwayError(
                f"the keypoint reward triangulates from {', '.join(self.keypoint_views)}; frames of {', '.join(missing)} are missing"
            )

    def _progress_images(self, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        size = self.progress.image_size
        return {v: resize_frames(np.asarray(images[v]), size) for v in self.progress.views if v in images}

    def detect(self, frames: np.ndarray, view: str) -> KeypointPrediction:
        """Keypoints of (T, H, W, 3) frames of a static view, in the pixels its calibration is for."""
        return self.keypoints.predict(frames, view, output_size=self.calibrated_sizes[view])

    def score_details(self, images: dict[str, np.ndarray], task: str, state: np.ndarray | None = None, batch_size: int = 256) -> dict:
        """Everything behind the fused potential, per frame: progress output, Phi_kp, distances, 3D points."""
        self._check(images)
        progress = self.progress.score_episode(self._progress_images(images), task, state, batch_size)
        predictions = {v: self.detect(np.asarray(images[v]), v) for v in self.keypoint_views}
        length = len(progress)
        tracker = _Tracker(self)
        phi = np.zeros(length, dtype=np.float32)
        distance = np.full(length, np.nan, dtype=np.float32)
        points = np.full((length, len(self.keypoints.config.keypoint_names), 3), np.nan)
        for t in range(length):
            uv = {v: p.uv[t] for v, p in predictions.items()}
            confidence = {v: p.confidence[t] for v, p in predictions.items()}
            phi[t], distance[t], points[t] = tracker.step(int(progress.stage[t]), uv, confidence, None if state is None else state[t])
        return {"progress": progress, "phi_kp": phi, "distance": distance, "points": points, "fused": self.fuse(progress.progress, phi)}

    def fuse(self, progress: np.ndarray, phi_kp: np.ndarray) -> np.ndarray:
        """The fused potential, assembled by the one potential builder (headway.reward.shaping) with
        the fusion weights normalised to sum to 1, so it stays in [0, 1] as a progress does."""
        wp, wk = self.config.progress_weight, self.config.keypoint_weight
        config = PotentialConfig(progress_weight=wp / (wp + wk), keypoints={KEYPOINT_TERM: wk / (wp + wk)})
        progress = np.asarray(progress, dtype=np.float64).reshape(-1)
        phi = potential(RewardOutput.progress_only(progress), config, {KEYPOINT_TERM: np.asarray(phi_kp).reshape(-1)}, finite=False)
        return np.clip(phi, 0.0, 1.0).astype(np.float32)

    def score_episode(self, images: dict[str, np.ndarray], task: str, state: np.ndarray | None = None, batch_size: int = 256) -> RewardOutput:
        details = self.score_details(images, task, state, batch_size)
        out: RewardOutput = details["progress"]
        return RewardOutput(details["fused"], out.stage, out.stage_probs, out.success, out.uncertainty)

    def stream(self, task: str) -> KeypointStreamingScorer:
        return KeypointStreamingScorer(self, task)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write config.json with both sub-models in sub-folders."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for sub in (KEYPOINTS_DIR, PROGRESS_DIR):
            if (path / sub).exists():
                shutil.rmtree(path / sub)
        self.keypoints.save(path / KEYPOINTS_DIR)
        self.progress.save(path / PROGRESS_DIR)
        atomic_write_json(
            path / CONFIG_FILE,
            {"format": FORMAT, "format_version": FORMAT_VERSION, "headway_version": __version__, "reward": asdict(self.config)},
        )

    @classmethod
    def load(cls, path: Path, device: str | None = None) -> KeypointRewardModel:
        path = Path(path)
        fix = "Rebuild it with `headway keypoints fuse`"
        meta = read_checked_config(path, FORMAT, FORMAT_VERSION, "keypoint reward", fix, needs_weights=False)
        for sub in (KEYPOINTS_DIR, PROGRESS_DIR):
            if not (path / sub).is_dir():
                raise HeadwayError(f"{path} is missing its {sub}/ sub-model; rebuild it with `headway keypoints fuse`")
        config = KeypointRewardConfig(**meta["reward"])
        return cls(config, KeypointModel.load(path / KEYPOINTS_DIR, device), load_reward_model(path / PROGRESS_DIR, device))


class _Tracker:
    """Causal per-episode state: the last triangulated position of each keypoint."""

    def __init__(self, model: KeypointRewardModel) -> None:
        self.model = model
        self.names = model.keypoints.config.keypoint_names
        self.last: dict[str, np.ndarray] = {}

    def locate(self, name: str, uv: dict[str, np.ndarray], confidence: dict[str, np.ndarray]) -> np.ndarray | None:
        k = self.names.index(name)
        views = self.model.keypoint_views
        result = triangulate(
            np.stack([uv[v][k] for v in views]),
            [self.model.cameras[v] for v in views],
            np.array([confidence[v][k] for v in views]),
            min_confidence=self.model.config.min_confidence,
            max_error_px=self.model.config.max_error_px,
        )
        if result.ok:
            self.last[name] = result.point
        return self.last.get(name)

    def step(self, stage: int, uv: dict, confidence: dict, state: np.ndarray | None) -> tuple[float, float, np.ndarray]:
        config = self.model.config
        stages = len(config.stage_targets)
        stage = int(np.clip(stage, 0, stages - 1))
        target_name, mover_name = config.stage_targets[stage]
        points = np.full((len(self.names), 3), np.nan)
        for name in self.names:
            located = self.locate(name, uv, confidence)
            if located is not None:
                points[self.names.index(name)] = located
        target = self.last.get(target_name)
        if mover_name == GRIPPER and state is not None:
            mover = np.asarray(state, dtype=np.float64)[:3]  # proprioception: end-effector position first
        else:
            mover = self.last.get(mover_name)
        if target is None or mover is None:
            return stage / stages, float("nan"), points
        distance = float(np.linalg.norm(mover - target))
        closeness = float(np.exp(-distance / config.distance_scale))
        return (stage + closeness) / stages, distance, points


class KeypointStreamingScorer:
    """Online scoring, one multi-view observation at a time; the same numbers as `score_episode`."""

    def __init__(self, model: KeypointRewardModel, task: str) -> None:
        self.model = model
        self.task = task
        self.progress = model.progress.stream(task)
        self.reset()

    def reset(self) -> None:
        self.progress.reset()
        self.tracker = _Tracker(self.model)

    def step(self, images: dict[str, np.ndarray], state: np.ndarray | None = None) -> RewardOutput:
        model = self.model
        model._check(images)
        progress_images = {v: resize_frames(np.asarray(images[v])[None], model.progress.image_size)[0] for v in model.progress.views if v in images}
        out = self.progress.step(progress_images, state)
        uv, confidence = {}, {}
        for view in model.keypoint_views:
            prediction = model.detect(np.asarray(images[view])[None], view)
            uv[view], confidence[view] = prediction.uv[0], prediction.confidence[0]
        phi, _, _ = self.tracker.step(int(out.stage[0]), uv, confidence, state)
        return RewardOutput(model.fuse(out.progress, np.array([phi], dtype=np.float32)), out.stage, out.stage_probs, out.success, out.uncertainty)


def static_cameras(dataset: Path, views: list[str] | None = None, tolerance: float = 1e-4) -> dict[str, dict[str, list]]:
    """Calibration of a dataset's static cameras (intrinsics from its card for its frame size, the pose of
    its first frame).

    Cameras that move (the wrist camera) are left out: the reward model has no per-frame pose.
    """
    # imported here: the reader loads pandas and pyarrow (~2 s), which scoring with a keypoint reward never needs
    from headway.datasets.reader import CAMERA_POSE_KEY, IMAGE_PREFIX, DatasetReader

    reader = DatasetReader(Path(dataset))
    card = reader.card()
    episode = reader.episode(0, decode=False)
    cameras = {}
    for view in views or reader.views:
        key = CAMERA_POSE_KEY.format(view=view)
        if view not in card.get("intrinsics", {}) or key not in episode.arrays:
            raise HeadwayError(f"camera {view!r} of {dataset} has no calibration (intrinsics in meta/headway.json and {key})")
        poses = episode.arrays[key].reshape(-1, 4, 4)
        if np.abs(poses - poses[0]).max() > tolerance:
            if views:
                raise HeadwayError(f"camera {view!r} moves during the episode; the keypoint reward triangulates from static cameras only")
            continue
        height, width = reader.features[f"{IMAGE_PREFIX}{view}"]["shape"][:2]
        cameras[view] = {
            "intrinsics": card["intrinsics"][view],
            "pose": poses[0].astype(np.float64).tolist(),
            "image_size": [int(height), int(width)],
        }
    if not cameras:
        raise HeadwayError(f"{dataset} has no static calibrated cameras to triangulate from")
    return cameras


def build_keypoint_reward(
    keypoints: Path | KeypointModel,
    progress: Path | RewardModel,
    cameras: dict[str, dict[str, list]],
    progress_weight: float = 0.5,
    keypoint_weight: float = 0.5,
    distance_scale: float = 0.1,
    device: str | None = None,
    *,
    stage_targets: str | StageTargets | None = None,
) -> KeypointRewardModel:
    """Pair a keypoint model with a stage-aware progress model of the same task.

    Each stage's (target keypoint, mover) comes from `stage_targets` (pairs, or text such as
    "grasp:gripper,grasp:gripper,lift_target:grasp") or else from the keypoint model's config.
    """
    keypoint_model = keypoints if isinstance(keypoints, KeypointModel) else KeypointModel.load(Path(keypoints), device)
    progress_model = progress if not isinstance(progress, (str, Path)) else load_reward_model(Path(progress), device)
    names = keypoint_model.config.keypoint_names
    targets = keypoint_model.config.stage_targets if stage_targets is None else parse_stage_targets(stage_targets, names)
    if not targets:
        where = "" if isinstance(keypoints, KeypointModel) else f" {keypoints}"
        raise HeadwayError(
            f"the keypoint model{where} does not record each stage's target keypoint and mover (it was trained before "
            "headway stored them, or on a dataset whose meta/headway.json has no stage_targets). Retrain it with "
            "`headway keypoints train` on a dataset collected by this headway, or pass them, one per stage of the "
            f"progress model ({', '.join(progress_model.stage_names)}): --stage-targets TARGET:MOVER,... "
            f"(stage_targets= in Python), with keypoints among {', '.join(names)}"
        )
    config = KeypointRewardConfig(keypoint_model.config.task, list(targets), cameras, progress_weight, keypoint_weight, distance_scale)
    return KeypointRewardModel(config, keypoint_model, progress_model)
