"""Offline labelling: any LeRobot v3.0 dataset, LeRobot's RA-BC reads the output, kill-and-resume, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from headway.cli import main
from headway.reward.labelling import (
    CARD_FILE,
    PROGRESS_FILE,
    TABLE_FILE,
    LabelConfig,
    label_dataset,
    match_views,
    parse_episodes,
)
from headway.datasets.reader import DatasetReader
from headway.errors import HeadwayError
from headway.perception.preprocess import resize_frames
from headway.reward.frame_rate import score_recorded
from headway.reward.rabc import rabc_weights
from headway.reward.shaping import potential_based_rewards
from headway.reward.stage_model import StageModelConfig, StageRewardNet
from headway.reward.stage_reward import StageRewardModel
from headway.run_dir import partial_dir

VIEWS = ("agentview", "robot0_eye_in_hand")
SIZE = 32
TASK = "pick up the cube"


def _save_model(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    config = StageModelConfig(
        views=VIEWS, stage_names=("reach", "grasp", "lift"), stage_proportions=(0.5, 0.2, 0.3), image_size=SIZE, dim=32, window=4, ensemble=2
    )
    StageRewardModel(StageRewardNet(config), device="cpu").save(path)
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return _save_model(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="module")
def native_dataset(tmp_path_factory) -> Path:
    """A dataset written by lerobot directly: other camera names, 30 fps, 48x64 frames, no annotations."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path_factory.mktemp("native") / "so100_pick"
    os.environ.setdefault("SVT_LOG", "1")
    video = {"dtype": "video", "shape": (48, 64, 3), "names": ["height", "width", "channels"]}
    features = {
        "observation.images.top": video,
        "observation.images.wrist": video,
        "observation.state": {"dtype": "float32", "shape": (4,), "names": None},
        "action": {"dtype": "float32", "shape": (4,), "names": None},
    }
    dataset = LeRobotDataset.create(repo_id="someone/so100_pick", fps=30, features=features, root=root, use_videos=True)
    rng = np.random.default_rng(0)
    for length in (14, 9):
        for t in range(length):
            shade = np.uint8(20 + 10 * t)
            dataset.add_frame(
                {
                    "observation.images.top": np.full((48, 64, 3), shade, np.uint8),
                    "observation.images.wrist": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
                    "observation.state": rng.standard_normal(4).astype(np.float32),
                    "action": rng.standard_normal(4).astype(np.float32),
                    "task": TASK,
                }
            )
        dataset.save_episode()
    dataset.finalize()
    return root


MAPPING = ["--view", "agentview=observation.images.top", "--view", "robot0_eye_in_hand=wrist"]


def test_parse_episodes_and_config_validation():
    assert parse_episodes("0-2,5,4") == (0, 1, 2, 4, 5)
    assert parse_episodes(None) is None
    with pytest.raises(HeadwayError, match="backwards"):
        parse_episodes("3-1")
    with pytest.raises(HeadwayError, match="gamma"):
        LabelConfig(dataset="d", model="m", gamma=1.5)
    with pytest.raises(HeadwayError, match="chunk-size"):
        LabelConfig(dataset="d", model="m", chunk_size=0)
    with pytest.raises(HeadwayError, match="MODEL_VIEW=DATASET_KEY"):
        LabelConfig(dataset="d", model="m", views=["agentview"])


def test_unmatched_cameras_list_both_sides(native_dataset, model_path, tmp_path):
    with pytest.raises(HeadwayError) as error:
        label_dataset(LabelConfig(dataset=native_dataset, model=model_path, out=tmp_path / "x"), progress=False)
    message = str(error.value)
    assert "observation.images.top" in message and "observation.images.wrist" in message
    assert "agentview" in message and "robot0_eye_in_hand" in message and "--view" in message
    with pytest.raises(HeadwayError, match="no camera 'side'"):
        match_views(VIEWS, ["observation.images.top"], {"agentview": "side"})
    # fewer views than the model: scored with the ones that match
    assert match_views(VIEWS, ["observation.images.agentview"], {}) == {"agentview": "observation.images.agentview"}
    assert not (tmp_path / "x").exists()


