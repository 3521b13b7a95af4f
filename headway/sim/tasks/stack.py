"""Stack: pick up the red cube (cubeA) and set it down on the green cube (cubeB)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headway.sim.expert import nearest_grasp_yaw
from headway.sim.task import TASKS, Phase, State, Task
from headway.sim.tasks.common import (
    REACHED,
    CLOSED,
    GRASP_STEPS,
    OPEN,
    aligned_yaw,
    body_pose,
    grasped,
    gripper_closing_distance,
    robot_state,
)

CROWDED = 0.1  # cubes closer than this (centre to centre) could catch a finger on the green one
CLEARANCE = 0.05  # metres between the carried cube's bottom and the green cube's top while moving
LIFTED = 0.02  # the red cube's bottom this far above the green cube's top counts as lifted
ABOVE_XY = 0.015  # the red cube's centre this close to the green cube's in xy counts as over it
RESTING = 0.006  # the red cube's bottom this close to the green cube's top, its centre over it: placed
RELEASED_GAP = 0.06  # finger gap at which the fingers are clear of the 4 cm red cube
FUNNEL = 2.0  # metres of extra height per metre the red cube is off centre while setting it down
FUNNEL_SLACK = 0.01  # off centre by less than this, it goes straight down
PRESS = 0.005  # how far below resting height the placing target aims
RISE = 0.04  # how far above the released cube's top the gripper backs off
SETTLE_STEPS = 6  # steps holding the placed cube still before opening


@dataclass(frozen=True)
class Stack(Task):
    def read_state(self, env) -> State:
        state = robot_state(env)
        state["cubeA"], state["cubeA_yaw"] = body_pose(env, env.cubeA_body_id)
        state["cubeB"], state["cubeB_yaw"] = body_pose(env, env.cubeB_body_id)
        state["cubeA_half"] = float(env.cubeA.size[2])
        state["cubeB_half"] = float(env.cubeB.size[2])
        state["cubeB_top"] = float(state["cubeB"][2] + state["cubeB_half"])
        state["table_height"] = float(env.model.mujoco_arena.table_offset[2])
        return state

    def miss_offset(self, state: State, distance: float) -> np.ndarray:
        """Miss on the side away from the green cube, so a finger never lands on it and sweeps the red cube in."""
        offset = super().miss_offset(state, distance)
        if np.dot(offset[:2], state["cubeB"][:2] - state["cubeA"][:2]) > 0:
            offset = -offset
        return offset

    def plan(self, state: State, rng: np.random.Generator) -> list[Phase]:
        at = lambda s: s["cubeA"]  # noqa: E731
        yaw = _grasp_yaw(state)
        return [
            Phase(0, _above_a, OPEN, yaw, done=_over_a_and_turned(yaw)),
            Phase(0, at, OPEN, yaw, tolerance=0.008, grasp_point=True),
            Phase(1, at, CLOSED, yaw, min_steps=GRASP_STEPS, max_steps=GRASP_STEPS, grasp_point=True),
            Phase(2, _lifted, CLOSED, None, tolerance=0.015, carrying=True, max_steps=80),
            Phase(3, _over_b, CLOSED, None, tolerance=0.01, carrying=True, max_steps=80),
            Phase(4, _down_onto_b, CLOSED, None, carrying=True, max_steps=60, done=_set_down),
            # Let the cube settle before opening, still held; this outlasts any fail_after (at most 5
            # steps), so a stall or away in this stage strikes with the cube still held.
            Phase(5, _on_b, CLOSED, None, min_steps=SETTLE_STEPS, max_steps=SETTLE_STEPS, carrying=True),
            Phase(5, _on_b, OPEN, None, min_steps=GRASP_STEPS, max_steps=GRASP_STEPS),
            Phase(5, _risen, OPEN, None, tolerance=0.015, max_steps=30),
        ]

    def stage_completed(self, stage: int, state: State, env) -> bool:
        if stage == 0:
            return bool(np.linalg.norm(state["eef"] - state["cubeA"]) < REACHED)
        if stage == 1:
            return grasped(env, env.cubeA)
        if stage == 2:
            return grasped(env, env.cubeA) and _lift_gap(state) <= 0.0
        if stage == 3:
            return grasped(env, env.cubeA) and _lift_gap(state) <= 0.0 and _xy_error(state) < ABOVE_XY
        if stage == 4:
            return _xy_error(state) < state["cubeB_half"] and _resting_gap(state) < RESTING
        return self.success(env)

    def stage_distance(self, stage: int, state: State) -> float:
        if stage == 0:
            return float(np.linalg.norm(state["eef"] - state["cubeA"]))
        if stage == 1:
            reach = float(np.linalg.norm(state["eef"] - state["cubeA"]))
            return reach + gripper_closing_distance(state, 2 * state["cubeA_half"])
        if stage == 2:
            return _lift_gap(state)
        if stage == 3:
            return _xy_error(state) + _lift_gap(state)
        if stage == 4:
            return _xy_error(state) + _place_gap(state)
        return max(RELEASED_GAP - state["gripper_gap"], 0.0) + _off_b(state)


def _grasp_yaw(state: State):
    """A phase yaw with the fingers square to the red cube's faces, kept off the green cube.

    Normally `aligned_yaw("cubeA")`. When the cubes start close together, of the two face-aligned
    finger axes it takes the one more nearly perpendicular to the line between them (fixed from
    the initial state, so a nudged green cube does not swing the gripper round mid-grasp).
    """
    between = state["cubeB"][:2] - state["cubeA"][:2]
    if np.linalg.norm(between) > CROWDED:
        return aligned_yaw("cubeA")
    across = float(np.arctan2(between[1], between[0])) + np.pi / 2  # the fingers open along the yaw

    def yaw(s: State) -> float:
        face = nearest_grasp_yaw(s["cubeA_yaw"], across)
        return nearest_grasp_yaw(face, s["eef_yaw"], np.pi)

    return yaw


def _above_a(state: State) -> np.ndarray:
    return state["cubeA"] + np.array([0.0, 0.0, 0.08])


def _over_a_and_turned(yaw):
    """Done: above the red cube with the fingers turned to the grasp heading (before going down)."""

    def done(state: State, steps: int) -> bool:
        turn = abs((yaw(state) - state["eef_yaw"] + np.pi) % (2 * np.pi) - np.pi)
        return bool(np.linalg.norm(state["eef"] - _above_a(state)) < 0.015 and turn < 0.05)

    return done


def _grip_offset(state: State) -> np.ndarray:
    """Where the end effector sits relative to the held red cube (bounded, in case it is not held)."""
    return np.clip(state["eef"] - state["cubeA"], -0.02, 0.02)


def _lifted(state: State) -> np.ndarray:
    """Straight up from where the red cube was grasped, to carrying height."""
    z = state["cubeB_top"] + CLEARANCE + state["cubeA_half"] + _grip_offset(state)[2]
    return np.array([state["eef"][0], state["eef"][1], z])


def _over_b(state: State) -> np.ndarray:
    """At carrying height with the red cube centred over the green cube."""
    offset = _grip_offset(state)
    z = state["cubeB_top"] + CLEARANCE + state["cubeA_half"] + offset[2]
    return np.array([state["cubeB"][0] + offset[0], state["cubeB"][1] + offset[1], z])


def _on_b(state: State) -> np.ndarray:
    """The red cube resting on the green cube's top face (aimed a little low, to set it down firmly)."""
    offset = _grip_offset(state)
    z = state["cubeB_top"] + state["cubeA_half"] + offset[2] - PRESS
    return np.array([state["cubeB"][0] + offset[0], state["cubeB"][1] + offset[1], z])


