"""Offline reward labelling of LeRobot v3.0 datasets: resumable, crash-safe, in bounded memory.

    summary = label_dataset(LabelConfig(dataset="data/lift", model="models/lift"))

Every frame of every episode is scored causally by any headway reward model and written to
`<out>` (default: the sibling folder `<dataset>.labels`; the source dataset is never touched):

- `sarm_progress.parquet`: LeRobot's schema (`index`, `episode_index`, `frame_index` int64,
  `progress_sparse` float32), read unchanged by `lerobot.rewards.sarm.rabc.RABCWeights` and therefore by
  `lerobot-train --sample_weighting.type=rabc --sample_weighting.progress_path=<it>`;
- `labels.parquet`: headway's full table, one row per frame (progress, stage, stage name and
  probabilities, success probability, uncertainty, potential-based shaped reward for `gamma`,
  RA-BC weight for `chunk_size`);
- `labels.json`: the card (model and dataset fingerprints, settings, counts) that makes a later
  run refuse a folder holding labels from another model, dataset or settings.

Crash safety (headway.run_dir): each scored episode is staged as one file in `<out>.partial/episodes/`
with an atomic write; the final files are assembled from the staged ones only when every episode
is done and renamed onto `<out>` in one step. After a kill at any moment, `resume=True` scores
only the missing episodes and writes final files byte-for-byte equal to an uninterrupted run's.
One episode is decoded (in a background thread, while the previous one is scored) and one is
scored at a time, so memory does not grow with the number of episodes.

The steps live in their own modules: `label_inputs` (dataset, model, camera mapping, fingerprints),
`label_scoring` (one episode scored and staged), `label_assembly` (the final files); this one holds
the configuration, the output folder and the pipeline.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headway.atomic import atomic_write_json, read_json
from headway.datasets.reader import DatasetReader
from headway.errors import HeadwayError
from headway.executors import ray_settings
from headway.reward.frame_rate import model_frame_rate
from headway.reward.label_assembly import CARD_FILE, PROGRESS_FILE, TABLE_FILE, assemble_labels
from headway.reward.label_inputs import dataset_fingerprint, load_model, match_views, model_fingerprint, resolve_dataset
from headway.reward.label_outputs import draw_plots, write_labelled_dataset
from headway.reward.label_scoring import episode_file, score_episodes
from headway.reward.loading import reward_model_spec
from headway.reward.ray_labelling import score_on_ray
from headway.run_dir import RunDir
from headway.runtime import torch_threads

FORMAT = "headway.labels"
FORMAT_VERSION = 1
PLOTS_DIR = "plots"
IDENTITY_FILE = "identity.json"  # in the partial area while labelling


# -- configuration ---------------------------------------------------------------------------------
def parse_episodes(text: str | None) -> tuple[int, ...] | None:
    """'0-99,120,130-131' -> (0, ..., 99, 120, 130, 131); None or '' -> None (all episodes)."""
    if text is None or not str(text).strip():
        return None
    episodes: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise HeadwayError(f"bad episode range {part!r} in --episodes {text!r}; write e.g. 0-99,120")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise HeadwayError(f"episode range {part!r} goes backwards; write {last}-{first}")
        episodes.extend(range(first, last + 1))
    return tuple(sorted(set(episodes)))


def parse_view_mapping(pairs: list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """['agentview=observation.images.top', ...] -> {model view: dataset camera key}."""
    mapping: dict[str, str] = {}
    for pair in pairs or ():
        model_view, sep, dataset_key = str(pair).partition("=")
        if not sep or not model_view.strip() or not dataset_key.strip():
            raise HeadwayError(f"bad --view {pair!r}; write MODEL_VIEW=DATASET_KEY, e.g. agentview=observation.images.top")
        if model_view.strip() in mapping:
            raise HeadwayError(f"--view maps the model view {model_view.strip()!r} twice; give each model view once")
        mapping[model_view.strip()] = dataset_key.strip()
    return mapping


@dataclass
class LabelConfig:
    """What to label, with which model, and the settings that shape the labels.

    dataset: a local LeRobot v3.0 dataset folder (or a hub id already in lerobot's cache, or any
    hub id with `allow_download`); model: a headway reward checkpoint folder; out: output folder
    (default `<dataset>.labels`); views: model view -> dataset camera key (others matched by
    name); episodes: which episodes (default all); gamma: discount of the shaped reward;
    chunk_size: RA-BC action-chunk length H; plots: episodes to draw; write_dataset: folder for a
    copy of the dataset with the labels added as features.
    """

    dataset: Path | str  # LeRobot v3.0 dataset folder (or a hub id in lerobot's cache)
    model: Path | str  # reward model: a checkpoint folder, lerobot:TYPE:PATH or gvl:MODEL
    out: Path | None = None  # output folder (default: <dataset>.labels beside the dataset)
    views: dict[str, str] = field(default_factory=dict)
    episodes: tuple[int, ...] | None = None  # episodes to label, e.g. 0-99,120 (default: all)
    gamma: float = 0.99  # discount of the potential-based shaped reward
    chunk_size: int = 50  # RA-BC action-chunk length H in frames (50 as lerobot)
    batch_size: int = 256  # frames per model batch
    device: str | None = None  # cpu or cuda; None: cuda when present
    plots: int = 0  # draw a PNG and an MP4 for the first N episodes
    write_dataset: Path | None = None  # also write a copy of the dataset with the labels as features, there
    allow_download: bool = False  # let a hub id not in the local cache be downloaded
    threads: int | None = None  # torch threads while scoring; None: all cores but one, which decodes
    # where scoring runs: None on this process; "ray" on a Ray cluster (headway.executors), at `address`
    # (None: start Ray here), with `workers` model actors of `gpus_per_worker` GPUs each
    executor: str | None = None
    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None

    def __post_init__(self) -> None:
        self.out = None if self.out is None else Path(self.out)
        self.write_dataset = None if self.write_dataset is None else Path(self.write_dataset)
        if isinstance(self.views, (list, tuple)):
            self.views = parse_view_mapping(self.views)
        self.views = dict(self.views)
        if isinstance(self.episodes, str):
            self.episodes = parse_episodes(self.episodes)
        if self.episodes is not None:
            self.episodes = tuple(sorted({int(e) for e in self.episodes}))
            if not self.episodes or self.episodes[0] < 0:
                raise HeadwayError(f"episodes must be non-negative episode indices, got {self.episodes[:5]}")
        if not 0.0 <= float(self.gamma) <= 1.0:
            raise HeadwayError(f"--gamma must be in [0, 1] (the learner's discount), got {self.gamma}")
        self.gamma = float(self.gamma)
        if int(self.chunk_size) < 1:
            raise HeadwayError(f"--chunk-size must be at least 1 frame (the policy's action chunk), got {self.chunk_size}")
        if int(self.batch_size) < 1:
            raise HeadwayError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.threads is not None and int(self.threads) < 1:
            raise HeadwayError(f"--threads must be at least 1, got {self.threads}")
        if int(self.plots) < 0:
            raise HeadwayError(f"--plots must be 0 or more episodes, got {self.plots}")
        self.chunk_size, self.batch_size, self.plots = int(self.chunk_size), int(self.batch_size), int(self.plots)
        ray_settings(self.executor, self.address, self.workers, self.gpus_per_worker)  # flag errors before any work


@dataclass
class LabelSummary:
    """What a labelling run did and where its files are."""

    out: Path
    progress_path: Path
    table_path: Path
    card_path: Path
    episodes: int
    frames: int
    seconds: float
    scored_episodes: int  # scored by this run (the rest were staged before, or already complete)
    scored_frames: int
    views: dict[str, str]
    mean_final_progress_success: float | None
    mean_final_progress_failure: float | None
    successes: int | None
    failures: int | None
    plots: list[Path] = field(default_factory=list)
    dataset_copy: Path | None = None
    total_seconds: float = 0.0  # with plots and the dataset copy
    scoring_seconds: float = 0.0  # decoding + scoring + staging only (no start-up, no assembly)
    ray_startup_seconds: float = 0.0  # connecting to / starting Ray (--executor ray), outside scoring_seconds
    notes: list[str] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        """Frames scored by this run per second of labelling (decode + inference + writing)."""
        return self.scored_frames / self.seconds if self.seconds > 0 and self.scored_frames else float("nan")

    def lerobot_arguments(self) -> str:
        """The options that make lerobot's training script use these labels for RA-BC."""
        return f"--sample_weighting.type=rabc --sample_weighting.progress_path={self.progress_path}"

    def render(self) -> str:
        lines = [
            f"labelled {self.episodes} episodes, {self.frames} frames in {self.seconds:.1f} s "
            + (f"({self.frames_per_second:,.0f} frames/s with start-up and assembly, "
               f"{self.scored_frames / max(self.scoring_seconds, 1e-9):,.0f} frames/s decoding and scoring; "
               f"{self.scored_episodes} episodes scored by this run)"
               if self.scored_frames else "(all already labelled)"),
            f"views (model <- dataset): {', '.join(f'{m} <- {d}' for m, d in self.views.items())}",
        ]
        if self.ray_startup_seconds:
            lines.append(f"Ray start-up: {self.ray_startup_seconds:.1f} s (not in the decoding-and-scoring rate)")
        if self.mean_final_progress_success is not None or self.mean_final_progress_failure is not None:
            def show(value: float | None, count: int | None) -> str:
                return "n/a" if value is None else f"{value:.3f} over {count}"

            lines.append(
                f"mean final progress: successful episodes {show(self.mean_final_progress_success, self.successes)}, "
                f"failed episodes {show(self.mean_final_progress_failure, self.failures)}"
            )
        lines += [f"note: {note}" for note in self.notes]
        lines += [
            f"progress for LeRobot RA-BC: {self.progress_path}",
            f"  lerobot-train ... {self.lerobot_arguments()}",
            f"full label table: {self.table_path}",
            f"card: {self.card_path}",
        ]
        if self.plots:
            lines.append(f"plots: {len(self.plots)} files in {self.plots[0].parent}")
        if self.dataset_copy is not None:
            lines.append(f"labelled dataset copy (LeRobotDataset): {self.dataset_copy}")
        return "\n".join(lines)


