"""Scripted experts on the OSC_POSE controller, and the ways they are made to be noisy or to fail."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from robosuite.utils import transform_utils

from headway.errors import HeadwayError, unknown_name
from headway.sim.task import Phase, State, Task

MODES = ("expert", "noisy", "fail")
FAILURES = ("miss_grasp", "drop", "stall", "away")
NOISE_LEVELS = (0.1, 0.2, 0.3)

POSITION_GAIN = 12.0  # action units per metre of error (1 action unit = 5 cm of OSC target offset)
ROTATION_GAIN = 2.0  # action units per radian of error (1 action unit = 0.5 rad)
# The gripper pointing straight down, fingers along world y: the Panda's home orientation.
OPEN = -1.0
DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


@dataclass(frozen=True)
class Behaviour:
    """How a scripted rollout behaves: an expert, a noisy expert, or a specific failure."""

    mode: str = "expert"
    failure: str | None = None
    noise: float = 0.0  # action noise std (noisy mode)
    speed: float = 1.0  # <1 is slower (noisy mode)
    fail_stage: int = 1  # where stall / away strike
    fail_after: int = 5  # steps into the failing stage before the failure starts
    miss_offset: float = 0.0  # metres beside the grasp point, across the fingers (miss_grasp)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise unknown_name("mode", self.mode, MODES)
        if (self.mode == "fail") != (self.failure is not None):
            raise HeadwayError("a failure kind is given exactly when mode is 'fail'")
        if self.failure is not None and self.failure not in FAILURES:
            raise unknown_name("failure", self.failure, FAILURES)

    @property
    def label(self) -> str:
        return self.failure if self.mode == "fail" else self.mode


def failable_stages(task: Task) -> tuple[int, ...]:
    """The stages where `stall` / `away` may strike: the task's own list, else every stage but the first."""
    return tuple(task.failable_stages) or tuple(range(1, len(task.stages)))


def sample_behaviour(
    mode: str, task: Task, rng: np.random.Generator, failure: str | None = None, fail_stage: int | None = None
) -> Behaviour:
    """A random behaviour of `mode` for `task` (failure kind and the stage it strikes drawn uniformly unless given)."""
    if mode == "expert":
        return Behaviour()
    if mode == "noisy":
        return Behaviour("noisy", noise=float(rng.choice(NOISE_LEVELS)), speed=float(rng.uniform(0.6, 0.9)))
    if mode != "fail":
        raise unknown_name("mode", mode, MODES)
    failure = failure or str(rng.choice(FAILURES))
    return Behaviour(
        "fail",
        failure=failure,
        fail_stage=int(rng.choice(failable_stages(task))) if fail_stage is None else fail_stage,
        fail_after=int(rng.integers(2, 6)),
        miss_offset=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.04, 0.05)),
    )


def yaw_of(rotation: np.ndarray) -> float:
    """Heading of a down-pointing gripper: angle of its x axis in the world xy plane."""
    return float(np.arctan2(rotation[1, 0], rotation[0, 0]))


def nearest_grasp_yaw(object_yaw: float, current_yaw: float, symmetry: float = np.pi / 2) -> float:
    """Object yaw plus the multiple of `symmetry` closest to the gripper's current yaw."""
    k = np.round((current_yaw - object_yaw) / symmetry)
    return float(object_yaw + k * symmetry)


