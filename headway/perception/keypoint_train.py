"""Train and evaluate the keypoint model on simulated datasets with ground-truth keypoints.

Datasets collected by `headway sim collect` store the task's affordance points per frame
(`observation.keypoints`, world frame), their visibility per camera
(`oracle.keypoints_visible.<view>`), the camera poses per frame
(`oracle.camera_pose.<view>`) and the intrinsics in `meta/headway.json`; the 2D targets are
the projections of the 3D points. Each stage's target keypoint and mover (`stage_targets` in
`meta/headway.json`) go into the model's config, for the keypoint reward.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from headway.datasets.reader import CAMERA_POSE_KEY as POSE_KEY
from headway.datasets.reader import KEYPOINTS_KEY, DatasetReader
from headway.datasets.reader import KEYPOINTS_VISIBLE_KEY as VISIBLE_KEY
from headway.errors import HeadwayError
from headway.geometry import Camera, in_frame, project, triangulate
from headway.perception.keypoint_model import (
    KeypointModel,
    KeypointModelConfig,
    KeypointNet,
    StageTargets,
    keypoint_loss,
    parse_stage_targets,
    pixel_to_cell,
)
from headway.run_dir import RunDir

STATE_FILE = "train_state.pt"
TRAIN_CONFIG_FILE = "train_config.json"  # the training settings, which a resumed run must repeat


@dataclass
class KeypointEpisode:
    """One episode's frames per view with ground truth: 3D points, camera poses, 2D targets, visibility."""

    images: dict[str, np.ndarray]  # view -> (T, H, W, 3)
    points: np.ndarray  # (T, K, 3)
    poses: dict[str, np.ndarray]  # view -> (T, 4, 4)
    uv: dict[str, np.ndarray]  # view -> (T, K, 2)
    visible: dict[str, np.ndarray]  # view -> (T, K) bool


@dataclass
class KeypointDataset:
    task: str
    keypoint_names: tuple[str, ...]
    views: tuple[str, ...]
    image_size: int
    intrinsics: dict[str, np.ndarray]
    episodes: list[KeypointEpisode]
    stage_targets: StageTargets = ()  # per stage: (target keypoint, mover), when the card names them


def load_keypoint_dataset(root: Path, views: list[str] | None = None, max_episodes: int | None = None) -> KeypointDataset:
    """Read a dataset's frames and ground-truth keypoints (error if it has none, or no calibration)."""
    reader = DatasetReader(Path(root))
    card = reader.card()
    names = tuple(card.get("keypoint_names", ()))
    views = list(views or reader.views)
    for view in views:
        reader._camera_key(view)  # names the cameras the dataset has
    if not names:
        raise HeadwayError(
            f"{root} has no ground-truth keypoints (meta/headway.json has no keypoint_names); collect it with "
            "`headway sim collect`, which records them"
        )
    calibration = card.get("intrinsics", {})
    uncalibrated = [v for v in views if v not in calibration]
    if uncalibrated:
        raise HeadwayError(
            f"{root}: cameras without calibration: {', '.join(uncalibrated)} (no intrinsics in meta/headway.json); "
            "recollect the dataset with this headway, which records them"
        )
    intrinsics = {v: np.array(calibration[v], dtype=np.float64) for v in views}
    try:
        stage_targets = parse_stage_targets(card.get("stage_targets", ()), names)
    except HeadwayError as error:
        raise HeadwayError(f"{root}/meta/headway.json: {error}") from None
    size = int(card.get("image_size", 0)) or None
    episodes = []
    count = reader.num_episodes if max_episodes is None else min(max_episodes, reader.num_episodes)
    for index in range(count):
        episode = reader.episode(index, views)
        length = episode.length
        if KEYPOINTS_KEY not in episode.arrays:
            raise HeadwayError(f"{root}: episode {index} has no {KEYPOINTS_KEY}; recollect with `headway sim collect`")
        points = episode.arrays[KEYPOINTS_KEY].reshape(length, len(names), 3).astype(np.float64)
        poses, uvs, visible = {}, {}, {}
        for view in views:
            pose_key = POSE_KEY.format(view=view)
            if pose_key not in episode.arrays:
                raise HeadwayError(f"{root}: camera {view!r} has no recorded pose ({pose_key}); it cannot be calibrated")
            poses[view] = episode.arrays[pose_key].reshape(length, 4, 4).astype(np.float64)
            height = episode.images[view].shape[1]
            size = size or height
            uvs[view] = np.stack([project(points[t], intrinsics[view], poses[view][t])[0] for t in range(length)])
            seen = episode.arrays[VISIBLE_KEY.format(view=view)].astype(bool)
            visible[view] = seen & in_frame(uvs[view], height, height)
        episodes.append(KeypointEpisode(episode.images, points, poses, uvs, visible))
    return KeypointDataset(str(card.get("task", "")), names, tuple(views), int(size or 84), intrinsics, episodes, stage_targets)