# -- the output folder -----------------------------------------------------------------------------
def default_out(root: Path) -> Path:
    return root.parent / f"{root.name}.labels"


def _run_dir(out: Path, identity: dict) -> RunDir:
    return RunDir(out, job="labelling run", identity=identity, identity_file=IDENTITY_FILE, finished=_finished_identity)


def _finished_identity(out: Path) -> dict | None:
    """The identity of the labels at `out` (None: not a headway label folder)."""
    card = out / CARD_FILE
    return read_json(card).get("identity", {}) if card.exists() else None


# -- the pipeline ----------------------------------------------------------------------------------
def label_dataset(config: LabelConfig, resume: bool = False, overwrite: bool = False, progress: bool = True) -> LabelSummary:
    """Label every frame of `config.dataset` with `config.model`; see the module docstring.

    resume: finish an interrupted run in the output folder (or accept labels it already holds);
    overwrite: replace labels from another model/dataset/settings or an interrupted run;
    progress: show a tqdm bar with frames/s. Returns a `LabelSummary` (`.render()` prints it).
    """
    started = time.perf_counter()
    root = resolve_dataset(config.dataset, config.allow_download)
    reader = DatasetReader(root)
    spec = reward_model_spec(config.model)
    model_path = Path(config.model)
    if spec is None and not model_path.exists():
        raise HeadwayError(f"reward model {model_path} does not exist; pass a checkpoint folder written by `headway reward train`")
    model = load_model(config.model, config.device)
    mapping = match_views(tuple(model.views), reader.camera_keys, config.views)
    episodes = list(config.episodes) if config.episodes is not None else list(range(reader.num_episodes))
    missing = [e for e in episodes if e >= reader.num_episodes]
    if missing:
        raise HeadwayError(
            f"--episodes asks for episode {missing[0]} but {root} has episodes 0-{reader.num_episodes - 1}"
        )
    if not episodes:
        raise HeadwayError(f"{root} has no episodes to label")
    out = Path(config.out) if config.out is not None else default_out(root)
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise HeadwayError(f"--out {out} is inside the dataset; labels are written beside it, never into it")

    notes = []
    unmatched = [v for v in model.views if v not in mapping]
    if unmatched:
        notes.append(f"the dataset has no camera for model view(s) {', '.join(unmatched)}; scored with {', '.join(mapping)} only")
    model_fps = model_frame_rate(model)
    if model_fps and abs(model_fps - reader.fps) > 1e-6:
        notes.append(f"the model was trained at {model_fps:g} fps and the dataset runs at {reader.fps:g} fps; "
                     "each episode was scored at the model's rate and its scores held over the recorded frames")
    identity = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": spec or str(model_path.resolve()),
        "model_fingerprint": model_fingerprint(config.model),
        "dataset": str(root.resolve()),
        "dataset_fingerprint": dataset_fingerprint(root),
        "views": mapping,
        "episodes": _ranges(episodes),
        "gamma": config.gamma,
        "chunk_size": config.chunk_size,
        "batch_size": config.batch_size,
        "stage_names": list(model.stage_names),
        "image_size": int(model.image_size),
    }
    run = _run_dir(out, identity)
    scored, scored_frames, scoring_seconds, ray_startup = 0, 0, 0.0, 0.0
    if run.open(resume, overwrite) != "complete":
        partial = run.work
        todo = [e for e in episodes if not episode_file(partial, e).exists()]
        import torch

        # decoding runs in its own thread: leave it a core, or torch's threads and it fight over the CPU
        threads = config.threads or max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))
        try:
            scoring_started = time.perf_counter()
            settings = ray_settings(config.executor, config.address, config.workers, config.gpus_per_worker)
            if settings is not None:  # the Ray scorer stages the same files (headway/reward/ray_labelling.py)
                worker_model = spec or str(model_path.resolve())
                scored_frames, ray_startup = score_on_ray(reader, worker_model, config.device, mapping, todo, partial,
                                                          config.batch_size, config.threads or 1, settings, progress)
                scored = len(todo)
            else:
                with torch_threads(threads):
                    scored, scored_frames = len(todo), score_episodes(reader, model, mapping, todo, partial, config.batch_size, progress)
        except HeadwayError:
            run.discard_if_empty(lambda work: any((work / "episodes").glob("episode_*.npz")))
            raise
        scoring_seconds = time.perf_counter() - scoring_started - ray_startup
        assembled = assemble_labels(partial, episodes, identity, tuple(model.stage_names))
        build = partial / "labels"
        build.mkdir(exist_ok=True)
        os.replace(assembled["table_tmp"], build / TABLE_FILE)
        os.replace(assembled["progress_tmp"], build / PROGRESS_FILE)
        finals = assembled["finals"]
        card = {
            "identity": identity,  # no clock time: the same model on the same dataset writes the same bytes
            "episodes": len(episodes),
            "frames": assembled["frames"],
            "rabc_statistics": assembled["rabc"],
            "files": {"progress": PROGRESS_FILE, "table": TABLE_FILE},
            "final_progress": {k: [round(v, 6) for v in vals] for k, vals in finals.items()},
            "notes": notes,
        }
        atomic_write_json(build / CARD_FILE, card)
        run.publish(build)
    label_seconds = time.perf_counter() - started
    card = json.loads((out / CARD_FILE).read_text())
    finals = card["final_progress"]
    summary = LabelSummary(
        out=out,
        progress_path=out / PROGRESS_FILE,
        table_path=out / TABLE_FILE,
        card_path=out / CARD_FILE,
        episodes=card["episodes"],
        frames=card["frames"],
        seconds=label_seconds,
        scored_episodes=scored,
        scored_frames=scored_frames,
        scoring_seconds=scoring_seconds,
        ray_startup_seconds=ray_startup,
        views=mapping,
        mean_final_progress_success=float(np.mean(finals["success"])) if finals["success"] else None,
        mean_final_progress_failure=float(np.mean(finals["failure"])) if finals["failure"] else None,
        successes=len(finals["success"]) if finals["success"] or finals["failure"] else None,
        failures=len(finals["failure"]) if finals["success"] or finals["failure"] else None,
        notes=notes,
    )
    if config.plots:
        summary.plots = draw_plots(reader, out / TABLE_FILE, episodes[: config.plots], mapping, model.image_size, out / PLOTS_DIR)
    if config.write_dataset is not None:
        summary.dataset_copy = write_labelled_dataset(root, out / TABLE_FILE, config.write_dataset, overwrite=overwrite)
    summary.total_seconds = time.perf_counter() - started
    return summary


def _ranges(episodes: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (compact and exact, for the card)."""
    parts, start = [], None
    for i, e in enumerate(episodes):
        if start is None:
            start = e
        if i + 1 == len(episodes) or episodes[i + 1] != e + 1:
            parts.append(f"{start}-{e}" if e != start else f"{e}")
            start = None
    return ",".join(parts)

