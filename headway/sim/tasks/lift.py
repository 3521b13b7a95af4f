"""Lift: pick up the cube from the table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

LIFT_HEIGHT = 0.12  # metres above the cube's resting height; success is 0.04 above the table


@dataclass(frozen=True)
class Lift(Task):
    def read_state(self, env) -> State:
        state = robot_state(env)
        state["cube"], state["cube_yaw"] = body_pose(env, env.cube_body_id)
        state["table_height"] = float(env.model.mujoco_arena.table_offset[2])
        return state

    def plan(self, state: State, rng: np.random.Generator) -> list[Phase]:
        above = lambda s: s["cube"] + np.array([0.0, 0.0, 0.08])  # noqa: E731
        at = lambda s: s["cube"]  # noqa: E731
        lifted = state["cube"] + np.array([0.0, 0.0, LIFT_HEIGHT])
        yaw = aligned_yaw("cube")
        return [
            Phase(0, above, OPEN, yaw, tolerance=0.015),
            Phase(0, at, OPEN, yaw, tolerance=0.008, grasp_point=True),
            Phase(1, at, CLOSED, yaw, min_steps=GRASP_STEPS, max_steps=GRASP_STEPS, grasp_point=True),
            Phase(2, fixed(lifted), CLOSED, None, tolerance=0.02, carrying=True, max_steps=80),
        ]

    def stage_completed(self, stage: int, state: State, env) -> bool:
        if stage == 0:
            return bool(np.linalg.norm(state["eef"] - state["cube"]) < REACHED)
        if stage == 1:
            return grasped(env, env.cube)
        return self.success(env)

    def stage_distance(self, stage: int, state: State) -> float:
        if stage == 0:
            return float(np.linalg.norm(state["eef"] - state["cube"]))
        if stage == 1:
            return float(np.linalg.norm(state["eef"] - state["cube"])) + gripper_closing_distance(state, 0.04)
        return max(state["table_height"] + 0.045 - state["cube"][2], 0.0)


TASKS.register(
    "lift",
    Lift(
        name="lift",
        robosuite_env="Lift",
        instruction="pick up the red cube and lift it",
        stages=("reach the cube", "grasp the cube", "lift the cube"),
        horizon=150,
    ),
)
