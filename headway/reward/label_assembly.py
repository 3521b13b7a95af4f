"""Labelling's last step: the final label table and LeRobot progress file, streamed from the
staged episodes in two passes (RA-BC statistics over every frame, then one row group per episode)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from headway.reward.label_scoring import episode_file, load_staged
from headway.reward.rabc import EPSILON, RABCStatistics, progress_deltas, weights_from_deltas
from headway.reward.shaping import potential_based_rewards

CARD_FILE = "labels.json"
PROGRESS_FILE = "sarm_progress.parquet"
TABLE_FILE = "labels.parquet"


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


def assemble_labels(partial: Path, episodes: list[int], identity: dict, stage_names: tuple[str, ...]) -> dict:
    """Write the final label table and LeRobot progress file from the staged episodes, two streaming passes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunk, gamma = identity["chunk_size"], identity["gamma"]
    stats = (0, 0.0, 0.0)
    for index in episodes:  # pass 1: RA-BC statistics over every frame's progress delta
        with np.load(episode_file(partial, index)) as data:
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
            data = load_staged(episode_file(partial, index))
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
