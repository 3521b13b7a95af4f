"""Resumable collection of mixed-quality simulated demonstrations into a LeRobot dataset.

Layout while working (headway.run_dir): `<out>.partial/` holds `collect.json` (the configuration) and one staged
file per finished episode. Only when every episode is staged is the LeRobot dataset written
(inside the partial folder) and moved to `<out>` in one rename, so `<out>` is either absent or a
complete dataset. After a kill at any moment, `--resume` keeps the staged episodes and redoes the rest.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from headway.atomic import atomic_write_bytes, atomic_write_json, read_json
from headway.datasets.staging import load_staged_episode, stage_episode
from headway.errors import HeadwayError, unknown_name
from headway.executors import RaySession, RaySettings
from headway.run_dir import RunDir
from headway.sim.env import DEFAULT_VIEWS, EnvConfig, HeadwayEnv
from headway.sim.expert import FAILURES, MODES, Behaviour, failable_stages, sample_behaviour
from headway.sim.randomization import format_randomization, validate_randomization
from headway.sim.rollout import EpisodeRecord, run_episode
from headway.sim.task import get_task

DEFAULT_MIX = {"expert": 0.6, "noisy": 0.2, "fail": 0.2}
# Half expert, half what real teleoperation adds: noise, failures, recoveries, hesitations, detours
# (most of the latter succeed, so keeping the successful episodes does not remove them). The policy bench's data.
HARD_MIX = {"expert": 0.5, "noisy": 0.1, "fail": 0.15, "recover": 0.1, "hesitate": 0.075, "detour": 0.075}
FAILURE_STAGES = ("random", "cycle")  # where stall / away strike: drawn per episode, or every stage in turn
STAGING = "episodes"
RANDOMIZATION_COLUMN = "headway_randomization"  # per-episode JSON in the episodes metadata
CONFIG_FILE = "collect.json"


def parse_mix(text: str) -> dict[str, float]:
    """'expert=0.6,noisy=0.2,fail=0.2' -> {'expert': 0.6, ...}."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise HeadwayError(f"mix entry {part!r} is not MODE=SHARE; write e.g. expert=0.6,noisy=0.2,fail=0.2")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            raise HeadwayError(f"mix share {value!r} for {name!r} is not a number") from None
    return mix


@dataclass
class CollectConfig:
    """What to collect and where."""

    task: str = "lift"  # lift, stack, pick_place_can or door
    episodes: int = 50
    # shares of episodes per behaviour mode (headway.sim.expert.MODES), as MODE=SHARE,...
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    views: tuple[str, ...] = DEFAULT_VIEWS  # camera names
    image_size: int = 84  # square image size in pixels
    seed: int = 0
    out: Path = Path("data/lift")  # dataset folder to create
    fast_render: bool = True  # False: keep multisampling, shadows and reflections
    vcodec: str = "libsvtav1"  # codec of the dataset's videos
    failure_kinds: tuple[str, ...] = FAILURES  # failed episodes take these kinds in turn
    # where stall / away strike: a random stage per episode, or every stage in turn
    failure_stages: Literal["random", "cycle"] = "random"
    # per-episode domain randomisation (headway.sim.randomization), KIND[=STRENGTH],...: camera (0-4,
    # 1 = +-2 cm / 5 deg / +-2 deg fovy), lighting (0-4, 1 = robosuite's default), texture (0-1, blend of a
    # random table/floor/wall pattern), color (0-1, blend of a random robot colour), dynamics (0-4);
    # strength 1 if left out; 'mild' = camera=0.5,lighting=0.5,texture=0.15,color=0.15; empty = nominal scene
    randomize: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.randomize = validate_randomization(dict(self.randomize or {}))
        self.out = Path(self.out)
        self.views = tuple(self.views)
        self.failure_kinds = tuple(self.failure_kinds)
        if not self.failure_kinds:
            raise HeadwayError(f"give at least one failure kind: {', '.join(FAILURES)}")
        for kind in self.failure_kinds:
            if kind not in FAILURES:
                raise unknown_name("failure kind", kind, FAILURES)
        if self.failure_stages not in FAILURE_STAGES:
            raise unknown_name("failure-stage plan", self.failure_stages, FAILURE_STAGES)
        if self.episodes < 1:
            raise HeadwayError(f"--episodes must be at least 1, got {self.episodes}")
        for mode, share in self.mix.items():
            if mode not in MODES:
                raise unknown_name("mode", mode, MODES)
            if not share >= 0:
                raise HeadwayError(f"mix share of {mode!r} must be >= 0, got {share}")
        if abs(sum(self.mix.values()) - 1.0) > 1e-6:
            raise HeadwayError(f"mix shares sum to {sum(self.mix.values()):g}, not 1: {self.mix}")
        if not self.views:
            raise HeadwayError("give at least one camera view")
        self.env_config()  # validates task, views and size before any work

    def env_config(self) -> EnvConfig:
        return EnvConfig(
            task=self.task, views=self.views, image_size=self.image_size, fast_render=self.fast_render,
            randomize=self.randomize,
        )

    def identity(self) -> dict:
        """What must match for a resumed collection to continue this one."""
        data = asdict(self)
        data["out"] = str(self.out)
        data["views"] = list(self.views)
        data["failure_kinds"] = list(self.failure_kinds)
        return data


