"""Ground-truth affordance keypoints per task and stage, from the true simulator state.

Each task names a few 3D points (world frame, metres): where to grasp, where to carry the object
to, where to set it down, the handle to pull, and the gripper itself. Each stage of the task
names its target keypoint and what should move to it (the gripper, or the grasped object, which
is tracked by its grasp keypoint). Per camera, a point is visible when it projects inside the
image and the first rendered surface on the ray from the camera centre to it belongs to the point
itself (it lies on or inside its host object) or lies beyond it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from headway.errors import HeadwayError, unknown_name
from headway.geometry import in_frame, project
from headway.sim.task import State

GRIPPER = "gripper"
OCCLUSION_MARGIN = 0.01  # metres: a surface this close in front of the point does not hide it


@dataclass(frozen=True)
class StageTarget:
    """Stage k: `mover` ("gripper" or an object keypoint) should reach `keypoint`."""

    keypoint: str
    mover: str = GRIPPER


@dataclass(frozen=True)
class TaskAffordances:
    """The named keypoints of a task, how to read them from the state, and each stage's target."""

    task: str
    names: tuple[str, ...]
    stage_targets: tuple[StageTarget, ...]
    points: Callable[[State], dict[str, np.ndarray]]
    hosts: dict[str, tuple[str, ...]]  # keypoint -> body-name prefixes it lies on or inside

    def index(self, name: str) -> int:
        if name not in self.names:
            raise unknown_name(f"keypoint of task {self.task!r}", name, self.names)
        return self.names.index(name)

    def target(self, stage: int) -> StageTarget:
        if not 0 <= stage < len(self.stage_targets):
            raise HeadwayError(f"task {self.task!r} has stages 0-{len(self.stage_targets) - 1}, not {stage}")
        return self.stage_targets[stage]

    def positions(self, state: State) -> np.ndarray:
        """(K, 3) world positions of every keypoint in `names` order."""
        points = self.points(state)
        return np.stack([np.asarray(points[name], dtype=np.float64) for name in self.names])


_GRIPPER_HOSTS = ("gripper0_",)

# The task modules are imported inside the functions below: importing any of them registers every
# built-in task and loads robosuite (seconds); these tables stay cheap to import without a simulator.


def _lift_points(state: State) -> dict[str, np.ndarray]:
    from headway.sim.tasks.lift import LIFT_HEIGHT  # deferred: robosuite (see above)

    cube = state["cube"]
    return {
        GRIPPER: state["eef"],
        "grasp": cube,
        "lift_target": np.array([cube[0], cube[1], state["table_height"] + 0.025 + LIFT_HEIGHT]),
    }


def _stack_points(state: State) -> dict[str, np.ndarray]:
    from headway.sim.tasks.stack import CLEARANCE  # deferred: robosuite (see above)

    b = state["cubeB"]
    place_z = state["cubeB_top"] + state["cubeA_half"]
    return {
        GRIPPER: state["eef"],
        "grasp": state["cubeA"],
        "above_place": np.array([b[0], b[1], place_z + CLEARANCE]),
        "place": np.array([b[0], b[1], place_z]),
    }


def _can_points(state: State) -> dict[str, np.ndarray]:
    from headway.sim.tasks.pick_place_can import CARRY, RELEASE, drop_point  # deferred: robosuite (see above)

    drop = drop_point(state)
    return {
        GRIPPER: state["eef"],
        "grasp": state["can"],
        "over_bin": np.array([drop[0], drop[1], state["bin"][2] + CARRY]),
        "drop": np.array([drop[0], drop[1], state["bin"][2] + RELEASE]),
    }


def _door_points(state: State) -> dict[str, np.ndarray]:
    from headway.sim.tasks.door import OPEN_ANGLE, arc_point  # deferred: robosuite (see above)

    return {GRIPPER: state["eef"], "handle": state["handle"], "handle_open": arc_point(state, OPEN_ANGLE + 0.05)}


