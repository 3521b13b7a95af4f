"""Ground-truth affordance keypoints: projection onto the rendered object, visibility, collection."""

from __future__ import annotations

import numpy as np
import pytest

from headway.errors import HeadwayError
from headway.geometry import project
from headway.sim.affordances import get_affordances, record_keypoints, visibility
from headway.sim.env import make_env
from headway.sim.task import task_names


@pytest.fixture(scope="module")
def env():
    env = make_env("lift", views=("agentview", "sideview"), image_size=64, horizon=5)
    env.reset(seed=2)
    yield env
    env.close()


def test_every_task_has_affordances_with_a_target_per_stage():
    from headway.sim.task import get_task

    for name in task_names():
        affordances = get_affordances(name)
        assert len(affordances.stage_targets) == len(get_task(name).stages)
        for target in affordances.stage_targets:
            assert target.keypoint in affordances.names and target.mover in affordances.names
    with pytest.raises(HeadwayError, match="handle"):
        get_affordances("door").index("knob")


def test_grasp_point_projects_onto_the_rendered_cube(env):
    obs = env.step(np.zeros(7))[0]
    points, visible = record_keypoints(env)
    grasp = get_affordances("lift").index("grasp")
    for view in ("agentview", "sideview"):
        uv, _ = project(points[grasp], env.intrinsics(view), env.extrinsics(view))
        image = obs["images"][view].astype(int)
        red = (image[..., 0] > 120) & (image[..., 1] < 80) & (image[..., 2] < 80)
        rows, columns = np.nonzero(red)
        assert rows.size > 0
        assert abs(columns.mean() - uv[0]) < 2 and abs(rows.mean() - uv[1]) < 2, view
        assert visible[view][grasp], f"the cube centre is seen through the cube's own surface in {view}"


def test_points_under_the_table_or_out_of_frame_are_not_visible(env):
    cube = env.state()["cube"]
    under_table = cube - np.array([0.0, 0.0, 0.1])  # inside the table, below its top
    far_off = cube + np.array([0.0, 3.0, 0.0])  # far outside the agentview frame
    behind = env.extrinsics("agentview")[:3, 3] - env.extrinsics("agentview")[:3, 2]  # behind the camera
    seen = visibility(env, np.stack([cube + [0, 0, 0.1], under_table, far_off, behind]), "agentview")
    assert list(seen) == [True, False, False, False]


def test_collected_datasets_store_keypoints_visibility_and_intrinsics(tiny_dataset):
    from headway.datasets.reader import DatasetReader

    reader = DatasetReader(tiny_dataset)
    card = reader.card()
    assert card["keypoint_names"] == ["gripper", "grasp", "lift_target"]
    assert card["stage_targets"] == [["grasp", "gripper"], ["grasp", "gripper"], ["lift_target", "grasp"]]  # one per stage
    assert set(card["intrinsics"]) == set(reader.views)
    episode = reader.episode(0, decode=False)
    keypoints = episode.arrays["oracle.keypoints"].reshape(episode.length, 3, 3)
    np.testing.assert_allclose(keypoints[:, 0], episode.arrays["observation.state"][:, :3], atol=1e-5)  # gripper = eef
    visible = episode.arrays["oracle.keypoints_visible.agentview"]
    assert visible.shape == (episode.length, 3) and set(np.unique(visible)) <= {0.0, 1.0}
    assert visible[:, 1].mean() > 0.5  # the cube is mostly in view from agentview
