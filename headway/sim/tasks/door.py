"""Door: grasp the door's handle and pull the door open about its hinge.

The env is built with `use_latch=False`: with the latch, the door only opens once the handle has been
turned down, and the scripted expert (a top-down gripper that moves and changes yaw) does not turn it.

The gripper comes down from above onto the handle's base, the horizontal cylinder that sticks out of
the door, and closes across it along the door's width. (Closing across the lever instead would turn
the 20 cm wide palm square to the door, through its face.) While the door opens the handle moves on a
circle about the hinge, so the pull waypoints are points of that circle, and the gripper's yaw turns
with the door.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from robosuite.utils import transform_utils

from headway.sim.task import TASKS, Phase, State, Task
from headway.sim.tasks.common import (
    REACHED,
    CLOSED,
    GRASP_STEPS,
    OPEN,
    aligned_yaw,
    body_pose,
    fixed,
    grasped,
    gripper_closing_distance,
    robot_state,
)

# The grasp point in the handle's frame: 6 cm out from the door's mid-plane along the handle base (the
# panel's face is at 2 cm, the lever at 8.5 cm), and 1 cm below its axis: the palm comes to rest on the
# cylinder with the finger pads, which sit a little above the gripper's site, across its middle.
GRASP_POINT = np.array([0.0, -0.06, -0.01])
HANDLE_WIDTH = 0.05  # diameter of the handle base
LET_GO_GAP = 0.065  # fingers wider apart than this hold nothing (closed on the handle: 0.05; open: 0.08)
OPEN_ANGLE = 0.3  # radians; robosuite's success threshold
PULL_ANGLES = (0.08, 0.16, 0.24, 0.32, 0.37)  # the hinge stops at 0.4


@dataclass(frozen=True)
class Door(Task):
    def miss_offset(self, state: State, distance: float) -> np.ndarray:
        """Close the fingers well above the handle (twice the miss distance): sideways misses run along the
        handle bar or into the door panel, misses below land on the handle on the way down, and near
        misses still hook the lever."""
        return np.array([0.0, 0.0, 2.0 * abs(distance)])

    def read_state(self, env) -> State:
        state = robot_state(env)
        latch, state["handle_yaw"] = body_pose(env, env.object_body_ids["latch"])
        latch_rot = np.array(env.sim.data.body_xmat[env.object_body_ids["latch"]]).reshape(3, 3)
        state["handle"] = latch + latch_rot @ GRASP_POINT
        hinge = env.sim.model.joint_name2id(env.door.joints[0])
        state["hinge"] = np.array(env.sim.data.xanchor[hinge])
        state["hinge_axis"] = np.array(env.sim.data.xaxis[hinge])
        state["hinge_angle"] = float(env.sim.data.qpos[env.hinge_qpos_addr])
        return state

    def plan(self, state: State, rng: np.random.Generator) -> list[Phase]:
        above = lambda s: s["handle"] + np.array([0.0, 0.0, 0.1])  # noqa: E731
        at = lambda s: s["handle"]  # noqa: E731
        yaw = aligned_yaw("handle", np.pi)  # fingers close along the door's width, either way round
        pulls = [
            Phase(2, pull_to(arc_point(state, angle)), CLOSED, yaw, tolerance=0.02, carrying=True, max_steps=40)
            for angle in PULL_ANGLES
        ]
        return [
            Phase(0, above, OPEN, yaw, tolerance=0.015),
            Phase(0, at, OPEN, yaw, tolerance=0.012, grasp_point=True),
            Phase(1, at, CLOSED, yaw, min_steps=GRASP_STEPS, max_steps=GRASP_STEPS, grasp_point=True),
            *pulls,
        ]

    def stage_completed(self, stage: int, state: State, env) -> bool:
        at_handle = bool(np.linalg.norm(state["eef"] - state["handle"]) < 2 * REACHED)  # as far as a miss lands
        if stage == 0:
            return at_handle
        if stage == 1:
            # The pads' line contacts on the cylinder flicker under action noise; fingers stopped at
            # the handle's width while at the handle hold it just as surely.
            closed_on_handle = abs(state["gripper_gap"] - HANDLE_WIDTH) < 0.006
            return grasped(env, handle_geoms(env)) or (at_handle and closed_on_handle)
        return self.success(env)

    def stage_distance(self, stage: int, state: State) -> float:
        reach = float(np.linalg.norm(state["eef"] - state["handle"]))
        if stage == 0:
            return reach
        if stage == 1:
            return reach + gripper_closing_distance(state, HANDLE_WIDTH)
        return handle_radius(state) * max(OPEN_ANGLE - state["hinge_angle"], 0.0)  # arc length still to go


def pull_to(point: np.ndarray):
    """A pull waypoint, given up (hold still) once the fingers have opened.

    Open fingers still straddle the handle base, and the one on the lever's side would drag the
    door open by the lever: without this, letting go mid-pull (the `drop` failure) still opens it.
    """
    point = fixed(point)
    return lambda state: point(state) if state["gripper_gap"] < LET_GO_GAP else state["eef"]


def handle_geoms(env) -> list[str]:
    return [env.door.naming_prefix + name for name in ("handle_base", "handle")]


def handle_radius(state: State) -> float:
    """Distance of the grasp point from the hinge axis."""
    offset = state["handle"] - state["hinge"]
    axis = state["hinge_axis"]
    return float(np.linalg.norm(offset - np.dot(offset, axis) * axis))


def arc_point(state: State, angle: float) -> np.ndarray:
    """Where the grasp point is when the hinge is at `angle`: a turn about the hinge axis."""
    turn = transform_utils.rotation_matrix(angle - state["hinge_angle"], state["hinge_axis"])[:3, :3]
    return state["hinge"] + turn @ (state["handle"] - state["hinge"])


TASKS.register(
    "door",
    Door(
        name="door",
        robosuite_env="Door",
        instruction="open the door",
        stages=("reach the handle", "grasp the handle", "pull the door open"),
        horizon=300,
        env_kwargs={"use_latch": False},
    ),
)