AFFORDANCES: dict[str, TaskAffordances] = {
    "lift": TaskAffordances(
        "lift",
        (GRIPPER, "grasp", "lift_target"),
        (StageTarget("grasp"), StageTarget("grasp"), StageTarget("lift_target", "grasp")),
        _lift_points,
        {GRIPPER: _GRIPPER_HOSTS, "grasp": ("cube_",), "lift_target": ("cube_",)},
    ),
    "stack": TaskAffordances(
        "stack",
        (GRIPPER, "grasp", "above_place", "place"),
        (
            StageTarget("grasp"),
            StageTarget("grasp"),
            StageTarget("above_place", "grasp"),
            StageTarget("above_place", "grasp"),
            StageTarget("place", "grasp"),
            StageTarget("place", "grasp"),
        ),
        _stack_points,
        {GRIPPER: _GRIPPER_HOSTS, "grasp": ("cubeA",), "above_place": ("cubeA",), "place": ("cubeA", "cubeB")},
    ),
    "pick_place_can": TaskAffordances(
        "pick_place_can",
        (GRIPPER, "grasp", "over_bin", "drop"),
        (
            StageTarget("grasp"),
            StageTarget("grasp"),
            StageTarget("over_bin", "grasp"),
            StageTarget("over_bin", "grasp"),
            StageTarget("drop", "grasp"),
        ),
        _can_points,
        {GRIPPER: _GRIPPER_HOSTS, "grasp": ("Can_",), "over_bin": ("Can_",), "drop": ("Can_",)},
    ),
    "door": TaskAffordances(
        "door",
        (GRIPPER, "handle", "handle_open"),
        (StageTarget("handle"), StageTarget("handle"), StageTarget("handle_open", "handle")),
        _door_points,
        {GRIPPER: _GRIPPER_HOSTS, "handle": ("Door_latch", "Door_door"), "handle_open": ("Door_latch", "Door_door")},
    ),
}


def get_affordances(task: str) -> TaskAffordances:
    """The affordance keypoints of `task` (error lists the tasks that have them)."""
    if task not in AFFORDANCES:
        raise unknown_name("task with affordance keypoints", task, list(AFFORDANCES))
    return AFFORDANCES[task]


def _rendered_groups(env) -> np.ndarray:
    """The geom groups the offscreen renderer draws (robosuite hides the collision group 0)."""
    context = getattr(env.robosuite_env.sim, "_render_context_offscreen", None)
    groups = getattr(getattr(context, "vopt", None), "geomgroup", None)
    return np.asarray(groups if groups is not None else [0, 1, 1, 0, 0, 0], dtype=np.uint8)


def visibility(env, points: np.ndarray, view: str, hosts: list[tuple[str, ...]] | None = None) -> np.ndarray:
    """(K,) bool: each point projects inside `view`'s image and no rendered surface hides it.

    A ray is cast from the camera centre towards the point (`mujoco.mj_ray`, rendered geoms only);
    the point is hidden when the first surface hit is more than OCCLUSION_MARGIN in front of it and
    does not belong to one of the point's host bodies (a point inside an object is seen through
    that object's own surface).
    """
    import mujoco

    sim = env.robosuite_env.sim
    model, data = sim.model._model, sim.data._data
    pose = env.extrinsics(view)
    size = env.config.image_size
    uv, depth = project(points, env.intrinsics(view), pose)
    visible = in_frame(uv, size, size) & (depth > 0)
    groups = _rendered_groups(env)
    centre = pose[:3, 3].astype(np.float64)
    geom = np.zeros(1, dtype=np.int32)
    for k, point in enumerate(np.asarray(points, dtype=np.float64)):
        if not visible[k]:
            continue
        offset = point - centre
        distance = float(np.linalg.norm(offset))
        hit = mujoco.mj_ray(model, data, centre, offset / distance, groups, 1, -1, geom)
        if hit < 0 or hit >= distance - OCCLUSION_MARGIN:
            continue
        body = model.body(model.geom_bodyid[geom[0]]).name
        if not (hosts and hosts[k] and body.startswith(hosts[k])):
            visible[k] = False
    return visible


def record_keypoints(env, state: State | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The task's keypoints now: (K, 3) world positions and, per camera of `env`, (K,) visibility."""
    affordances = get_affordances(env.task.name)
    state = env.state() if state is None else state
    points = affordances.positions(state)
    hosts = [affordances.hosts.get(name, ()) for name in affordances.names]
    return points, {view: visibility(env, points, view, hosts) for view in env.config.views}