def _down_onto_b(state: State) -> np.ndarray:
    """Setting the red cube down on the green one, funnelled: held higher while it is off centre."""
    hover = float(np.clip(FUNNEL * (_xy_error(state) - FUNNEL_SLACK), 0.0, CLEARANCE))
    return _on_b(state) + np.array([0.0, 0.0, hover])


def _set_down(state: State, steps: int) -> bool:
    return _place_gap(state) < 0.001


def _risen(state: State) -> np.ndarray:
    """Straight up, clear of the released cube."""
    z = state["cubeB_top"] + 2 * state["cubeA_half"] + RISE
    return np.array([state["eef"][0], state["eef"][1], z])


def _xy_error(state: State) -> float:
    return float(np.linalg.norm(state["cubeA"][:2] - state["cubeB"][:2]))


def _lift_gap(state: State) -> float:
    """How far the red cube's bottom still is below lifted height (over the green cube's top)."""
    bottom = state["cubeA"][2] - state["cubeA_half"]
    return max(state["cubeB_top"] + LIFTED - bottom, 0.0)


def _place_gap(state: State) -> float:
    """Height of the red cube's bottom above the green cube's top."""
    bottom = state["cubeA"][2] - state["cubeA_half"]
    return max(bottom - state["cubeB_top"], 0.0)


def _resting_gap(state: State) -> float:
    """How far the red cube's bottom is from the green cube's top face, above or below."""
    return abs(state["cubeA"][2] - state["cubeA_half"] - state["cubeB_top"])


def _off_b(state: State) -> float:
    """How far the red cube is from resting centred on the green cube (beyond small slack)."""
    return max(_xy_error(state) - 0.005, 0.0) + max(_resting_gap(state) - 0.002, 0.0)


TASKS.register(
    "stack",
    Stack(
        name="stack",
        robosuite_env="Stack",
        instruction="stack the red cube on the green cube",
        stages=(
            "reach the red cube",
            "grasp the red cube",
            "lift the red cube",
            "move over the green cube",
            "place it on the green cube",
            "release the red cube",
        ),
        horizon=300,
    ),
)
