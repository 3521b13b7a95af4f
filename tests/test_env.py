"""The Gymnasium environment: spaces, determinism, termination semantics, camera geometry."""

from __future__ import annotations

import numpy as np
import pytest

from headway.errors import HeadwayError
from headway.sim.env import EnvConfig, HeadwayEnv, make_env


@pytest.fixture(scope="module")
def env():
    env = make_env("lift", image_size=32, horizon=5)
    yield env
    env.close()


def test_observation_matches_the_declared_space(env):
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert set(obs["images"]) == {"agentview", "robot0_eye_in_hand"}
    assert obs["images"]["agentview"].shape == (32, 32, 3) and obs["images"]["agentview"].dtype == np.uint8
    assert info["success"] is False


def test_reset_is_deterministic_per_seed(env):
    first, _ = env.reset(seed=3)
    state_first = env.state()
    env.step(env.action_space.sample())
    second, _ = env.reset(seed=3)
    np.testing.assert_array_equal(first["images"]["agentview"], second["images"]["agentview"])
    np.testing.assert_allclose(state_first["cube"], env.state()["cube"])
    other, _ = env.reset(seed=4)
    assert not np.allclose(env.state()["cube"], state_first["cube"])


def test_truncated_at_horizon_and_never_terminated_without_success(env):
    env.reset(seed=0)
    flags = [env.step(np.zeros(7))[2:4] for _ in range(5)]
    assert flags[:-1] == [(False, False)] * 4
    assert flags[-1] == (False, True)


def test_terminated_only_on_success_when_asked():
    env = make_env("lift", views=(), horizon=400, terminate_on_success=True)
    env.reset(seed=0)
    cube = env.state()["cube"]
    # place the cube well above the table: success, so the episode terminates and is not truncated
    sim = env.robosuite_env.sim
    joint = env.robosuite_env.cube.joints[0]
    sim.data.set_joint_qpos(joint, np.concatenate([cube + [0, 0, 0.1], [1, 0, 0, 0]]))
    sim.forward()
    _, reward, terminated, truncated, info = env.step(np.zeros(7))
    assert info["success"] and reward == 1.0 and terminated and not truncated
    env.close()


def test_steps_without_rendering_leave_the_rendered_frames_unchanged():
    """render=False skips the cameras; frames rendered later equal those of an env that renders every step.
    Both envs live in this process and are closed here: the module's env, rendered by the tests after
    this one, must still render with its own GL context."""
    env, every = make_env("lift", image_size=32, horizon=5), make_env("lift", image_size=32, horizon=5)
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 7))
    for seed in (0, 1):
        env.reset(seed=seed)
        every.reset(seed=seed)
        for t, action in enumerate(actions):
            rendered = t % 2 == 1
            obs = env.step(action, render=rendered)[0]
            reference = every.step(action)[0]
            np.testing.assert_array_equal(obs["state"], reference["state"])
            if rendered:
                for view in ("agentview", "robot0_eye_in_hand"):
                    np.testing.assert_array_equal(obs["images"][view], reference["images"][view])
            else:
                assert obs["images"] == {}
                with pytest.raises(HeadwayError, match="render=True"):
                    env.render()
    env.close()
    every.close()


def test_bad_actions_are_rejected(env):
    env.reset(seed=0)
    with pytest.raises(HeadwayError, match="shape"):
        env.step(np.zeros(6))
    with pytest.raises(HeadwayError, match="NaN"):
        env.step(np.full(7, np.nan))


def test_cube_projects_into_the_agentview_image(env):
    """Intrinsics and extrinsics agree with the rendered image: the red cube is where it projects."""
    env.reset(seed=2)
    obs = env.step(np.zeros(7))[0]
    image = obs["images"]["agentview"].astype(int)
    camera_to_world = env.extrinsics("agentview")
    point = np.linalg.inv(camera_to_world) @ np.append(env.state()["cube"], 1.0)
    u, v, w = env.intrinsics("agentview") @ point[:3]
    column, row = u / w, v / w
    assert 0 <= column < 32 and 0 <= row < 32
    red = (image[..., 0] > 120) & (image[..., 1] < 80) & (image[..., 2] < 80)
    rows, columns = np.nonzero(red)
    assert rows.size > 0, "no red cube pixels rendered"
    assert abs(rows.mean() - row) < 3 and abs(columns.mean() - column) < 3


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"task": "fold_laundry"}, "valid tasks: .*lift"),
        ({"views": ("agentview", "ceiling")}, "valid cameras: .*agentview"),
        ({"image_size": 4}, "cannot be rendered"),
        ({"image_size": 5000}, "cannot be rendered"),
        ({"horizon": 0}, "horizon"),
    ],
)
def test_bad_configuration_is_a_clear_error(overrides, message):
    with pytest.raises(HeadwayError, match=message):
        EnvConfig(**overrides)


def test_intrinsics_of_an_unknown_view_name_the_known_ones(env):
    with pytest.raises(HeadwayError, match="agentview"):
        env.intrinsics("frontview")
    assert isinstance(env, HeadwayEnv)


def test_separately_built_envs_are_the_same_scene():
    """robosuite randomises object sizes at construction; headway pins them, so seeds mean the same thing everywhere."""
    first, second = make_env("lift", views=()), make_env("lift", views=())
    first.reset(seed=9)
    second.reset(seed=9)
    for _ in range(5):
        first.step(np.full(7, 0.3))
        second.step(np.full(7, 0.3))
    model_a, model_b = first.robosuite_env.sim.model._model, second.robosuite_env.sim.model._model
    np.testing.assert_array_equal(model_a.geom_size, model_b.geom_size)
    np.testing.assert_array_equal(first.robosuite_env.sim.data.qpos, second.robosuite_env.sim.data.qpos)
