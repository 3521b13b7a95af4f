"""Labelling on Ray (`headway label ... --executor ray`): CPU tasks decode episodes, a pool of
actors that each load the reward model once score them, the driver stages each result.

The driver writes every staging file with the local path's own `_stage` into the local path's
`.partial/episodes/`, and the final files come from the local path's `_assemble`, so the output
is byte-identical to `headway label` without `--executor` and `--resume` works across both.
Scores are the same because each actor runs the same `_score` on the same decoded frames in the
same batches; give `--threads` the same value for both runs if the machines differ in cores
(a different thread count may change float sums in the model's last bits).

Workers read the dataset themselves, so it must sit at the same path on every Ray node (shared
storage); a node that cannot see it says so. Only per-frame scores travel back to the driver.
"""

from __future__ import annotations

import socket
from pathlib import Path

from headway.errors import HeadwayError
from headway.executors import RaySession, RaySettings

_READERS: dict[str, object] = {}  # one DatasetReader per dataset per worker process (its metadata is read once)


def decode_episode(job: tuple[str, int, list[str]]):
    """Ray CPU task: decode episode `index` of the dataset at `root` (views = dataset camera keys)."""
    from headway.datasets.reader import DatasetReader

    root, index, views = job
    if not (Path(root) / "meta" / "info.json").exists():
        raise HeadwayError(
            f"the dataset {root} is not visible on Ray node {socket.gethostname()}: put it on storage that every "
            "node mounts at the same path (NFS, a shared volume), or run without --executor ray"
        )
    reader = _READERS.get(root)
    if reader is None:
        reader = _READERS[root] = DatasetReader(Path(root))
    return reader.episode(index, views)


class EpisodeScorer:
    """Ray actor body: loads the reward model once, then scores decoded episodes with `_score`."""

    def __init__(self, model: str, device: str | None, mapping: dict[str, str], batch_size: int, threads: int) -> None:
        import warnings

        import torch

        # frames arrive read-only from Ray's object store; the model copies them into its batches
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

        from headway.datasets.labelling import load_model

        torch.set_num_threads(threads)
        self.model = load_model(model, device)
        self.mapping, self.batch_size = mapping, batch_size

    def run(self, episode) -> dict:
        from headway.datasets.labelling import _score

        return _score(self.model, episode, self.mapping, self.batch_size)


def score_on_ray(
    root: Path,
    model: str,
    device: str | None,
    mapping: dict[str, str],
    todo: list[int],
    partial: Path,
    batch_size: int,
    threads: int,
    settings: RaySettings,
    progress: bool = True,
    lengths: dict[int, int] | None = None,
) -> tuple[int, float]:
    """Score and stage the episodes in `todo` on Ray. Returns (frames scored, start-up seconds: connecting
    to Ray and the workers loading the model)."""
    from headway.datasets.labelling import _episode_file, _stage

    root_text = str(Path(root).resolve())
    lengths = lengths or {}

    def staged(job, arrays) -> None:
        _stage(_episode_file(partial, job[1]), arrays)

    with RaySession(settings) as session:
        frames = session.run(
            EpisodeScorer,
            (model, device, mapping, batch_size, threads),
            [(root_text, index, list(mapping.values())) for index in todo],
            staged,
            prepare=decode_episode,
            desc="labelling",
            unit="frame",
            size=lambda job: lengths.get(job[1], 1),
            name=lambda job: f"episode {job[1]}",
            progress=progress,
        )
    return frames, session.startup_seconds + session.warmup_seconds
