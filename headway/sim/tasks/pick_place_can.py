"""Pick-place can: take the can out of the left bin and drop it into its quadrant of the right bin.

The can's quadrant is the far corner of the right bin, at the edge of the Panda's reach: the
expert drops the can a little inside the quadrant's corner nearest the robot, not over its centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headway.sim.task import TASKS, Phase, State, Task
from headway.sim.tasks.common import (
    REACHED,
    CLOSED,
    GRASP_STEPS,
    OPEN,
    body_pose,
    fixed,
    grasped,
    gripper_closing_distance,
    robot_state,
)

# Heights are above the bins' base (z 0.8): their floors are at +0.02 and their walls end at +0.10.
CAN_HALF_HEIGHT = 0.04
CAN_RADIUS = 0.025
LIFTED = 0.15  # the can's centre this high is clear of the bin walls with its whole body
CARRY = 0.20  # the can's centre while it is carried across
RELEASE = 0.12  # the gripper opens with the can inside the bin, 6 cm above its floor
RESTING = 0.02 + CAN_HALF_HEIGHT + 0.01  # the can's centre once it has come to rest in a bin (with slack)
CLEAR = 0.05  # the gripper's distance from the can after letting go (success needs 0.043)
INSET = 0.06  # metres from the quadrant's walls to the drop point


@dataclass(frozen=True)
class PickPlaceCan(Task):
    def read_state(self, env) -> State:
        state = robot_state(env)
        state["can"], state["can_yaw"] = body_pose(env, env.obj_body_id[_can(env).name])
        state["bin"] = np.array(env.target_bin_placements[env.object_to_id["can"]])  # quadrant centre, bin base z
        state["bin_half"] = np.array(env.bin_size[:2]) / 4.0  # half extents of the can's quadrant
        base = env.sim.model.body_name2id(env.robots[0].robot_model.root_body)
        state["robot_base"] = np.array(env.sim.data.body_xpos[base])
        return state

    def plan(self, state: State, rng: np.random.Generator) -> list[Phase]:
        above = lambda s: s["can"] + np.array([0.0, 0.0, 0.08])  # noqa: E731
        at = lambda s: s["can"]  # noqa: E731
        drop = drop_point(state)
        lifted = np.array([*state["can"][:2], state["bin"][2] + CARRY])
        over_bin = np.array([*drop, state["bin"][2] + CARRY])
        release = np.array([*drop, state["bin"][2] + RELEASE])
        retreat = np.array([*drop, state["bin"][2] + CARRY + 0.05])
        # A cylinder grasps the same at any heading: the gripper keeps its own yaw (yaw None).
        return [
            Phase(0, above, OPEN, None, tolerance=0.015),
            Phase(0, at, OPEN, None, tolerance=0.012, grasp_point=True),
            Phase(1, at, CLOSED, None, min_steps=GRASP_STEPS, max_steps=GRASP_STEPS, grasp_point=True),
            Phase(2, fixed(lifted), CLOSED, None, tolerance=0.02, carrying=True, max_steps=80),
            Phase(3, fixed(over_bin), CLOSED, None, tolerance=0.02, carrying=True, max_steps=150),
            # Lower still holding; min_steps so that a stall in this stage freezes with the can held.
            Phase(4, fixed(release), CLOSED, None, tolerance=0.015, min_steps=8, carrying=True, max_steps=60),
            Phase(4, fixed(release), OPEN, None, min_steps=GRASP_STEPS, max_steps=GRASP_STEPS),
            Phase(4, fixed(retreat), OPEN, None, tolerance=0.02, max_steps=60),
        ]

    def stage_completed(self, stage: int, state: State, env) -> bool:
        if stage == 0:
            return bool(np.linalg.norm(state["eef"] - state["can"]) < REACHED)
        held = grasped(env, _can(env))
        if stage == 1:
            return held
        lifted = bool(state["can"][2] > state["bin"][2] + LIFTED)
        if stage == 2:
            return held and lifted
        if stage == 3:
            inside = np.all(np.abs(state["can"][:2] - state["bin"][:2]) < state["bin_half"] - CAN_RADIUS)
            return held and lifted and bool(inside)
        return self.success(env)

    def stage_distance(self, stage: int, state: State) -> float:
        reach = float(np.linalg.norm(state["eef"] - state["can"]))
        if stage == 0:
            return reach
        if stage == 1:
            return reach + gripper_closing_distance(state, 2 * CAN_RADIUS)
        if stage == 2:
            return max(state["bin"][2] + LIFTED - state["can"][2], 0.0)
        if stage == 3:
            return float(np.linalg.norm(state["can"][:2] - drop_point(state)))
        return max(state["can"][2] - state["bin"][2] - RESTING, 0.0) + max(CLEAR - reach, 0.0)


def _can(env):
    return env.objects[env.object_to_id["can"]]


def drop_point(state: State) -> np.ndarray:
    """Where (xy) the can is let go: INSET inside the corner of its quadrant nearest the robot."""
    toward_robot = np.sign(state["robot_base"][:2] - state["bin"][:2])
    return state["bin"][:2] + toward_robot * (state["bin_half"] - INSET)


TASKS.register(
    "pick_place_can",
    PickPlaceCan(
        name="pick_place_can",
        robosuite_env="PickPlaceCan",
        instruction="put the can in its bin",
        stages=("reach the can", "grasp the can", "lift the can", "move over the bin", "drop the can in the bin"),
        horizon=400,
    ),
)
