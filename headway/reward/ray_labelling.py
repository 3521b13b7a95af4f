"""Labelling on Ray (`headway label ... --executor ray`): CPU tasks decode episodes, a pool of
actors that each load the reward model once score them, the driver stages each result.

The driver writes every staging file with the local path's own `stage_scores` into the local path's
`<out>.partial/episodes/`, and the final files come from the local path's `assemble_labels`, so the output
is byte-identical to `headway label` without `--executor` and `--resume` works across both.
Scores are the same because each actor runs the same `score_episode` on the same decoded frames in the
same batches; give `--threads` the same value for both runs if the machines differ in cores
(a different thread count may change float sums in the model's last bits).

Workers read the dataset themselves, so it must sit at the same path on every Ray node (shared
storage); a node that cannot see it says so. Only per-frame scores travel back to the driver.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np

from headway.errors import HeadwayError
from headway.executors import RaySession, RaySettings
from headway.runtime import set_torch_threads

_READERS: dict[str, object] = {}  # one DatasetReader per dataset per worker process (its metadata is read once)


GROUP_BYTES = 64 << 20  # decoded pixels per work item, at most: a few episodes of small frames, one of large


def decode_episodes(job: tuple[str, tuple[int, ...], list[str]]) -> list:
    """Ray (preparing actor): decode episodes `indices` of the dataset at `root` (views = dataset camera keys)."""
    from headway.datasets.reader import DatasetReader  # deferred: pandas/pyarrow, in the Ray worker that decodes

    root, indices, views = job
    if not (Path(root) / "meta" / "info.json").exists():
        raise HeadwayError(
            f"the dataset {root} is not visible on Ray node {socket.gethostname()}: put it on storage that every "
            "node mounts at the same path (NFS, a shared volume), or run without --executor ray"
        )
    reader = _READERS.get(root)
    if reader is None:
        reader = _READERS[root] = DatasetReader(Path(root))
    return [reader.episode(index, views) for index in indices]


def group_episodes(reader, todo: list[int], keys: list[str], workers: int) -> list[tuple[int, ...]]:
    """Work items: runs of consecutive episodes that share their data and video files, each at most
    GROUP_BYTES of decoded frames and small enough that every worker gets about four items."""
    per_frame = sum(int(np.prod(reader.features[key]["shape"])) for key in keys)  # uint8 bytes per time step
    lengths = {index: reader.episode_length(index) for index in todo}
    budget = max(1, min(GROUP_BYTES, sum(lengths.values()) * per_frame // max(1, 4 * workers)))
    groups: list[tuple[int, ...]] = []
    current: list[int] = []
    size, files = 0, None
    for index in todo:
        row = reader._row(index)
        where = tuple(row.get(name) for name in sorted(row) if name.endswith(("/chunk_index", "/file_index")))
        frames = lengths[index] * per_frame
        if current and (where != files or size + frames > budget or index != current[-1] + 1):
            groups.append(tuple(current))
            current, size = [], 0
        current.append(index)
        size += frames
        files = where
    if current:
        groups.append(tuple(current))
    return groups


class EpisodeScorer:
    """Ray actor body: loads the reward model once, then scores decoded episodes with `score_episode`."""

    def __init__(self, model: str, device: str | None, mapping: dict[str, str], batch_size: int, threads: int) -> None:
        import warnings

        from headway.reward.label_inputs import load_model  # deferred: pandas/pyarrow (dataset reader), in the Ray worker

        # frames arrive read-only from Ray's object store; the model copies them into its batches
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        set_torch_threads(threads)
        self.model = load_model(model, device)
        self.mapping, self.batch_size = mapping, batch_size

    def run(self, episodes: list) -> list[dict]:
        from headway.reward.label_scoring import score_episode  # deferred: pandas/pyarrow (dataset reader), in the Ray worker

        return [score_episode(self.model, episode, self.mapping, self.batch_size) for episode in episodes]


def score_on_ray(
    reader,
    model: str,
    device: str | None,
    mapping: dict[str, str],
    todo: list[int],
    partial: Path,
    batch_size: int,
    threads: int,
    settings: RaySettings,
    progress: bool = True,
) -> tuple[int, float]:
    """Score and stage the episodes in `todo` of the dataset `reader` reads on Ray. Returns (frames
    scored, start-up seconds: connecting to Ray and the workers loading the model)."""
    from headway.reward.label_scoring import episode_file, stage_scores  # deferred: pandas/pyarrow (dataset reader)

    if not todo:  # every episode staged already (a run killed during assembly): no Ray needed
        return 0, 0.0
    root_text = str(Path(reader.root).resolve())
    keys = list(mapping.values())

    def staged(job, results) -> None:
        for index, arrays in zip(job[1], results):
            stage_scores(episode_file(partial, index), arrays)

    with RaySession(settings) as session:
        jobs = [(root_text, group, keys) for group in group_episodes(reader, todo, keys, session.workers)]
        frames = session.run(
            EpisodeScorer,
            (model, device, mapping, batch_size, threads),
            jobs,
            staged,
            prepare=decode_episodes,
            warm=(root_text, (todo[0],), keys),  # scored once untimed by each worker (first-call costs)
            desc="labelling",
            unit="frame",
            size=lambda job: sum(reader.episode_length(index) for index in job[1]),
            name=lambda job: f"episodes {job[1][0]}-{job[1][-1]}",
            progress=progress,
        )
    return frames, session.startup_seconds + session.warmup_seconds
