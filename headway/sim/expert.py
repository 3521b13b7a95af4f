"""Scripted experts on the OSC_POSE controller, and the ways they are made to be noisy or to fail.

Besides clean, noisy and failed rollouts, three modes mimic what real teleoperation data holds
(all successful when the physics allows, so filtering by success keeps them):
- `recover`: the operator errs, then corrects. Either the grasp misses (fingers closed beside the
  object), the gripper opens and backs off, and the reach starts over; or the arm heads away from
  the stage's goal for a while and comes back (still holding what it holds, else starting over).
- `hesitate`: one to three pauses of 6-15 steps where the arm holds still, and a slower pace.
- `detour`: a sub-optimal path: on its way through one stage the arm first visits a via point
  10-15 cm to the side (and 5 cm up) of the straight line, then finishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from robosuite.utils import transform_utils

from headway.errors import HeadwayError, unknown_name
from headway.sim.task import Phase, State, Task

MODES = ("expert", "noisy", "fail", "recover", "hesitate", "detour")
FAILURES = ("miss_grasp", "drop", "stall", "away")
ERRORS = ("miss", "away")  # what a `recover` rollout gets wrong before it corrects itself
BACKOFF_HEIGHT = 0.06  # metres the open gripper rises after a missed grasp
VIA_REACHED = 0.02  # metres from a detour's via point that count as visited
VIA_MAX_STEPS = 40
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
    miss_offset: float = 0.0  # metres beside the grasp point, across the fingers (miss_grasp, recover/miss)
    error: str | None = None  # recover: the mistake made first (miss | away)
    error_steps: int = 0  # recover: steps spent heading away, or backing off after a miss
    pause_at: int = 0  # hesitate: step of the first pause
    pauses: int = 0  # hesitate: how many pauses
    pause_steps: int = 0  # hesitate: steps each pause lasts
    pause_gap: int = 0  # hesitate: steps of motion between pauses
    detour_choice: float = 0.0  # detour: which eligible stage (one whose first waypoint is a free move), as a fraction
    detour_x: float = 0.0  # detour: the via point's offset from the straight path's midpoint (metres)
    detour_y: float = 0.0
    detour_z: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise unknown_name("mode", self.mode, MODES)
        if (self.mode == "fail") != (self.failure is not None):
            raise HeadwayError("a failure kind is given exactly when mode is 'fail'")
        if self.failure is not None and self.failure not in FAILURES:
            raise unknown_name("failure", self.failure, FAILURES)
        if (self.mode == "recover") != (self.error is not None):
            raise HeadwayError("an error kind is given exactly when mode is 'recover'")
        if self.error is not None and self.error not in ERRORS:
            raise unknown_name("error", self.error, ERRORS)

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
    if mode == "recover":
        return Behaviour(
            "recover",
            error=str(rng.choice(ERRORS)),
            error_steps=int(rng.integers(8, 16)),
            fail_stage=int(rng.choice(failable_stages(task))) if fail_stage is None else fail_stage,
            fail_after=int(rng.integers(2, 6)),
            miss_offset=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.04, 0.05)),
        )
    if mode == "hesitate":
        return Behaviour(
            "hesitate",
            speed=float(rng.uniform(0.7, 1.0)),
            pause_at=int(rng.integers(5, 30)),
            pauses=int(rng.integers(1, 4)),
            pause_steps=int(rng.integers(6, 16)),
            pause_gap=int(rng.integers(10, 25)),
        )
    if mode == "detour":
        angle = float(rng.uniform(0.0, 2 * np.pi))
        distance = float(rng.uniform(0.10, 0.15))
        return Behaviour(
            "detour",
            detour_choice=float(rng.uniform(0.0, 1.0)),
            detour_x=distance * float(np.cos(angle)),
            detour_y=distance * float(np.sin(angle)),
            detour_z=0.05,
        )
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
        self._reset_variations()

    def _reset_variations(self) -> None:
        self.t = 0  # steps taken
        self.attempt = 0  # recover: 0 until the mistake has been made and corrected
        self.backoff = 0  # recover: steps left heading away / backing off
        self.backoff_target = np.zeros(3)
        self.backoff_gripper = OPEN
        self.error_stage = 0
        self.resume_after_error = False
        self.paused_at: np.ndarray | None = None  # hesitate: where the arm holds still
        self.detour_stage = -1
        self.via: np.ndarray | None = None
        self.via_steps = 0
        self.detoured = False

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
        self._reset_variations()
        if self.behaviour.mode == "detour":
            eligible = []
            for phase in self.phases:  # stages whose first waypoint is a free move, not the grasp itself
                if phase.stage not in eligible and not phase.grasp_point and all(p.stage != phase.stage for p in self.phases[: self.phases.index(phase)]):
                    eligible.append(phase.stage)
            eligible = eligible or [self.phases[0].stage]
            self.detour_stage = eligible[min(int(self.behaviour.detour_choice * len(eligible)), len(eligible) - 1)]

    @property
    def finished(self) -> bool:
        return self.index >= len(self.phases)

    @property
    def stage(self) -> int:
        if self.backoff > 0:  # recover: still in the stage where the mistake happened
            return self.error_stage
        if self.finished:
            return len(self.task.stages) - 1
        return self.phases[self.index].stage

    def act(self, state: State) -> np.ndarray:
        """The next 7-D OSC_POSE action (position delta, axis-angle delta, gripper)."""
        b = self.behaviour
        self.t += 1
        phase = self.phases[min(self.index, len(self.phases) - 1)]
        target, gripper, yaw, speed = phase.target(state), phase.gripper, phase.yaw, phase.speed * b.speed
        if b.failure == "miss_grasp" and phase.grasp_point and not self.finished:
            target = target + self.task.miss_offset(state, b.miss_offset)
        if b.mode == "hesitate":
            if self._pausing():
                if self.paused_at is None:
                    self.paused_at = np.asarray(state["eef"], dtype=float).copy()
                return self._drive(state, self.paused_at, gripper, None, 1.0)
            self.paused_at = None
        if b.mode == "recover":
            if self.backoff > 0:  # heading away / backing off; then correct the mistake
                return self.act_backoff(state)
            if self.attempt == 0 and not self.finished:
                if b.error == "miss" and phase.grasp_point:
                    target = target + self.task.miss_offset(state, b.miss_offset)
                if b.error == "away" and phase.stage == b.fail_stage and self.steps_in_stage >= b.fail_after:
                    self._err(phase.stage, self._away_from(target), gripper if phase.carrying else OPEN, resume=phase.carrying)
                    return self.act_backoff(state)
        if b.mode == "detour" and not self.detoured and phase.stage == self.detour_stage and not self.finished:
            if self.via is None:
                start = np.asarray(state["eef"], dtype=float)
                self.via = (start + target) / 2 + np.array([b.detour_x, b.detour_y, b.detour_z])
            self.via_steps += 1
            if np.linalg.norm(self.via - state["eef"]) < VIA_REACHED or self.via_steps > VIA_MAX_STEPS:
                self.detoured = True
            else:
                return self._drive(state, self.via, gripper, yaw, speed)
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
                grasp_over = self.finished or not self.phases[self.index].grasp_point
                if b.mode == "recover" and b.error == "miss" and self.attempt == 0 and phase.grasp_point and grasp_over:
                    # the fingers closed beside the object: open, back off upwards, then start the reach again
                    up = np.asarray(state["eef"], dtype=float) + np.array([0.0, 0.0, BACKOFF_HEIGHT])
                    self._err(phase.stage, up, OPEN, resume=False)
        return action

    # -- recover: make a mistake, then correct it ------------------------------------------------
    def _err(self, stage: int, target: np.ndarray, gripper: float, resume: bool) -> None:
        self.error_stage = stage
        self.backoff = max(int(self.behaviour.error_steps), 1)
        self.backoff_target = np.asarray(target, dtype=float).copy()
        self.backoff_gripper = gripper
        self.resume_after_error = resume

    def act_backoff(self, state: State) -> np.ndarray:
        self.backoff -= 1
        action = self._drive(state, self.backoff_target, self.backoff_gripper, None, 0.6)
        if self.backoff == 0:
            self._correct(state)
        return action

    def _correct(self, state: State) -> None:
        """Back on track: carry on with the stage if the object is still held, else start the plan over."""
        self.attempt = 1
        if not self.resume_after_error:
            self.index = 0
            self.steps_in_phase = self.steps_in_stage = 0
        self.stage_start = np.asarray(state["eef"], dtype=float).copy()

    # -- hesitate --------------------------------------------------------------------------------
    def _pausing(self) -> bool:
        b = self.behaviour
        k = self.t - 1 - b.pause_at
        period = b.pause_steps + b.pause_gap
        return k >= 0 and period > 0 and k // period < b.pauses and k % period < b.pause_steps

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
