"""Subtask annotations in the layout LeRobot's SARM tooling reads, and the dataset's stage prior.

Per episode, in the episodes metadata: `sparse_subtask_names`, `sparse_subtask_start_frames`,
`sparse_subtask_end_frames`, `sparse_subtask_start_times`, `sparse_subtask_end_times` (plus the
unprefixed legacy columns lerobot also writes). Frame ranges are inclusive and exact (not
quantised to seconds as lerobot's annotator does). The dataset-level prior of stage proportions
goes to `meta/temporal_proportions_sparse.json`.

An unfinished episode (its last annotated stage is not the task's last) ends with a zero-length
sentinel subtask, the next stage at frame `length` (one past its last frame). lerobot's SARM reader
puts frames after the last annotated subtask at (last stage, 0.999), i.e. "task complete"; with the
sentinel those frames fall in a gap and get (last achieved stage, tau 1): the same normalised
progress headway's own targets give them. Readers here drop the sentinel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from headway.stages import Subtask

PREFIX = "sparse"
FIELDS = ("subtask_names", "subtask_start_times", "subtask_end_times", "subtask_start_frames", "subtask_end_frames")
PROPORTIONS_FILE = "meta/temporal_proportions_sparse.json"


def annotation_columns(
    subtasks: Sequence[Subtask], fps: float, stage_names: Sequence[str] = (), length: int | None = None
) -> dict[str, list]:
    """The episode-metadata columns for one episode (prefixed and legacy names); with the task's
    `stage_names` and the episode `length`, an unfinished episode gets its end sentinel."""
    subtasks = list(subtasks)
    if subtasks and length is not None and stage_names and subtasks[-1].name != stage_names[-1]:
        following = stage_names[list(stage_names).index(subtasks[-1].name) + 1]
        subtasks.append(Subtask(following, int(length), int(length)))
    values = (
        [s.name for s in subtasks],
        [s.start / fps for s in subtasks],
        [s.end / fps for s in subtasks],
        [int(s.start) for s in subtasks],
        [int(s.end) for s in subtasks],
    )
    columns = {f"{PREFIX}_{name}": list(value) for name, value in zip(FIELDS, values, strict=True)}
    columns.update({name: list(value) for name, value in zip(FIELDS, values, strict=True)})
    return columns


def subtasks_from_row(row: dict) -> list[Subtask] | None:
    """Annotations of one episodes-metadata row; None when the episode has none."""
    names = row.get(f"{PREFIX}_subtask_names", row.get("subtask_names"))
    if names is None:
        return None
    starts = row.get(f"{PREFIX}_subtask_start_frames", row.get("subtask_start_frames"))
    ends = row.get(f"{PREFIX}_subtask_end_frames", row.get("subtask_end_frames"))
    if starts is None or ends is None:
        return None
    length = row.get("length")
    return [
        Subtask(str(n), int(s), int(e))
        for n, s, e in zip(names, starts, ends, strict=True)
        if length is None or int(s) < int(length)  # the end sentinel of an unfinished episode
    ]


def temporal_proportions(annotations: Iterable[Sequence[Subtask]], stage_names: Sequence[str]) -> dict[str, float]:
    """SARM's stage prior: mean over fully annotated episodes of each stage's share of the annotated time.

    Only episodes that achieved every stage are used (a failure's truncated annotation would
    inflate the early stages); the result is renormalised to sum to 1.
    """
    totals = dict.fromkeys(stage_names, 0.0)
    count = 0
    for subtasks in annotations:
        if [s.name for s in subtasks] != list(stage_names):
            continue
        durations = [s.end - s.start + 1 for s in subtasks]
        episode_total = sum(durations)
        for subtask, duration in zip(subtasks, durations, strict=True):
            totals[subtask.name] += duration / episode_total
        count += 1
    if count == 0:
        return {name: 1.0 / len(stage_names) for name in stage_names}
    norm = sum(totals.values())
    return {name: totals[name] / norm for name in stage_names}


def read_proportions(root: Path) -> dict[str, float] | None:
    import json

    path = Path(root) / PROPORTIONS_FILE
    return json.loads(path.read_text()) if path.exists() else None