@dataclass
class KeypointTrainConfig:
    """How to train a keypoint model."""

    datasets: list[Path]  # datasets from `headway sim collect` (the flag is repeatable)
    out: Path  # checkpoint folder to create
    views: tuple[str, ...] | None = None  # None: every view of the dataset
    width: int = 16  # channels of the first U-Net stage
    output_stride: int = 2
    steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 3e-3
    max_minutes: float | None = None  # stop early (and save) when training has run this long
    checkpoint_every: int = 250
    seed: int = 0
    device: str | None = None  # cpu or cuda; None: cuda when present
    max_episodes: int | None = None

    def __post_init__(self) -> None:
        self.datasets = [Path(d) for d in ([self.datasets] if isinstance(self.datasets, (str, Path)) else self.datasets)]
        self.out = Path(self.out)
        if not self.datasets:
            raise HeadwayError("give at least one --dataset")
        for root in self.datasets:
            if not (root / "meta" / "info.json").exists():
                raise HeadwayError(f"{root} is not a dataset (meta/info.json is missing); pass a folder written by `headway sim collect`")
        if self.steps < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise HeadwayError(f"steps, batch size and learning rate must be positive (got {self.steps}, {self.batch_size}, {self.learning_rate})")


def _training_arrays(datasets: list[KeypointDataset], views: tuple[str, ...]) -> dict[str, np.ndarray]:
    images, view_ids, uv, visible = [], [], [], []
    for data in datasets:
        for episode in data.episodes:
            for view in views:
                images.append(episode.images[view])
                view_ids.append(np.full(len(episode.images[view]), views.index(view)))
                uv.append(episode.uv[view])
                visible.append(episode.visible[view])
    return {
        "images": np.concatenate(images),
        "view_ids": np.concatenate(view_ids),
        "uv": np.nan_to_num(np.concatenate(uv), nan=-1e3),
        "visible": np.concatenate(visible),
    }


