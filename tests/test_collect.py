"""Collection into LeRobot datasets: round trip through lerobot, resume after a kill, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_SIZE, TINY_VIEWS, tiny_config

from headway.datasets.collect import CollectConfig, collect, parse_mix, plan_episodes
from headway.datasets.info import dataset_info
from headway.datasets.reader import DatasetReader
from headway.errors import HeadwayError
from headway.run_dir import partial_dir


def test_lerobot_loads_the_dataset_with_every_feature(tiny_dataset):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("headway/lift", root=tiny_dataset, video_backend="pyav")
    assert dataset.num_episodes == 3
    assert dataset.meta.video_keys == [f"observation.images.{v}" for v in TINY_VIEWS]
    item = dataset[len(dataset) - 1]
    assert item["observation.images.agentview"].shape == (3, TINY_SIZE, TINY_SIZE)
    assert item["observation.state"].shape == (9,) and item["action"].shape == (7,)
    assert item["task"] == "pick up the red cube and lift it"
    for key in ("next.reward", "next.success", "next.done", "oracle.stage", "oracle.tau", "oracle.scene_stage", "oracle.scene_tau"):
        assert key in item
    assert bool(item["next.done"]), "the last frame of an episode is done"


def test_annotations_and_outcomes_are_in_lerobots_episode_metadata(tiny_dataset):
    from lerobot.datasets.io_utils import load_episodes

    episodes = load_episodes(tiny_dataset).to_pandas()
    for column in ("sparse_subtask_names", "sparse_subtask_start_frames", "sparse_subtask_end_frames",
                   "sparse_subtask_start_times", "sparse_subtask_end_times", "subtask_names",
                   "headway_success", "headway_mode", "headway_quality"):
        assert column in episodes.columns, column
    reader = DatasetReader(tiny_dataset)
    modes = sorted(reader.outcome(i).mode for i in range(3))
    assert modes[0] == "expert" and "noisy" in modes
    for index in range(3):
        row = episodes.iloc[index]
        subtasks = reader.subtasks(index)
        written = len(subtasks) + (len(subtasks) < 3)  # an unfinished episode's end sentinel
        assert list(row["sparse_subtask_names"])[: len(subtasks)] == [s.name for s in subtasks]
        assert list(row["sparse_subtask_end_frames"])[: len(subtasks)] == [s.end for s in subtasks]
        assert len(row["sparse_subtask_names"]) == written
        outcome = reader.outcome(index)
        assert outcome.success == (len(subtasks) == 3)
    proportions = json.loads((tiny_dataset / "meta" / "temporal_proportions_sparse.json").read_text())
    assert list(proportions) == ["reach the cube", "grasp the cube", "lift the cube"]
    assert abs(sum(proportions.values()) - 1) < 1e-9


def test_reader_decodes_every_frame_of_every_view(tiny_dataset):
    reader = DatasetReader(tiny_dataset)
    for index in range(reader.num_episodes):
        episode = reader.episode(index)
        for view in TINY_VIEWS:
            assert episode.images[view].shape == (episode.length, TINY_SIZE, TINY_SIZE, 3)
        assert episode.state.shape == (episode.length, 9)
        # consecutive decoded frames differ (the arm moves), so frames were not repeated
        assert np.abs(np.diff(episode.images["agentview"].astype(int), axis=0)).sum() > 0


def test_dataset_info_summarises(tiny_dataset):
    info = dataset_info(tiny_dataset)
    assert info["views"] == list(TINY_VIEWS) and info["episodes"] == 3 and info["fps"] == 20
    assert info["annotated_episodes"] == 3
    assert sum(m["episodes"] for m in info["outcomes_by_mode"].values()) == 3
    assert set(info["stage_proportions"]) == {"reach the cube", "grasp the cube", "lift the cube"}


def test_plan_is_deterministic_and_respects_the_mix():
    config = tiny_config(Path("/nonexistent"), episodes=10, mix={"expert": 0.6, "noisy": 0.2, "fail": 0.2})
    plan = plan_episodes(config)
    assert plan == plan_episodes(config)
    modes = [p.behaviour.mode for p in plan]
    assert (modes.count("expert"), modes.count("noisy"), modes.count("fail")) == (6, 2, 2)
    failures = {p.behaviour.failure for p in plan if p.behaviour.mode == "fail"}
    assert len(failures) == 2, "fail episodes cycle through the failure kinds"


def test_cycled_failure_stages_give_every_kind_every_stage_equally():
    from collections import Counter

    from headway.sim.expert import failable_stages
    from headway.sim.task import get_task

    stages = failable_stages(get_task("stack"))
    config = CollectConfig(
        task="stack", episodes=4 * len(stages), mix={"fail": 1.0}, failure_kinds=("stall", "away"),
        failure_stages="cycle", out=Path("/nonexistent"),
    )
    counts = Counter((p.behaviour.failure, p.behaviour.fail_stage) for p in plan_episodes(config))
    assert counts == {(kind, stage): 2 for kind in ("stall", "away") for stage in stages}
    drawn = Counter(p.behaviour.fail_stage for p in plan_episodes(CollectConfig(**{**vars(config), "failure_stages": "random"})))
    assert drawn != Counter({stage: 4 for stage in stages}), "random stages are drawn, not cycled"


@pytest.mark.parametrize(
    "settings, message",
    [({"failure_kinds": ("stall", "nap")}, "unknown failure kind 'nap'"), ({"failure_kinds": ()}, "at least one failure kind"),
     ({"failure_stages": "first"}, "unknown failure-stage plan 'first'")],
)
def test_bad_failure_settings_are_refused(settings, message):
    with pytest.raises(HeadwayError, match=message):
        CollectConfig(out=Path("/nonexistent"), **settings)


def test_cli_collect_passes_the_failure_settings(tmp_path, monkeypatch):
    import headway.datasets.collect as collect_module
    from headway.cli import main

    seen = []
    summary = SimpleNamespace(render=lambda: "")
    monkeypatch.setattr(collect_module, "collect", lambda config, resume, overwrite: seen.append(config) or summary)
    main(["sim", "collect", "--out", str(tmp_path / "a")])
    main(["sim", "collect", "--out", str(tmp_path / "b"), "--failures", "stall,away", "--failure-stages", "cycle"])
    assert (seen[0].failure_kinds, seen[0].failure_stages) == (CollectConfig().failure_kinds, "random")
    assert (seen[1].failure_kinds, seen[1].failure_stages) == (("stall", "away"), "cycle")


@pytest.mark.parametrize(
    "text, message",
    [("expert=0.5,noisy=0.2", "sum to 0.7"), ("expert=1,dancing=0", "valid modes"), ("expert", "MODE=SHARE")],
)
def test_bad_mix_is_refused(text, message):
    with pytest.raises(HeadwayError, match=message):
        CollectConfig(mix=parse_mix(text), out=Path("/nonexistent"))


def test_existing_dataset_is_refused_without_overwrite(tiny_dataset, tmp_path):
    with pytest.raises(HeadwayError, match="--overwrite"):
        collect(tiny_config(tiny_dataset), progress=False)
    kept = collect(tiny_config(tiny_dataset), resume=True, progress=False)  # the same settings: kept as it is
    assert (kept.episodes, kept.resumed, sum(kept.by_mode.values())) == (3, 3, 3)
    with pytest.raises(HeadwayError, match="seed: 5 there, 6 now"):
        collect(tiny_config(tiny_dataset, seed=6), resume=True, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(HeadwayError, match="holds other files"):
        collect(tiny_config(other), progress=False)
    assert (other / "notes.txt").read_text() == "mine"


def _episode_arrays(root: Path) -> list[tuple]:
    reader = DatasetReader(root)
    rows = []
    for index in range(reader.num_episodes):
        episode = reader.episode(index, decode=False)
        rows.append((episode.length, episode.action.tolist(), reader.subtasks(index), reader.outcome(index)))
    return rows


def test_kill_and_resume_gives_the_same_dataset(tiny_dataset, tmp_path):
    out = tmp_path / "killed"
    script = (
        "from pathlib import Path; import sys; sys.path.insert(0, {tests!r}); from conftest import tiny_config;"
        "from headway.datasets.collect import collect; collect(tiny_config(Path({out!r})), progress=False)"
    ).format(tests=str(Path(__file__).parent), out=str(out))
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    staged = partial_dir(out) / "episodes"
    deadline = time.time() + 300
    while time.time() < deadline and not list(staged.glob("episode_*.npz")):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert list(staged.glob("episode_*.npz")), "the collection never staged an episode"
    assert not out.exists(), "an interrupted collection must not leave a dataset that looks complete"

    with pytest.raises(HeadwayError, match="--resume"):
        collect(tiny_config(out), progress=False)
    with pytest.raises(HeadwayError, match="seed"):
        collect(tiny_config(out, seed=99), resume=True, progress=False)
    saved = partial_dir(out) / "collect.json"
    older = {k: v for k, v in json.loads(saved.read_text()).items() if k not in ("failure_kinds", "failure_stages")}
    saved.write_text(json.dumps(older))  # as written before those settings existed: still resumable
    summary = collect(tiny_config(out), resume=True, progress=False)
    assert summary.resumed >= 1 and summary.episodes == 3
    assert not partial_dir(out).exists()
    assert _episode_arrays(out) == _episode_arrays(tiny_dataset)
    episodes = pd.read_parquet(next((out / "meta" / "episodes").rglob("*.parquet")))
    assert len(episodes) == 3


def test_lerobots_sarm_reader_gives_failures_headways_progress_not_task_complete(tiny_dataset):
    """lerobot's SARM target code, run on the annotations as written, derives the same normalised
    progress as headway's own targets on the failed episode (not 'complete' after its last stage)."""
    from lerobot.datasets.io_utils import load_episodes
    from lerobot.rewards.sarm.sarm_utils import find_stage_and_tau, normalize_stage_tau

    from headway.datasets.annotations import read_proportions
    from headway.datasets.reader import DatasetReader
    from headway.reward.labels import StagePrior, stage_targets

    reader = DatasetReader(tiny_dataset)
    proportions = read_proportions(tiny_dataset)
    names = list(proportions)
    prior = StagePrior.from_mapping(proportions)
    episodes = load_episodes(tiny_dataset).to_pandas()
    failed = [i for i in range(reader.num_episodes) if not reader.outcome(i).success]
    assert failed, "the tiny set holds a failure"
    for index in failed:
        row = episodes.loc[index]
        length = int(row["length"])
        theirs = [
            float(normalize_stage_tau(
                find_stage_and_tau(t, length, list(row["sparse_subtask_names"]), list(row["sparse_subtask_start_frames"]),
                                   list(row["sparse_subtask_end_frames"]), names, proportions, return_combined=True),
                num_stages=len(names), temporal_proportions=proportions, subtask_names=names))
            for t in range(length)
        ]
        ours = prior.progress(*stage_targets(reader.subtasks(index), length, names, index))
        assert np.allclose(theirs, ours, atol=1e-3), (index, theirs[-5:], ours[-5:])
        assert theirs[-1] < 0.9
        assert len(reader.subtasks(index)) < len(row["sparse_subtask_names"])  # the end sentinel is dropped on read


def test_oracle_columns_are_not_policy_inputs_for_lerobot(tiny_dataset):
    info = json.loads((tiny_dataset / "meta" / "info.json").read_text())
    observation = [key for key in info["features"] if key.startswith("observation.")]
    assert not [key for key in observation if "camera_pose" in key or "keypoints" in key]
    assert any(key.startswith("oracle.camera_pose.") for key in info["features"])