def test_lerobot_native_dataset_labelled_end_to_end(native_dataset, model_path, tmp_path, capsys):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.rewards.sarm.rabc import RABCWeights

    out, copy = tmp_path / "labels", tmp_path / "labelled_copy"
    code = main(
        ["label", "--dataset", str(native_dataset), "--model", str(model_path), "--out", str(out), *MAPPING,
         "--chunk-size", "4", "--gamma", "0.9", "--plots", "1", "--write-dataset", str(copy), "--quiet"]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "2 episodes, 23 frames" in printed and f"--sample_weighting.progress_path={out / PROGRESS_FILE}" in printed
    assert "30 fps" in printed  # the model was made at 20 fps: the summary says so

    progress = pd.read_parquet(out / PROGRESS_FILE)
    assert list(progress.columns) == ["index", "episode_index", "frame_index", "progress_sparse"]
    assert [str(t) for t in progress.dtypes] == ["int64", "int64", "int64", "float32"]
    assert progress["index"].tolist() == list(range(23))

    # the labels are the model's scores of the resized frames at its own 20 fps, causal and per episode
    model = StageRewardModel.load(model_path, device="cpu")
    reader = DatasetReader(native_dataset)
    table = pd.read_parquet(out / TABLE_FILE)
    per_episode = []
    for index in range(2):
        episode = reader.episode(index, ["observation.images.top", "observation.images.wrist"])
        images = {
            "agentview": resize_frames(episode.images["observation.images.top"], SIZE),
            "robot0_eye_in_hand": resize_frames(episode.images["observation.images.wrist"], SIZE),
        }
        expected = score_recorded(model, images, TASK, episode.state, fps=reader.fps)
        assert reader.fps == 30 and len(expected) == episode.length
        rows = table[table.episode_index == index]
        np.testing.assert_allclose(rows.progress, expected.progress, atol=1e-6)
        np.testing.assert_allclose(np.stack(rows.stage_probs), expected.stage_probs, atol=1e-6)
        np.testing.assert_allclose(rows.success, expected.success, atol=1e-6)
        assert rows.stage_name.tolist() == [model.stage_names[s] for s in expected.stage]
        # no success terminal in this dataset: every episode ends in a truncation
        np.testing.assert_allclose(rows.reward, potential_based_rewards(rows.progress.to_numpy(), None, 0.9, False), atol=1e-6)
        per_episode.append(rows.progress.to_numpy())

    # LeRobot's own RA-BC class reads the file and computes the same weights as headway
    lerobot_weights = RABCWeights(out / PROGRESS_FILE, chunk_size=4, device=torch.device("cpu"))
    raw = lerobot_weights._compute_weights(np.array([lerobot_weights._compute_delta(i) for i in range(23)], dtype=np.float32))
    ours = np.concatenate(rabc_weights(per_episode, chunk_size=4))
    np.testing.assert_allclose(raw, ours, atol=1e-5)
    np.testing.assert_allclose(table.rabc_weight, ours, atol=1e-5)
    batch, _ = lerobot_weights.compute_batch_weights({"index": torch.arange(23)})
    assert batch.shape == (23,) and abs(float(batch.sum()) - 23) < 1e-3

    card = json.loads((out / CARD_FILE).read_text())
    assert card["episodes"] == 2 and card["identity"]["views"]["agentview"] == "observation.images.top"
    assert not partial_dir(out).exists()

    # plots: a PNG and an MP4 that decodes to one frame per dataset frame
    import av

    assert (out / "plots" / "episode_000000.png").read_bytes()[:4] == b"\x89PNG"
    with av.open(str(out / "plots" / "episode_000000.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 14

    # the labelled copy loads with LeRobotDataset, with the label columns as features
    labelled = LeRobotDataset("local/labelled_copy", root=copy, video_backend="pyav")
    item = labelled[15]
    assert float(item["headway.progress"]) == pytest.approx(float(table.progress[15]), abs=1e-6)
    assert tuple(item["headway.stage_probs"].shape) == (3,)
    assert item["observation.images.top"].shape == (3, 48, 64)
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_headway_dataset_shaping_uses_success_terminals(tiny_dataset, model_path, tmp_path):
    summary = label_dataset(LabelConfig(dataset=tiny_dataset, model=model_path, out=tmp_path / "l", gamma=0.95), progress=False)
    assert summary.episodes == 3 and summary.successes is not None and summary.successes + summary.failures == 3
    table = pd.read_parquet(summary.table_path)
    reader = DatasetReader(tiny_dataset)
    for index in range(3):
        arrays = reader.episode(index, decode=False).arrays
        terminated = bool(arrays["next.done"][-1] and arrays["next.success"][-1])
        rows = table[table.episode_index == index]
        expected = potential_based_rewards(rows.progress.to_numpy(), arrays["next.reward"].reshape(-1), 0.95, terminated)
        np.testing.assert_allclose(rows.reward, expected, atol=1e-6)
        assert terminated == reader.outcome(index).success


def test_refuses_labels_of_another_model_unless_overwrite(tiny_dataset, model_path, tmp_path):
    out = tmp_path / "labels"
    label_dataset(LabelConfig(dataset=tiny_dataset, model=model_path, out=out, episodes=(0,)), progress=False)
    before = (out / PROGRESS_FILE).read_bytes()
    other = _save_model(tmp_path / "other_model", seed=1)
    with pytest.raises(HeadwayError, match="other settings.*--overwrite"):
        label_dataset(LabelConfig(dataset=tiny_dataset, model=other, out=out, episodes=(0,)), progress=False)
    assert (out / PROGRESS_FILE).read_bytes() == before
    with pytest.raises(HeadwayError, match="already holds the output of this labelling run"):
        label_dataset(LabelConfig(dataset=tiny_dataset, model=model_path, out=out, episodes=(0,)), progress=False)
    again = label_dataset(LabelConfig(dataset=tiny_dataset, model=model_path, out=out, episodes=(0,)), resume=True, progress=False)
    assert again.scored_episodes == 0
    label_dataset(LabelConfig(dataset=tiny_dataset, model=other, out=out, episodes=(0,)), overwrite=True, progress=False)
    assert (out / PROGRESS_FILE).read_bytes() != before


def _final_files(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in (PROGRESS_FILE, TABLE_FILE)}


def test_kill_and_resume_gives_byte_identical_files(tiny_dataset, model_path, tmp_path):
    reference = tmp_path / "reference"
    label_dataset(LabelConfig(dataset=tiny_dataset, model=model_path, out=reference, chunk_size=5), progress=False)

    out = tmp_path / "killed"
    # the real pipeline in a child process, slowed after each staged episode so the kill lands mid-run
    script = (
        "import time; from pathlib import Path; import headway.reward.labelling as L, headway.reward.label_scoring as S\n"
        "stage = S.stage_scores\n"
        "def slow(path, arrays):\n    stage(path, arrays); time.sleep(30)\n"
        "S.stage_scores = slow\n"
        f"L.label_dataset(L.LabelConfig(dataset={str(tiny_dataset)!r}, model={str(model_path)!r}, out=Path({str(out)!r}), chunk_size=5), progress=False)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, cwd=tmp_path)
    staged = partial_dir(out) / "episodes"
    deadline = time.time() + 120
    while time.time() < deadline and not list(staged.glob("episode_*.npz")):
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert len(list(staged.glob("episode_*.npz"))) == 1, "the labelling never staged an episode"
    for name in (PROGRESS_FILE, TABLE_FILE, CARD_FILE):
        assert not (out / name).exists(), "an interrupted run must not leave files that look complete"

    with pytest.raises(HeadwayError, match="--resume"):
        label_dataset(LabelConfig(dataset=tiny_dataset, model=model_path, out=out, chunk_size=5), progress=False)
    with pytest.raises(HeadwayError, match="chunk_size"):
        label_dataset(LabelConfig(dataset=tiny_dataset, model=model_path, out=out, chunk_size=7), resume=True, progress=False)
    summary = label_dataset(LabelConfig(dataset=tiny_dataset, model=model_path, out=out, chunk_size=5), resume=True, progress=False)
    assert summary.scored_episodes == 2 and summary.episodes == 3
    assert not partial_dir(out).exists()
    assert _final_files(out) == _final_files(reference)
    assert (out / CARD_FILE).read_bytes() == (reference / CARD_FILE).read_bytes()


@pytest.fixture()
def damaged(native_dataset, tmp_path) -> Path:
    copy = tmp_path / "damaged"
    shutil.copytree(native_dataset, copy)
    return copy


def _label_native(root: Path, model: Path, out: Path) -> None:
    label_dataset(
        LabelConfig(dataset=root, model=model, out=out, views={"agentview": "top", "robot0_eye_in_hand": "wrist"}), progress=False
    )


def _assert_nothing_final(out: Path) -> None:
    for name in (PROGRESS_FILE, TABLE_FILE, CARD_FILE):
        assert not (out / name).exists()


def test_missing_or_corrupt_video_names_the_episode(damaged, model_path, tmp_path):
    video = next((damaged / "videos" / "observation.images.wrist").rglob("*.mp4"))
    video.write_bytes(b"not a video" * 50)
    with pytest.raises(HeadwayError, match="episode 0.*corrupt"):
        _label_native(damaged, model_path, tmp_path / "out")
    video.unlink()
    with pytest.raises(HeadwayError, match="episode 0: video file .* is missing"):
        _label_native(damaged, model_path, tmp_path / "out2")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists(), "a run that staged nothing leaves nothing"


def test_nan_state_and_frame_count_mismatch_are_refused(damaged, model_path, tmp_path):
    data_file = next((damaged / "data").rglob("*.parquet"))
    table = pd.read_parquet(data_file)
    states = np.stack(table["observation.state"])
    states[16, 2] = np.nan  # episode 1, frame 2
    table["observation.state"] = list(states)
    table.to_parquet(data_file)
    with pytest.raises(HeadwayError, match="episode 1: observation.state is NaN .* frame 2"):
        _label_native(damaged, model_path, tmp_path / "out")
    _assert_nothing_final(tmp_path / "out")
    table.iloc[:-2].to_parquet(data_file)  # episode 1 loses two rows but keeps its video
    with pytest.raises(HeadwayError, match="episode 1: the data file has 7 frames but the metadata says 9"):
        _label_native(damaged, model_path, tmp_path / "out3")


def test_bad_dataset_and_checkpoint_folders(damaged, model_path, tmp_path):
    broken_model = tmp_path / "broken_model"
    shutil.copytree(model_path, broken_model)
    (broken_model / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(HeadwayError, match="damaged"):
        _label_native(damaged, broken_model, tmp_path / "out")
    info = json.loads((damaged / "meta" / "info.json").read_text())
    (damaged / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(HeadwayError, match="v2.1.*convert"):
        _label_native(damaged, model_path, tmp_path / "out")
    (damaged / "meta" / "info.json").unlink()
    with pytest.raises(HeadwayError, match="meta/info.json is missing"):
        _label_native(damaged, model_path, tmp_path / "out")



def test_hub_ids_are_used_only_from_the_local_cache(model_path):
    with pytest.raises(HeadwayError, match="--allow-download"):
        label_dataset(LabelConfig(dataset="nobody/not_a_cached_dataset_xyz", model=model_path), progress=False)


def test_output_never_goes_into_the_dataset(native_dataset, model_path):
    with pytest.raises(HeadwayError, match="inside the dataset"):
        _label_native(native_dataset, model_path, native_dataset / "labels")
    assert not (native_dataset / "labels").exists()