def train_keypoint_model(config: KeypointTrainConfig, resume: bool = False, progress: bool = True, overwrite: bool = False) -> dict:
    """Train on `config.datasets`, save to `config.out`; with `resume`, continue from the last
    checkpoint; with `overwrite`, start over in a folder holding another training."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    started = time.perf_counter()
    data = [load_keypoint_dataset(root, list(config.views) if config.views else None, config.max_episodes) for root in config.datasets]
    first = data[0]
    for other in data[1:]:
        if other.keypoint_names != first.keypoint_names:
            raise HeadwayError(f"datasets name different keypoints: {first.keypoint_names} vs {other.keypoint_names}; train one task at a time")
    stage_targets = {d.stage_targets for d in data if d.stage_targets}
    if len(stage_targets) > 1:
        raise HeadwayError(f"datasets name different stage targets: {sorted(stage_targets)}; train one task at a time")
    views = first.views
    arrays = _training_arrays(data, views)
    size = arrays["images"].shape[1]
    model_config = KeypointModelConfig(
        keypoint_names=first.keypoint_names,
        views=views,
        task=first.task,
        image_size=size,
        width=config.width,
        output_stride=config.output_stride,
        intrinsics={v: first.intrinsics[v].tolist() for v in views},
        stage_targets=stage_targets.pop() if stage_targets else (),
    )
    model = KeypointModel.create(model_config, config.device)
    net: KeypointNet = model.net
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    step = 0
    trained_seconds = 0.0  # training time of earlier runs (resume)
    state_path = config.out / STATE_FILE
    _open_out(config, model_config, resume, overwrite)
    if resume and state_path.exists():
        state = torch.load(state_path, map_location=model.device, weights_only=False)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        trained_seconds = float(state.get("seconds", 0.0))
        rng = np.random.default_rng([config.seed, step])

    def checkpoint() -> None:
        model.save(config.out)
        torch.save(
            {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "seconds": elapsed(), "model_config": model_config.to_dict()},
            state_path.with_suffix(".tmp"),
        )
        state_path.with_suffix(".tmp").replace(state_path)

    n = len(arrays["images"])
    loop_started = time.perf_counter()
    elapsed = lambda: trained_seconds + time.perf_counter() - loop_started  # noqa: E731
    budget = None if config.max_minutes is None else 60.0 * config.max_minutes

    def fraction() -> float:
        """How far through training: by steps, or by the time budget when that comes first."""
        done = step / config.steps
        return max(done, elapsed() / budget) if budget else done

    def set_learning_rate() -> None:  # linear warm-up, then cosine decay over the steps or the time budget
        progress = fraction()
        scale = min(1.0, progress / 0.03) if progress < 0.03 else 0.5 * (1 + np.cos(np.pi * min(progress, 1.0)))
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * max(scale, 0.01)

    net.train()
    bar = tqdm(total=config.steps, initial=step, desc="train keypoints", unit="step", disable=not progress)
    losses: list[float] = []
    stopped_early = False
    try:
        while step < config.steps:
            index = rng.integers(0, n, config.batch_size)
            images = torch.from_numpy(arrays["images"][index]).to(model.device).permute(0, 3, 1, 2).float() / 255.0
            images = images * torch.empty(len(index), 1, 1, 1, device=model.device).uniform_(0.85, 1.15)  # brightness
            view_ids = torch.from_numpy(arrays["view_ids"][index]).long().to(model.device)
            cells = pixel_to_cell(torch.from_numpy(arrays["uv"][index]).float().to(model.device), config.output_stride)
            visible = torch.from_numpy(arrays["visible"][index]).to(model.device)
            set_learning_rate()
            heatmaps, visibility = net(images.clamp(0, 1), view_ids)
            loss, parts = keypoint_loss(heatmaps, visibility, cells, visible, model_config.sigma)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
            bar.update()
            if step % config.checkpoint_every == 0:
                checkpoint()
            if budget is not None and elapsed() >= budget:
                stopped_early = step < config.steps
                break
    finally:
        bar.close()
    net.eval()
    checkpoint()
    return {
        "out": str(config.out),
        "steps": step,
        "frames": n,
        "views": list(views),
        "keypoints": list(first.keypoint_names),
        "stage_targets": [list(pair) for pair in model_config.stage_targets],
        "final_loss": float(np.mean(losses[-50:])) if losses else float("nan"),
        "seconds": time.perf_counter() - started,
        "stopped_early": stopped_early,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items() if k != "datasets"},
    }


def _open_out(config: KeypointTrainConfig, model_config: KeypointModelConfig, resume: bool, overwrite: bool) -> None:
    """Check `--out` against this run (headway.run_dir) and prepare it. The identity is the training
    settings (not `steps`: a run may be extended) and the model's weight-shaping settings."""
    training = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items() if k not in ("steps", "device", "max_minutes")}
    training["datasets"] = [str(d) for d in config.datasets]
    identity = {"training": training, "model": _weight_settings(model_config.to_dict())}

    def older(out: Path) -> dict | None:  # a folder from before train_config.json: its state's model settings, as checked then
        state_path = out / STATE_FILE
        if not state_path.exists():
            return None
        return {"training": training, "model": _weight_settings(torch.load(state_path, map_location="cpu", weights_only=False)["model_config"])}

    RunDir(config.out, job="keypoint-model training", identity=identity, identity_file=TRAIN_CONFIG_FILE, older=older).open(resume, overwrite)


def _weight_settings(model_config: dict) -> dict:
    """A model config without its stage targets, which do not change the weights (a resumed run takes the data's)."""
    return {k: v for k, v in model_config.items() if k != "stage_targets"}


@dataclass
class KeypointReport:
    per_view: dict[str, dict] = field(default_factory=dict)
    triangulation: dict[str, dict] = field(default_factory=dict)
    per_keypoint_px: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _summary(values: list[float], scale: float = 1.0) -> dict:
    if not values:
        return {"median": float("nan"), "mean": float("nan"), "p90": float("nan"), "n": 0}
    array = np.asarray(values) * scale
    return {"median": float(np.median(array)), "mean": float(np.mean(array)), "p90": float(np.percentile(array, 90)), "n": int(array.size)}


