"""Optional outputs of labelling: per-episode plots and videos, and a copy of the dataset with label features.

The copy goes through lerobot's own `dataset_tools.add_features`, so LeRobotDataset loads it as
any other dataset; it is built in a hidden sibling folder and renamed into place when whole.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np

from headway.atomic import atomic_write_bytes
from headway.errors import HeadwayError

LABEL_FEATURE_PREFIX = "headway."
BAR_HEIGHT = 22
TILE_HEIGHT = 168


def _episode_rows(table_path: Path, episodes: list[int]):
    import pyarrow.parquet as pq

    table = pq.read_table(table_path, filters=[("episode_index", "in", list(episodes))])
    return table


def _plot_png(rows: dict, stage_names: list[str], fps: float, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.asarray(rows["frame_index"]) / fps
    progress, spread = np.asarray(rows["progress"]), np.asarray(rows["uncertainty"])
    figure, axes = plt.subplots(3, 1, figsize=(7, 6), sharex=True)
    axes[0].plot(t, progress, color="tab:blue")
    axes[0].fill_between(t, np.clip(progress - spread, 0, 1), np.clip(progress + spread, 0, 1), alpha=0.25, color="tab:blue")
    axes[0].set_ylabel("progress")
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].step(t, np.asarray(rows["stage"]), where="post", color="tab:orange")
    axes[1].set_yticks(range(len(stage_names)), stage_names, fontsize=7)
    axes[1].set_ylabel("stage")
    axes[2].plot(t, np.asarray(rows["success"]), color="tab:green")
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_ylabel("P(success)")
    axes[2].set_xlabel("time (s)")
    axes[0].set_title(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def _stage_colour(stage: int) -> tuple[int, int, int]:
    palette = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194)]
    r, g, b = palette[stage % len(palette)]
    return (b, g, r)  # BGR for opencv


def _write_video(path: Path, frames: dict[str, np.ndarray], rows: dict, stage_names: list[str], fps: float) -> None:
    """Views side by side with a progress bar (coloured by stage) and the scores as text; MP4 via opencv."""
    import cv2

    tiles = []
    for key, clip in frames.items():
        scale = TILE_HEIGHT / clip.shape[1]
        width = int(round(clip.shape[2] * scale))
        tiles.append((key, clip, width))
    width = sum(w for _, _, w in tiles)
    width += width % 2
    height = TILE_HEIGHT + BAR_HEIGHT + 16
    temporary = path.parent / f".{path.name}.tmp.mp4"
    writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise HeadwayError(f"opencv cannot write MP4 video here ({path}); pass --plots 0")
    try:
        for t in range(len(rows["progress"])):
            canvas = np.zeros((height, width, 3), dtype=np.uint8)
            x = 0
            for key, clip, tile_width in tiles:
                tile = cv2.resize(cv2.cvtColor(clip[t], cv2.COLOR_RGB2BGR), (tile_width, TILE_HEIGHT), interpolation=cv2.INTER_NEAREST)
                canvas[:TILE_HEIGHT, x : x + tile_width] = tile
                cv2.putText(canvas, key.split(".")[-1][:18], (x + 3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
                x += tile_width
            progress, stage = float(rows["progress"][t]), int(rows["stage"][t])
            top = TILE_HEIGHT + 2
            cv2.rectangle(canvas, (2, top), (width - 3, top + BAR_HEIGHT - 4), (80, 80, 80), 1)
            cv2.rectangle(canvas, (3, top + 1), (3 + int(round(progress * (width - 7))), top + BAR_HEIGHT - 5), _stage_colour(stage), -1)
            text = f"t={t} progress {progress:.2f}  {stage_names[stage][:28]}  P(success) {float(rows['success'][t]):.2f}"
            cv2.putText(canvas, text, (3, height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
            writer.write(canvas)
    finally:
        writer.release()
    os.replace(temporary, path)


def draw_plots(reader, table_path: Path, episodes: list[int], mapping: dict[str, str], image_size: int, folder: Path) -> list[Path]:
    """For each episode: `episode_NNNNNN.png` (progress / stage / success over time) and `.mp4` (views + progress bar)."""
    import json

    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = json.loads(pq.read_schema(table_path).metadata[b"headway"])
    stage_names = list(meta["stage_names"])
    table = _episode_rows(table_path, episodes)
    written = []
    for index in episodes:
        part = table.filter(np.asarray(table.column("episode_index").to_numpy() == index))
        rows = {name: part.column(name).to_numpy() for name in ("frame_index", "progress", "stage", "success", "uncertainty")}
        episode = reader.episode(index, list(mapping.values()))
        title = f"episode {index}: {episode.task}" + (f" ({'success' if episode.outcome.success else 'failure'})" if episode.outcome else "")
        png = folder / f"episode_{index:06d}.png"
        atomic_write_bytes(png, _plot_png(rows, stage_names, reader.fps, title))
        mp4 = folder / f"episode_{index:06d}.mp4"
        _write_video(mp4, {key: episode.images[key] for key in mapping.values()}, rows, stage_names, reader.fps)
        written += [png, mp4]
    return written


def label_features(table_path: Path, root: Path) -> dict[str, tuple[np.ndarray, dict]]:
    """The label columns as lerobot features, in the order of the dataset's data files (NaN / -1 where unlabelled)."""
    import json

    import pyarrow.parquet as pq

    labels = pq.read_table(table_path)
    stage_names = json.loads(labels.schema.metadata[b"headway"])["stage_names"]
    label_index = labels.column("index").to_numpy()
    order = np.argsort(label_index, kind="stable")
    label_index = label_index[order]
    data_index = np.concatenate(
        [pq.read_table(path, columns=["index"]).column("index").to_numpy() for path in sorted((Path(root) / "data").glob("*/*.parquet"))]
    )
    position = np.clip(np.searchsorted(label_index, data_index), 0, len(label_index) - 1)
    found = label_index[position] == data_index

    def column(name: str, fill, dtype) -> np.ndarray:
        values = np.asarray(labels.column(name).to_numpy(zero_copy_only=False))[order][position].astype(dtype)
        values[~found] = fill
        return values

    probs = np.stack(labels.column("stage_probs").to_numpy(zero_copy_only=False))[order][position].astype(np.float32)
    probs[~found] = np.nan
    scalar = {"shape": (1,), "names": None}
    features = {
        "progress": (column("progress", np.nan, np.float32), {"dtype": "float32", **scalar}),
        "stage": (column("stage", -1, np.int64), {"dtype": "int64", **scalar}),
        "success": (column("success", np.nan, np.float32), {"dtype": "float32", **scalar}),
        "uncertainty": (column("uncertainty", np.nan, np.float32), {"dtype": "float32", **scalar}),
        "reward": (column("reward", np.nan, np.float32), {"dtype": "float32", **scalar}),
        "rabc_weight": (column("rabc_weight", np.nan, np.float32), {"dtype": "float32", **scalar}),
    }
    cells = np.empty(len(probs), dtype=object)
    cells[:] = list(probs)
    features["stage_probs"] = (cells, {"dtype": "float32", "shape": (len(stage_names),), "names": list(stage_names)})
    return {LABEL_FEATURE_PREFIX + name: value for name, value in features.items()}


