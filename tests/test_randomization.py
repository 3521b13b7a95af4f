"""Per-episode domain randomisation: parsing, determinism per seed, camera geometry, collection metadata."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from headway.datasets.collect import RANDOMIZATION_COLUMN, collect, read_randomization
from headway.errors import HeadwayError
from headway.run_dir import partial_dir
from headway.sim.env import make_env
from headway.sim.randomization import KINDS, MILD, format_randomization, parse_randomization

SCENE = {"camera": 2.0, "lighting": 1.0, "texture": 0.3, "color": 0.5}


@pytest.fixture(scope="module")
def env():
    env = make_env("lift", image_size=32, horizon=5, randomize=SCENE)
    yield env
    env.close()


def test_parse_names_and_strengths():
    assert parse_randomization("camera,lighting=2,texture=0.3") == {"camera": 1.0, "lighting": 2.0, "texture": 0.3}
    assert list(parse_randomization("color=0.2,camera")) == ["camera", "color"]  # canonical order
    assert parse_randomization("") == {} and parse_randomization("none") == {}
    assert parse_randomization("mild") == MILD
    assert format_randomization({"camera": 0.5, "texture": 0.25}) == "camera=0.5,texture=0.25"


@pytest.mark.parametrize(
    "text, message",
    [
        ("camera,fog", "unknown randomisation 'fog'; valid randomisations: camera, color, dynamics"),
        ("camera=5", r"strength of camera must be in \(0, 4\]"),
        ("texture=1.5", r"strength of texture must be in \(0, 1\]"),
        ("lighting=0", r"must be in \(0, 4\]"),
        ("color=-0.1", "must be in"),
        ("camera=big", "not a number"),
        ("camera,camera=2", "twice"),
    ],
)
def test_bad_randomization_is_refused(text, message):
    with pytest.raises(HeadwayError, match=message):
        parse_randomization(text)


def test_bad_randomization_is_refused_by_the_cli_before_any_work(tmp_path, capsys):
    from headway.cli import main

    out = tmp_path / "never"
    assert main(["sim", "collect", "--out", str(out), "--randomize", "camera,glare"]) == 2
    error = capsys.readouterr().err
    assert "unknown randomisation 'glare'" in error and all(kind in error for kind in KINDS)
    assert not out.exists() and not partial_dir(out).exists()


def test_same_seed_same_scene_and_frames_other_seed_differs(env):
    first, _ = env.reset(seed=11)
    scene = env.scene.record
    pose = env.extrinsics("agentview")
    env.step(np.zeros(7))
    env.reset(seed=12)
    other_scene = env.scene.record
    other_pose = env.extrinsics("agentview")
    again, _ = env.reset(seed=11)
    for view in first["images"]:
        np.testing.assert_array_equal(first["images"][view], again["images"][view])
    assert env.scene.record == scene and set(scene) == set(SCENE)
    np.testing.assert_array_equal(env.extrinsics("agentview"), pose)
    assert other_scene != scene and not np.allclose(other_pose, pose)
    assert scene["camera"]["strength"] == 2.0 and scene["texture"]["mean_abs_change"] > 0


def test_a_fresh_env_draws_the_same_scene_for_a_seed(env):
    """What --resume relies on: the scene depends on the episode's seed, not on what ran before."""
    env.reset(seed=3)
    env.reset(seed=11)
    images = env._observation(env.robosuite_env._get_observations(force_update=True))["images"]
    fresh = make_env("lift", image_size=32, horizon=5, randomize=SCENE)
    try:
        obs, _ = fresh.reset(seed=11)
        assert fresh.scene.record == env.scene.record
        for view in images:
            np.testing.assert_array_equal(obs["images"][view], images[view])
    finally:
        fresh.close()


def test_kinds_draw_independently():
    """Adding a kind leaves the other kinds' draws unchanged (one random stream per kind)."""
    both = make_env("lift", views=("agentview",), image_size=32, randomize={"camera": 1.0, "lighting": 1.0})
    alone = make_env("lift", views=("agentview",), image_size=32, randomize={"camera": 1.0})
    try:
        both.reset(seed=4)
        alone.reset(seed=4)
        assert both.scene.record["camera"] == alone.scene.record["camera"]
    finally:
        both.close()
        alone.close()