class ScriptedExpert:
    """Follows a task's waypoint plan; `stage` is the named stage the expert is working on."""

    def __init__(self, task: Task, behaviour: Behaviour, rng: np.random.Generator) -> None:
        self.task = task
        self.behaviour = behaviour
        self.rng = rng
        self.phases: list[Phase] = []
        self.index = 0
        self.steps_in_phase = 0
        self.steps_in_stage = 0
        self.home = np.zeros(3)
        self.stage_start = np.zeros(3)
        self.dropped = False
        self.frozen: np.ndarray | None = None
        self.retreating = False
        self.retreat = np.zeros(3)

    def reset(self, state: State) -> None:
        self.phases = self.task.plan(state, self.rng)
        self.index = 0
        self.steps_in_phase = 0
        self.steps_in_stage = 0
        self.home = np.asarray(state["eef"], dtype=float).copy()
        self.stage_start = self.home.copy()
        self.dropped = self.retreating = False
        self.retreat = self.home.copy()
        self.frozen = None

    @property
    def finished(self) -> bool:
        return self.index >= len(self.phases)

    @property
    def stage(self) -> int:
        if self.finished:
            return len(self.task.stages) - 1
        return self.phases[self.index].stage

    def act(self, state: State) -> np.ndarray:
        """The next 7-D OSC_POSE action (position delta, axis-angle delta, gripper)."""
        b = self.behaviour
        phase = self.phases[min(self.index, len(self.phases) - 1)]
        target, gripper, yaw, speed = phase.target(state), phase.gripper, phase.yaw, phase.speed * b.speed
        if b.failure == "miss_grasp" and phase.grasp_point and not self.finished:
            target = target + self.task.miss_offset(state, b.miss_offset)
        if b.failure == "drop" and phase.carrying and self.steps_in_phase >= b.fail_after:
            self.dropped = True
        striking = b.failure in ("stall", "away") and phase.stage == b.fail_stage and not self.finished
        if striking and self.steps_in_stage >= b.fail_after:
            if b.failure == "stall" and self.frozen is None:
                self.frozen = self.stage_start.copy()  # back to where the stage began, and stay
            if b.failure == "away" and not self.retreating:
                self.retreating = True
                self.retreat = self._away_from(target)
        if self.dropped:
            gripper = OPEN
        if self.frozen is not None:  # stalled: hold still until the time runs out
            return self._drive(state, self.frozen, gripper, None, 1.0)
        if self.retreating:  # give up: head away from the stage's goal, still holding whatever is held
            return self._drive(state, self.retreat, gripper if phase.carrying else OPEN, None, 0.5)
        error = float(np.linalg.norm(target - state["eef"]))
        action = self._drive(state, target, gripper, yaw, speed)
        if not self.finished:
            self.steps_in_phase += 1
            self.steps_in_stage += 1
            if phase.is_done(state, self.steps_in_phase, error):
                self.index += 1
                self.steps_in_phase = 0
                if self.finished or self.phases[self.index].stage != phase.stage:
                    self.steps_in_stage = 0
                    self.stage_start = np.asarray(state["eef"], dtype=float).copy()
        return action

    def _away_from(self, goal: np.ndarray) -> np.ndarray:
        """A point 12 cm beyond where the stage began, on the far side from the stage's goal (up if unclear)."""
        direction = self.stage_start - goal
        norm = float(np.linalg.norm(direction))
        direction = direction / norm if norm > 0.01 else np.array([0.0, 0.0, 1.0])
        return self.stage_start + 0.12 * direction

    def _drive(self, state: State, target: np.ndarray, gripper: float, yaw, speed: float) -> np.ndarray:
        action = np.zeros(7)
        action[:3] = np.clip((target - state["eef"]) * POSITION_GAIN, -1.0, 1.0) * speed
        desired_yaw = yaw(state) if yaw is not None else yaw_of(state["eef_rot"])
        desired = transform_utils.rotation_matrix(desired_yaw, [0, 0, 1])[:3, :3] @ DOWN
        rotation_error = desired @ state["eef_rot"].T
        axis_angle = transform_utils.quat2axisangle(transform_utils.mat2quat(rotation_error))
        action[3:6] = np.clip(axis_angle * ROTATION_GAIN, -1.0, 1.0)
        action[6] = gripper
        if self.behaviour.noise > 0:
            action[:6] += self.rng.normal(0.0, self.behaviour.noise, 6) * np.array([1, 1, 1, 0.3, 0.3, 0.3])
        return np.clip(action, -1.0, 1.0)
