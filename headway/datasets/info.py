"""A dataset's summary: views, fps, episodes, frames, tasks, stages and outcomes by mode."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from headway.datasets.reader import DatasetReader


def dataset_info(root: Path) -> dict:
    """Summary of a LeRobot dataset (headway's or anyone's) without decoding any video."""
    reader = DatasetReader(root)
    episodes_by_mode: Counter[str] = Counter()
    successes_by_mode: Counter[str] = Counter()
    annotated = 0
    for index in range(reader.num_episodes):
        outcome = reader.outcome(index)
        if outcome is not None:
            episodes_by_mode[outcome.mode] += 1
            successes_by_mode[outcome.mode] += int(outcome.success)
        annotated += reader.subtasks(index) is not None
    shape = None
    if reader.camera_keys:
        shape = list(reader.meta.features[reader.camera_keys[0]]["shape"])
    return {
        "root": str(reader.root),
        "views": reader.views,
        "image_shape": shape,
        "fps": reader.fps,
        "episodes": reader.num_episodes,
        "frames": reader.num_frames,
        "tasks": reader.tasks,
        "annotated_episodes": annotated,
        "stage_proportions": reader.stage_proportions(),
        "outcomes_by_mode": {
            mode: {"episodes": count, "successes": successes_by_mode[mode]} for mode, count in sorted(episodes_by_mode.items())
        },
    }


def render_info(info: dict) -> str:
    lines = [
        f"dataset   {info['root']}",
        f"views     {', '.join(info['views']) or '-'}  (frames {info['image_shape']})",
        f"fps       {info['fps']:g}",
        f"episodes  {info['episodes']}  ({info['annotated_episodes']} with stage annotations)",
        f"frames    {info['frames']}",
        f"tasks     {'; '.join(info['tasks'])}",
    ]
    if info["stage_proportions"]:
        lines.append("stages    (share of the task, from the dataset's annotations)")
        lines += [f"  {share:6.1%}  {name}" for name, share in info["stage_proportions"].items()]
    if info["outcomes_by_mode"]:
        lines.append("outcomes by mode")
        for mode, counts in info["outcomes_by_mode"].items():
            lines.append(f"  {mode:<11} {counts['successes']:>4}/{counts['episodes']:<4} succeeded")
    return "\n".join(lines)