def write_labelled_dataset(root: Path, table_path: Path, out: Path, overwrite: bool = False) -> Path:
    """Copy the dataset to `out` with the label columns added as features (lerobot's `add_features`)."""
    import logging

    from lerobot.datasets.dataset_tools import add_features
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, out = Path(root), Path(out)
    if out.resolve() == root.resolve():
        raise HeadwayError(f"--write-dataset {out} is the source dataset; pass a new folder")
    if out.exists():
        if not overwrite:
            raise HeadwayError(f"--write-dataset {out} already exists; pass --overwrite to replace it, or another folder")
        if any(out.iterdir()) and not (out / "meta" / "info.json").exists():
            raise HeadwayError(f"--write-dataset {out} holds files that are not a LeRobot dataset; pick another folder")
        shutil.rmtree(out)
    temporary = out.parent / f".{out.name}.partial"
    if temporary.exists():
        shutil.rmtree(temporary)
    source = LeRobotDataset(repo_id=f"local/{root.name}", root=root, video_backend="pyav")
    existing = [k for k in label_features(table_path, root) if k in source.meta.features]
    if existing:
        raise HeadwayError(f"{root} already has label features ({', '.join(existing)}); remove them first")
    level = logging.getLogger().level
    try:
        logging.getLogger().setLevel(logging.WARNING)
        add_features(source, label_features(table_path, root), output_dir=temporary, repo_id=f"local/{out.name}")
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    finally:
        logging.getLogger().setLevel(level)
    os.replace(temporary, out)
    return out