@dataclass(frozen=True)
class PlannedEpisode:
    index: int
    seed: int
    behaviour: Behaviour


def plan_episodes(config: CollectConfig) -> list[PlannedEpisode]:
    """Deterministic per-episode seeds and behaviours: mode counts by largest remainder, shuffled.

    Failed episodes take the failure kinds in turn; with `failure_stages="cycle"` each kind also
    strikes every failable stage in turn, so no stage is left without a stall or an away.
    """
    task = get_task(config.task)
    stages = failable_stages(task)
    kinds = config.failure_kinds
    shares = {m: config.mix.get(m, 0.0) * config.episodes for m in MODES}
    counts = {m: int(np.floor(v)) for m, v in shares.items()}
    for mode in sorted(MODES, key=lambda m: shares[m] - counts[m], reverse=True):
        if sum(counts.values()) < config.episodes:
            counts[mode] += 1
    modes = [m for m in MODES for _ in range(counts[m])]
    np.random.default_rng([config.seed, 1]).shuffle(modes)
    planned, failures = [], 0
    for index, mode in enumerate(modes):
        rng = np.random.default_rng([config.seed, index, 2])
        failure = fail_stage = None
        if mode == "fail":
            failure = kinds[failures % len(kinds)]
            if config.failure_stages == "cycle":
                fail_stage = stages[(failures // len(kinds)) % len(stages)]
            failures += 1
        seed = config.seed * 100_000 + index
        planned.append(PlannedEpisode(index, seed, sample_behaviour(mode, task, rng, failure, fail_stage)))
    return planned


@dataclass
class CollectSummary:
    out: Path
    episodes: int
    frames: int
    seconds: float
    by_mode: dict[str, int]
    successes_by_mode: dict[str, int]
    resumed: int = 0

    @property
    def success_rate(self) -> float:
        return sum(self.successes_by_mode.values()) / max(self.episodes, 1)

    def render(self) -> str:
        modes = ", ".join(
            f"{m}: {self.by_mode[m]} ({self.successes_by_mode.get(m, 0)} succeeded)" for m in sorted(self.by_mode)
        )
        rate = self.frames / self.seconds if self.seconds > 0 else float("nan")
        resumed = f", {self.resumed} kept from an earlier run" if self.resumed else ""
        return (
            f"wrote {self.out}: {self.episodes} episodes{resumed}, {self.frames} frames, success rate "
            f"{self.success_rate:.0%}, {self.seconds:.1f} s ({rate:.1f} frames/s)\n  by mode: {modes}"
        )


def _run_dir(config: CollectConfig) -> RunDir:
    return RunDir(config.out, job="collection", identity=config.identity(), identity_file=CONFIG_FILE,
                  finished=_finished_identity, defaults=CollectConfig().identity(), formats={"randomize": format_randomization})


def _finished_identity(out: Path) -> dict | None:
    """The settings a finished dataset at `out` was collected with (None: not a headway collection)."""
    card = out / "meta" / "headway.json"
    return read_json(card).get("collect") if card.exists() else None


def _kept_summary(out: Path, started: float) -> CollectSummary:
    """The summary of a finished collection kept by --resume."""
    from headway.datasets.reader import DatasetReader  # deferred: pandas/pyarrow, only to sum up a kept dataset

    reader = DatasetReader(out)
    outcomes = [reader.outcome(i) for i in range(reader.num_episodes)]
    return CollectSummary(
        out=out, episodes=reader.num_episodes, frames=reader.num_frames, seconds=time.perf_counter() - started,
        by_mode=dict(Counter(o.mode for o in outcomes)), successes_by_mode=dict(Counter(o.mode for o in outcomes if o.success)),
        resumed=reader.num_episodes,
    )


class EpisodeCollector:
    """Rolls out planned episodes in one simulator; the body of a Ray collection worker (`--executor ray`).

    `run` returns the staging file's bytes and the scene record, and the driver writes both: workers
    need no access to the output folder, and a retried episode is still staged once.
    """

    def __init__(self, config: CollectConfig) -> None:
        import os

        os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco loads; Ray's runtime_env sets it too
        self.env = HeadwayEnv(config.env_config())

    def run(self, planned: PlannedEpisode) -> tuple[bytes, dict | None]:
        import tempfile

        record = run_episode(self.env, planned.behaviour, planned.seed)
        scene = self.env.scene.record | _intrinsics(record) if self.env.scene is not None else None
        with tempfile.TemporaryDirectory(prefix="headway-collect-") as folder:
            path = Path(folder) / "episode.npz"
            stage_episode(path, record)
            return path.read_bytes(), scene


def collect(
    config: CollectConfig, resume: bool = False, overwrite: bool = False, progress: bool = True, ray: RaySettings | None = None
) -> CollectSummary:
    """Collect `config.episodes` scripted episodes into a LeRobot dataset at `config.out`.

    With `ray` (headway.executors), the episodes are rolled out by Ray workers; the dataset is the
    same, written here in seed order.
    """
    from headway.datasets.writer import write_dataset  # deferred: pandas/pyarrow, only once every episode is staged

    started = time.perf_counter()
    run = _run_dir(config)
    if run.open(resume, overwrite) == "complete":
        return _kept_summary(config.out, started)
    partial = run.work
    (partial / STAGING).mkdir(exist_ok=True)
    staged = lambda i: partial / STAGING / f"episode_{i:06d}.npz"  # noqa: E731
    plan = plan_episodes(config)
    remaining = [p for p in plan if not staged(p.index).exists()]
    if ray is not None and remaining:
        _collect_on_ray(config, remaining, partial, staged, ray, progress)
    here = remaining if ray is None else []  # the episodes this process rolls out
    env = HeadwayEnv(config.env_config()) if here else None
    bar = tqdm(total=len(plan), initial=len(plan) - len(here), desc=f"collect {config.task}", unit="ep",
               disable=not progress or env is None)
    try:
        for planned in here:
            record = run_episode(env, planned.behaviour, planned.seed)
            if env.scene is not None:  # written before the episode's staging file, which marks it done
                atomic_write_json(scene_file(partial, planned.index), env.scene.record | _intrinsics(record))
            stage_episode(staged(planned.index), record)
            bar.set_postfix(mode=record.mode, success=record.success)
            bar.update()
    finally:
        bar.close()
        if env is not None:
            env.close()

    records_meta = []

    def staged_records():
        for planned in plan:
            record: EpisodeRecord = load_staged_episode(staged(planned.index))
            records_meta.append((record.behaviour.mode, record.success, record.length))
            yield record

    build = partial / "dataset"
    if build.exists():
        shutil.rmtree(build)
    card = {"task": config.task, "views": list(config.views), "image_size": config.image_size, "collect": config.identity()}
    scenes = _scene_records(partial, plan) if config.randomize else None
    if scenes is not None:
        card["randomization"] = {"strengths": dict(config.randomize), "episodes": scenes}
    object_dim = _object_dim(partial, plan)
    write_dataset(build, staged_records(), get_task(config.task), config.views, config.image_size, object_dim, card, config.vcodec)
    if scenes is not None:
        from headway.datasets.writer import add_episode_columns  # deferred: pandas/pyarrow

        add_episode_columns(build, [{RANDOMIZATION_COLUMN: json.dumps(scene)} for scene in scenes])
    run.publish(build)
    by_mode = Counter(mode for mode, _, _ in records_meta)
    successes = Counter(mode for mode, success, _ in records_meta if success)
    return CollectSummary(
        out=config.out,
        episodes=len(records_meta),
        frames=sum(length for _, _, length in records_meta),
        seconds=time.perf_counter() - started,
        by_mode=dict(by_mode),
        successes_by_mode=dict(successes),
        resumed=len(plan) - len(remaining),
    )


def _collect_on_ray(config: CollectConfig, remaining: list[PlannedEpisode], partial: Path, staged, ray: RaySettings,
                    progress: bool) -> None:
    """Roll out `remaining` on Ray workers; stage each episode here as it finishes (scene record first)."""
    def write(planned: PlannedEpisode, result: tuple[bytes, dict | None]) -> None:
        data, scene = result
        if scene is not None:  # before the staging file, which marks the episode done
            atomic_write_json(scene_file(partial, planned.index), scene)
        atomic_write_bytes(staged(planned.index), data)

    with RaySession(ray) as session:
        session.run(EpisodeCollector, (config,), remaining, write, ahead=1, desc=f"collect {config.task}", unit="ep",
                    name=lambda planned: f"episode {planned.index} (seed {planned.seed})", progress=progress)


def scene_file(partial: Path, index: int) -> Path:
    return partial / STAGING / f"episode_{index:06d}.scene.json"


def _intrinsics(record: EpisodeRecord) -> dict:
    """The episode's camera matrices: under camera randomisation the field of view differs per episode."""
    return {"intrinsics": {view: np.round(np.asarray(k), 6).tolist() for view, k in record.intrinsics.items()}}


def _scene_records(partial: Path, plan: list[PlannedEpisode]) -> list[dict]:
    scenes = []
    for planned in plan:
        path = scene_file(partial, planned.index)
        if not path.exists():
            raise HeadwayError(
                f"{path.parent} holds episode {planned.index} without its randomisation record; "
                "pass --overwrite to collect again"
            )
        scenes.append({"episode_index": planned.index, "seed": planned.seed, **read_json(path)})
    return scenes


def read_randomization(root: Path) -> dict | None:
    """A collected dataset's randomisation: {'strengths': {...}, 'episodes': [per-episode record]} or None."""
    path = Path(root) / "meta" / "headway.json"
    return read_json(path).get("randomization") if path.exists() else None


def _object_dim(partial: Path, plan: list[PlannedEpisode]) -> int:
    with np.load(partial / STAGING / f"episode_{plan[0].index:06d}.npz") as data:
        return int(data["object_state"].shape[1])