def evaluate_keypoints(
    model: KeypointModel,
    dataset: Path | KeypointDataset,
    view_sets: list[tuple[str, ...]] | None = None,
    plots: Path | None = None,
    frame_step: int = 2,
    max_error_px: float = 4.0,
) -> dict:
    """2D error per view on visible points, and 3D error after triangulating with each set of views.

    3D errors count a (frame, keypoint) only when the point is truly visible in every view of the
    set, so sets are compared on the same points; `ok_fraction` is how often triangulation
    returned a point for those.
    """
    data = dataset if isinstance(dataset, KeypointDataset) else load_keypoint_dataset(Path(dataset), [v for v in model.config.views])
    if data.keypoint_names != model.config.keypoint_names:
        raise HeadwayError(f"the dataset's keypoints {data.keypoint_names} are not the model's {model.config.keypoint_names}")
    views = [v for v in data.views if v in model.config.views]
    if view_sets is None:
        view_sets = [pair for pair in itertools.combinations(views, 2)] + ([tuple(views)] if len(views) > 2 else [])
    errors_2d: dict[str, list[float]] = {v: [] for v in views}
    per_keypoint: dict[str, list[float]] = {k: [] for k in data.keypoint_names}
    confident_correct: dict[str, list[bool]] = {v: [] for v in views}
    errors_3d: dict[tuple[str, ...], list[float]] = {s: [] for s in view_sets}
    ok_counts: dict[tuple[str, ...], list[bool]] = {s: [] for s in view_sets}
    for e, episode in enumerate(tqdm(data.episodes, desc="evaluate keypoints", unit="ep", leave=False)):
        predictions = {v: model.predict(episode.images[v], v) for v in views}
        for view in views:
            error = np.linalg.norm(predictions[view].uv - episode.uv[view], axis=-1)
            mask = episode.visible[view]
            errors_2d[view].extend(error[mask].tolist())
            for k, name in enumerate(data.keypoint_names):
                per_keypoint[name].extend(error[:, k][mask[:, k]].tolist())
            confident_correct[view].extend(((predictions[view].confidence >= 0.5) == mask).reshape(-1).tolist())
        for t in range(0, len(episode.points), frame_step):
            cameras = {v: Camera(data.intrinsics[v], episode.poses[v][t], v) for v in views}
            for k in range(len(data.keypoint_names)):
                for view_set in view_sets:
                    if not all(episode.visible[v][t, k] for v in view_set):
                        continue
                    result = triangulate(
                        np.stack([predictions[v].uv[t, k] for v in view_set]),
                        [cameras[v] for v in view_set],
                        np.array([predictions[v].confidence[t, k] for v in view_set]),
                        max_error_px=max_error_px,
                    )
                    ok_counts[view_set].append(result.ok)
                    if result.ok:
                        errors_3d[view_set].append(float(np.linalg.norm(result.point - episode.points[t, k])))
        if plots is not None and e < 3:
            draw_keypoints(Path(plots), e, episode, predictions, data.keypoint_names)
    report = KeypointReport()
    for view in views:
        report.per_view[view] = {**_summary(errors_2d[view]), "visibility_accuracy": float(np.mean(confident_correct[view]))}
    for view_set in view_sets:
        name = "+".join(view_set)
        report.triangulation[name] = {**_summary(errors_3d[view_set], 100.0), "unit": "cm", "ok_fraction": float(np.mean(ok_counts[view_set])) if ok_counts[view_set] else float("nan")}
    report.per_keypoint_px = {k: _summary(v)["median"] for k, v in per_keypoint.items()}
    return report.to_dict()


COLOURS = [(255, 64, 64), (64, 160, 255), (255, 200, 0), (200, 64, 255), (0, 220, 120)]


def draw_keypoints(folder: Path, episode_index: int, episode: KeypointEpisode, predictions: dict, names: tuple[str, ...], frames: int = 4, scale: int = 4) -> None:
    """PNG per view: a few frames side by side, truth as rings, predictions as dots (one colour per keypoint)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    length = len(episode.points)
    chosen = np.linspace(0, length - 1, frames).astype(int)
    for view, prediction in predictions.items():
        tiles = []
        for t in chosen:
            image = cv2.resize(np.ascontiguousarray(episode.images[view][t]), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            for k, name in enumerate(names):
                colour = COLOURS[k % len(COLOURS)]
                truth = episode.uv[view][t, k]
                if episode.visible[view][t, k]:
                    cv2.circle(image, _pt(truth, scale), 3 * scale, colour, 1, cv2.LINE_AA)
                if prediction.confidence[t, k] >= 0.5:
                    cv2.circle(image, _pt(prediction.uv[t, k], scale), scale, colour, -1, cv2.LINE_AA)
            cv2.putText(image, f"t={t}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(image)
        legend = "  ".join(names)
        strip = np.concatenate(tiles, axis=1)
        cv2.putText(strip, legend, (4, strip.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.imwrite(str(folder / f"episode_{episode_index:03d}_{view}.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))


def _pt(uv: np.ndarray, scale: int) -> tuple[int, int]:
    return int(round((uv[0] + 0.5) * scale)), int(round((uv[1] + 0.5) * scale))


def render_report(report: dict) -> str:
    lines = ["view                 2D median px   mean px   p90 px   points   visibility acc"]
    for view, row in report["per_view"].items():
        lines.append(f"{view:20s} {row['median']:12.2f} {row['mean']:9.2f} {row['p90']:8.2f} {row['n']:8d} {row['visibility_accuracy']:16.3f}")
    lines.append("views (triangulated)                 3D median cm   mean cm   p90 cm   points   ok")
    for name, row in report["triangulation"].items():
        lines.append(f"{name:36s} {row['median']:12.2f} {row['mean']:9.2f} {row['p90']:8.2f} {row['n']:8d} {row['ok_fraction']:6.3f}")
    lines.append("per keypoint 2D median px: " + ", ".join(f"{k} {v:.2f}" for k, v in report["per_keypoint_px"].items()))
    return "\n".join(lines)
