"""Readouts and plan pieces shared by the built-in tasks."""

from __future__ import annotations

import numpy as np

from headway.sim.expert import nearest_grasp_yaw, yaw_of
from headway.sim.task import State

OPEN, CLOSED = -1.0, 1.0
GRASP_STEPS = 10  # control steps for the Panda fingers to close on an object
REACHED = 0.055  # metres from the grasp point: the open fingers are around the object, or just beside it


def robot_state(env) -> State:
    """End-effector position, rotation, heading and finger gap of the (single) Panda arm."""
    robot = env.robots[0]
    site = robot.eef_site_id["right"]
    rotation = np.array(env.sim.data.site_xmat[site]).reshape(3, 3)
    fingers = np.array([env.sim.data.qpos[i] for i in robot._ref_gripper_joint_pos_indexes["right"]])
    return {
        "eef": np.array(env.sim.data.site_xpos[site]),
        "eef_rot": rotation,
        "eef_yaw": yaw_of(rotation),
        "gripper_gap": float(fingers[0] - fingers[1]),
    }


def body_pose(env, body_id: int) -> tuple[np.ndarray, float]:
    """World position and heading (yaw) of a body."""
    rotation = np.array(env.sim.data.body_xmat[body_id]).reshape(3, 3)
    return np.array(env.sim.data.body_xpos[body_id]), float(np.arctan2(rotation[1, 0], rotation[0, 0]))


def aligned_yaw(key: str, symmetry: float = np.pi / 2):
    """A phase yaw that lines the fingers up with the object's faces, whichever is nearest."""
    return lambda state: nearest_grasp_yaw(state[f"{key}_yaw"], state["eef_yaw"], symmetry)


def fixed(point: np.ndarray):
    point = np.asarray(point, dtype=float).copy()
    return lambda state: point


def gripper_closing_distance(state: State, closed_gap: float) -> float:
    """How far the fingers still have to close before they meet an object `closed_gap` wide."""
    return max(state["gripper_gap"] - closed_gap, 0.0)


def grasped(env, obj) -> bool:
    return bool(env._check_grasp(gripper=env.robots[0].gripper, object_geoms=obj))