def test_cube_projects_onto_its_pixels_under_camera_randomization():
    """Intrinsics (fovy) and extrinsics (pose) read the moved camera: the red cube is where it projects."""
    env = make_env("lift", views=("agentview",), image_size=32, horizon=5, randomize={"camera": 4.0})
    nominal = make_env("lift", views=("agentview",), image_size=32, horizon=5)
    try:
        nominal.reset(seed=2)
        for seed in (2, 5):
            env.reset(seed=seed)
            obs = env.step(np.zeros(7))[0]
            assert not np.allclose(env.extrinsics("agentview"), nominal.extrinsics("agentview"), atol=1e-3)
            image = obs["images"]["agentview"].astype(int)
            point = np.linalg.inv(env.extrinsics("agentview")) @ np.append(env.state()["cube"], 1.0)
            u, v, w = env.intrinsics("agentview") @ point[:3]
            column, row = u / w, v / w
            red = (image[..., 0] > 120) & (image[..., 1] < 80) & (image[..., 2] < 80)
            rows, columns = np.nonzero(red)
            assert rows.size > 0, "no red cube pixels rendered"
            assert abs(rows.mean() - row) < 2 and abs(columns.mean() - column) < 2
    finally:
        env.close()
        nominal.close()


def test_collection_records_the_randomization_per_episode_and_resume_checks_it(tmp_path):
    out = tmp_path / "randomised"
    config = tiny_config(out, episodes=2, mix={"expert": 1.0}, randomize={"camera": 1.0, "color": 0.5})
    collect(config, progress=False)
    randomization = read_randomization(out)
    assert randomization["strengths"] == {"camera": 1.0, "color": 0.5}
    episodes = randomization["episodes"]
    assert [e["episode_index"] for e in episodes] == [0, 1]
    assert episodes[0]["camera"] != episodes[1]["camera"]
    assert set(episodes[0]["intrinsics"]) == set(config.views)
    table = pd.read_parquet(next((out / "meta" / "episodes").rglob("*.parquet")))
    assert [json.loads(text) for text in table[RANDOMIZATION_COLUMN]] == episodes
    assert json.loads((out / "meta" / "headway.json").read_text())["collect"]["randomize"] == randomization["strengths"]

    # an interrupted collection resumed with other randomisation settings is refused, naming both
    interrupted = tmp_path / "interrupted"
    first = tiny_config(interrupted, episodes=2, randomize={"camera": 1.0})
    partial_dir(interrupted).mkdir()
    (partial_dir(interrupted) / "collect.json").write_text(json.dumps(first.identity()))
    other = tiny_config(interrupted, episodes=2, randomize={"camera": 2.0, "lighting": 1.0})
    with pytest.raises(HeadwayError, match=r"randomize: camera=1 there, camera=2,lighting=1 now"):
        collect(other, resume=True, progress=False)
    nominal = tiny_config(interrupted, episodes=2)
    with pytest.raises(HeadwayError, match="randomize: camera=1 there, none now"):
        collect(nominal, resume=True, progress=False)


def test_dynamics_are_drawn_per_seed_from_the_nominal_model():
    """robosuite's DynamicsModder draws from numpy's global stream; here it draws from the episode's."""
    env = make_env("lift", views=(), horizon=5, randomize={"dynamics": 2.0})
    try:
        model = env.robosuite_env.sim.model._model
        np.random.seed(1)
        env.reset(seed=7)
        first, masses = env.scene.record, model.body_mass.copy()
        np.random.seed(2)  # the global stream must not matter
        env.reset(seed=8)
        assert env.scene.record != first
        env.reset(seed=7)
        assert env.scene.record == first and np.array_equal(model.body_mass, masses)
        assert first["dynamics"]["mean_relative_change"]["geom_friction"] > 0
    finally:
        env.close()
